"""Parse and normalize, on feeds written here: every format, bozo feeds, dates, identity."""

from datetime import datetime, timezone

from pipeline.normalize import normalize_entry
from pipeline.parse import parse_feed
from pipeline.records import ParsedEntry
from tests.helpers import item, rss

FETCHED = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def articles(body: bytes, url: str = "https://news.example/feed.xml"):
    parsed = parse_feed(body, url)
    return [
        normalize_entry(ParsedEntry(1, i, raw, FETCHED, parsed.language, parsed.link or url))
        for i, raw in enumerate(parsed.entries)
    ]


RSS091 = b"""<?xml version="1.0"?><rss version="0.91"><channel><title>Old</title>
<link>http://old.example/</link><language>de-DE</language>
<item><title>Alt</title><link>http://old.example/1</link><description>Text eins</description></item>
</channel></rss>"""

RDF = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="http://rdf.example/"><title>RDF</title><link>http://rdf.example/</link></channel>
<item rdf:about="http://rdf.example/a"><title>RDF item</title><link>http://rdf.example/a</link>
<dc:date>2026-11-01T08:00:00+02:00</dc:date><description>d</description></item>
</rdf:RDF>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://atom.example/blog/" xml:lang="fr">
<title>Atom</title><link href="https://atom.example/"/><id>urn:a</id><updated>2026-11-02T00:00:00Z</updated>
<entry><title type="html">A &lt;b&gt;bold&lt;/b&gt; title</title><link href="posts/1?utm_source=x"/><id>urn:a:1</id>
<updated>2026-11-02T10:00:00Z</updated><author><name>Ana</name></author><category term="politique"/>
<content type="html">&lt;p&gt;Bonjour&lt;/p&gt;&lt;script&gt;x()&lt;/script&gt;</content></entry>
</feed>"""


def test_rss_091_language_and_text():
    [a] = articles(RSS091)
    assert (a.title, a.text, a.language) == ("Alt", "Text eins", "de")
    assert a.canonical_url == "http://old.example/1"


def test_rdf_date_is_converted_to_utc():
    [a] = articles(RDF)
    assert a.published_at == datetime(2026, 11, 1, 6, 0, tzinfo=timezone.utc)
    assert a.published_source in ("published", "updated")


def test_atom_relative_link_title_markup_author_tag_and_sanitized_html():
    [a] = articles(ATOM)
    assert a.canonical_url == "https://atom.example/blog/posts/1"
    assert a.title == "A bold title"
    assert a.text == "Bonjour"
    assert "script" not in a.html and "Bonjour" in a.html
    assert a.authors == ("Ana",) and a.tags == ("politique",)
    assert a.guid == "urn:a:1" and a.identity_key.endswith("guid:urn:a:1")


def test_missing_date_falls_back_to_fetch_time_and_is_flagged():
    [a] = articles(rss([item(1, pubDate=None)]))
    assert a.published_at == FETCHED and a.published_source == "fetched"


def test_entry_without_guid_is_identified_by_its_canonical_url():
    [a] = articles(rss([item(1, guid=None, link="https://news.example/s/1?utm_source=a")]))
    assert a.guid is None
    assert a.identity_key.endswith("url:https://news.example/s/1")


def test_reserved_entry_hashes_the_same_and_changed_text_does_not():
    first = articles(rss([item(1)]))[0]
    again = articles(rss([item(1, pubDate="Tue, 17 Nov 2026 10:00:00 +0000")]))[0]
    edited = articles(rss([item(1, description="<p>Corrected body.</p>")]))[0]
    assert first.content_hash == again.content_hash
    assert first.content_hash != edited.content_hash
    assert first.identity_key == edited.identity_key


def test_malformed_feed_keeps_entries_that_parse():
    body = rss([item(1), item(2)]).replace(b"</channel></rss>", b"<item><title>broken &bogus; </item>")
    parsed = parse_feed(body, "https://news.example/feed.xml")
    assert parsed.is_feed and parsed.bozo_reason
    assert len(parsed.entries) >= 2


def test_html_page_and_empty_body_are_not_feeds():
    assert not parse_feed(b"<html><body><p>Hello</p></body></html>", "https://x.example/").is_feed
    assert not parse_feed(b"", "https://x.example/").is_feed


def test_parser_is_never_handed_a_url_to_fetch():
    # bytes that look like a URL must be parsed as a (non-)document, not fetched
    parsed = parse_feed(b"http://127.0.0.1:9/never-fetched.xml", "https://x.example/")
    assert not parsed.is_feed
