"""The date policy (pipeline.dates): which date an article gets, and where it came from."""

from datetime import datetime, timedelta, timezone

from pipeline.dates import published_date
from pipeline.parse import parse_feed
from tests.helpers import item, rss

FETCHED = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def date_of(**fields):
    [entry] = parse_feed(rss([item(1, **fields)]), "https://news.example/feed").entries
    return published_date(entry, FETCHED)


def test_the_published_date_is_kept_as_written_and_normalized_to_utc():
    d = date_of(pubDate="Tue, 17 Nov 2026 09:30:00 +0200")
    assert d.at == datetime(2026, 11, 17, 7, 30, tzinfo=timezone.utc)
    assert (d.source, d.raw, d.issue) == ("published", "Tue, 17 Nov 2026 09:30:00 +0200", None)


def test_a_missing_date_is_the_fetch_time_flagged_as_such():
    d = date_of(pubDate=None)
    assert (d.at, d.source, d.raw, d.issue) == (FETCHED, "fetched", None, "missing")


def test_an_unparseable_date_falls_to_the_next_field_and_says_why():
    d = published_date({"published": "the 32nd of Smarch", "updated": "2026-11-18T08:00:00Z",
                        "updated_parsed": "2026-11-18T08:00:00+00:00"}, FETCHED)
    assert (d.source, d.raw, d.issue) == ("updated", "2026-11-18T08:00:00Z", "published: unparseable")
    d = date_of(pubDate="the 32nd of Smarch")
    assert (d.at, d.source, d.raw, d.issue) == (FETCHED, "fetched", "the 32nd of Smarch", "published: unparseable")


def test_dates_before_1995_or_in_the_future_are_kept_for_the_contract_to_hold():
    d = date_of(pubDate="Thu, 01 Jan 1970 00:00:00 GMT")
    assert (d.at.year, d.source, d.issue) == (1970, "published", "published: before 1995")
    future = FETCHED + timedelta(days=3)
    d = published_date({"published": "soon", "published_parsed": future.isoformat()}, FETCHED)
    assert (d.at, d.issue) == (future, "published: future")
    # Within the tolerance a clock running ahead is not a bad date.
    ahead = FETCHED + timedelta(hours=2)
    assert published_date({"published_parsed": ahead.isoformat()}, FETCHED).issue is None


def test_an_out_of_range_date_gives_way_to_a_usable_later_field():
    d = published_date({"published": "1970", "published_parsed": "1970-01-01T00:00:00+00:00",
                        "updated": "2026-11-19", "updated_parsed": "2026-11-19T00:00:00+00:00"}, FETCHED)
    assert (d.source, d.at.day, d.issue) == ("updated", 19, "published: before 1995")
