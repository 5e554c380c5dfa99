"""JSON Feed 1.0 / 1.1 into the same article records as RSS and Atom."""

import json
from datetime import datetime, timezone

from pipeline.normalize import normalize_entry
from pipeline.parse import parse_feed
from pipeline.records import ParsedEntry

FETCHED = datetime(2026, 11, 20, tzinfo=timezone.utc)

FEED_11 = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "JSON news",
    "home_page_url": "https://json.example/",
    "language": "en-GB",
    "authors": [{"name": "Desk"}],
    "items": [
        {"id": 42, "url": "https://json.example/a?utm_source=x", "title": "Numbered id",
         "content_html": "<p>Body &amp; more</p><script>x()</script>",
         "date_published": "2026-11-19T10:00:00+01:00", "tags": ["harbour"]},
        {"id": "b", "external_url": "https://other.example/b", "content_text": "Plain\n\nSecond",
         "date_modified": "2026-11-19T12:00:00Z", "language": "de", "authors": [{"name": "Ana"}]},
        {"id": "c", "url": "https://json.example/c", "title": "Bad date", "date_published": "yesterday"},
    ],
}


def articles(document, content_type="application/feed+json"):
    parsed = parse_feed(json.dumps(document).encode(), "https://json.example/feed.json", content_type)
    assert parsed.is_feed
    return [normalize_entry(ParsedEntry(1, i, raw, FETCHED, parsed.language, parsed.link))
            for i, raw in enumerate(parsed.entries)]


def test_json_feed_items_become_articles():
    a, b, c = articles(FEED_11)
    assert (a.guid, a.canonical_url, a.title, a.text) == ("42", "https://json.example/a", "Numbered id", "Body & more")
    assert "script" not in a.html and a.tags == ("harbour",) and a.authors == ("Desk",)
    assert a.published_at == datetime(2026, 11, 19, 9, 0, tzinfo=timezone.utc) and a.language == "en"
    assert (b.canonical_url, b.text, b.language, b.authors) == ("https://other.example/b", "Plain\n\nSecond", "de", ("Ana",))
    assert b.published_source == "updated"
    assert c.published_source == "fetched" and c.published_at == FETCHED


def test_json_feed_is_recognized_without_a_json_content_type():
    assert len(articles(FEED_11, content_type="text/plain")) == 3


def test_broken_json_feeds_are_not_feeds_and_do_not_raise():
    for body in (b'{"version": "https://jsonfeed.org/version/1", "items": [', b'{"title": "no items"}', b"[]"):
        assert not parse_feed(body, "https://x.example/f.json", "application/json").is_feed


def test_shared_json_feeds_parse(shared_dir):
    files = sorted((shared_dir / "corpora" / "jsonfeed").rglob("*.json"))
    parsed = {f.name: parse_feed(f.read_bytes(), "https://x.example/feed.json") for f in files}
    assert parsed["jsonfeed-1.1-spec-example-1.json"].is_feed
    assert not parsed["rsparser-allthis-partial.json"].is_feed  # truncated: invalid JSON
    good = [p for p in parsed.values() if p.is_feed]
    assert sum(len(p.entries) for p in good) > 300
    for p in good:
        for i, raw in enumerate(p.entries):
            normalize_entry(ParsedEntry(1, i, raw, FETCHED, p.language, p.link))  # never raises
