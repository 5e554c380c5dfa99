"""The fetcher against a real HTTP server on loopback."""

import gzip
import time
from datetime import datetime, timezone

import pytest

from pipeline.feedserver import FeedServer, Route
from pipeline.fetch import fetch_all
from pipeline.records import FeedState, FetchOutcome
from tests.helpers import item, rss

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)


def fetch_one(settings, url, etag=None, last_modified=None):
    [result] = fetch_all([FeedState(1, url, etag, last_modified)], settings, NOW)
    return result


@pytest.fixture
def server():
    with FeedServer({"/feed.xml": Route(rss([item(1)]))}) as srv:
        yield srv


def test_ok_fetch_returns_body_and_validators(settings, server):
    result = fetch_one(settings, server.url("/feed.xml"))
    assert result.outcome is FetchOutcome.OK and result.status == 200
    assert result.body == rss([item(1)])
    assert result.etag and result.last_modified
    assert "news-pipeline" in server.requests[-1][1]["User-Agent"]


def test_conditional_get_with_etag_and_with_last_modified_gives_304(settings, server):
    first = fetch_one(settings, server.url("/feed.xml"))
    by_etag = fetch_one(settings, server.url("/feed.xml"), etag=first.etag)
    by_date = fetch_one(settings, server.url("/feed.xml"), last_modified=first.last_modified)
    assert by_etag.outcome is FetchOutcome.NOT_MODIFIED and by_etag.body is None
    assert by_date.outcome is FetchOutcome.NOT_MODIFIED
    assert server.requests[-2][1]["If-None-Match"] == first.etag


def test_gzip_is_requested_and_decoded(settings, server):
    result = fetch_one(settings, server.url("/feed.xml"))
    assert "gzip" in server.requests[-1][1]["Accept-Encoding"]
    assert result.body == rss([item(1)])


def test_http_error_is_classified(settings, server):
    result = fetch_one(settings, server.url("/missing.xml"))
    assert (result.outcome, result.error_kind, result.status) == (FetchOutcome.ERROR, "http_status", 404)


def test_refused_connection_is_classified(settings):
    result = fetch_one(settings, "http://127.0.0.1:9/feed.xml")
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "connect")


def test_oversized_body_is_cut_off(settings, server):
    server.routes["/big.xml"] = Route(b"<rss>" + b"x" * (2 * 1024 * 1024) + b"</rss>", validators=False)
    result = fetch_one(settings, server.url("/big.xml"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "too_large")


def test_gzip_bomb_is_stopped_by_the_decompressed_cap(settings, server):
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))  # 50 MB that compresses to ~50 kB
    server.routes["/bomb.xml"] = Route(bomb, headers={"Content-Encoding": "gzip"}, validators=False)
    started = time.monotonic()
    result = fetch_one(settings, server.url("/bomb.xml"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "too_large")
    assert time.monotonic() - started < 5


def test_a_gzip_body_of_several_members_is_read_whole(settings, server):
    first, second = rss([item(1)])[:200], rss([item(1)])[200:]
    server.routes["/members.xml"] = Route(gzip.compress(first) + gzip.compress(second),
                                          headers={"Content-Encoding": "gzip"}, validators=False)
    result = fetch_one(settings, server.url("/members.xml"))
    assert result.outcome is FetchOutcome.OK and result.body == rss([item(1)])


def test_zero_bytes_padding_a_gzip_body_are_ignored(settings, server):
    server.routes["/padded.xml"] = Route(gzip.compress(rss([item(1)])) + b"\0" * 64,
                                         headers={"Content-Encoding": "gzip"}, validators=False)
    result = fetch_one(settings, server.url("/padded.xml"))
    assert result.outcome is FetchOutcome.OK and result.body == rss([item(1)])


def test_a_gzip_bomb_split_over_members_is_stopped_by_the_cap_on_their_sum(settings, server):
    member = gzip.compress(b"\0" * (settings.max_body_bytes // 2))  # each member alone is within the cap
    server.routes["/bombs.xml"] = Route(member * 200, headers={"Content-Encoding": "gzip"}, validators=False)
    started = time.monotonic()
    result = fetch_one(settings, server.url("/bombs.xml"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "too_large")
    assert "decompressed" in result.error and time.monotonic() - started < 5


def test_slow_server_times_out_within_the_bound(settings, server):
    server.routes["/slow.xml"] = Route(rss([item(1)]), delay=4.0)
    started = time.monotonic()
    result = fetch_one(settings, server.url("/slow.xml"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "timeout")
    assert time.monotonic() - started < 4


def test_many_feeds_are_fetched_concurrently(settings, server):
    server.routes["/slowish.xml"] = Route(rss([item(1)]), delay=0.3, validators=False)
    feeds = [FeedState(i, server.url(f"/slowish.xml?n={i}")) for i in range(16)]
    started = time.monotonic()
    results = fetch_all(feeds, settings, NOW)
    assert all(r.outcome is FetchOutcome.OK for r in results) and len(results) == 16
    assert time.monotonic() - started < 16 * 0.3 / 2
