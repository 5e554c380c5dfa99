from datetime import datetime, timedelta, timezone

from pipeline.discover import alternate_feeds
from pipeline.polling_policy import Bounds, cache_until, next_check, retry_after

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
BOUNDS = Bounds(timedelta(minutes=10), timedelta(hours=24))


def test_retry_after_in_both_forms():
    assert retry_after("120", NOW) == NOW + timedelta(seconds=120)
    assert retry_after("Fri, 20 Nov 2026 15:00:00 GMT", NOW) == datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
    assert retry_after("soon", NOW) is None and retry_after(None, NOW) is None


def test_cache_control_beats_expires():
    assert cache_until({"cache-control": "public, max-age=900"}, NOW) == NOW + timedelta(seconds=900)
    assert cache_until({"expires": "Fri, 20 Nov 2026 13:00:00 GMT"}, NOW) == NOW + timedelta(hours=1)
    assert cache_until({"cache-control": "no-cache"}, NOW) is None


def test_next_check_takes_the_longest_hint_within_bounds():
    assert next_check(NOW, BOUNDS) == NOW + timedelta(minutes=10)
    hints = (NOW + timedelta(minutes=30), NOW + timedelta(hours=2))
    assert next_check(NOW, BOUNDS, hints=hints, ttl_minutes=60) == NOW + timedelta(hours=2)
    assert next_check(NOW, BOUNDS, hints=(NOW + timedelta(days=30),)) == NOW + timedelta(hours=24)
    assert next_check(NOW, BOUNDS, hints=(NOW + timedelta(seconds=5),)) == NOW + timedelta(minutes=10)


def test_errors_back_off_exponentially_up_to_the_maximum():
    waits = [next_check(NOW, BOUNDS, error_streak=n) - NOW for n in (1, 2, 3, 4, 20)]
    assert waits == [timedelta(minutes=10), timedelta(minutes=20), timedelta(minutes=40),
                     timedelta(minutes=80), timedelta(hours=24)]


def test_discovery_finds_alternate_feed_links():
    html = """<html><head><base href="https://site.example/news/">
      <link rel="alternate" type="application/rss+xml" href="rss.xml">
      <link rel="Alternate" type="application/atom+xml; charset=utf-8" href="/atom">
      <link rel="alternate" type="text/html" href="/en">
      <link rel="stylesheet" href="/s.css"></head></html>"""
    assert alternate_feeds(html, "https://site.example/") == [
        "https://site.example/news/rss.xml", "https://site.example/atom"]
