"""The fast parse path's routing: what it takes, what it gives feedparser, and that no body
makes it raise out of `parse_feed`."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline import fastparse, parse
from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.parse import parse_feed

URL = "https://news.example/feed.xml"
RSS = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
       b"<link>https://news.example/</link><ttl>30</ttl>"
       b"<item><title>One &amp; two</title><link>/a?x=1&amp;y=2</link><guid isPermaLink=\"false\">g1</guid>"
       b"<pubDate>Mon, 16 Nov 2026 10:00:00 +0000</pubDate><description>&lt;p&gt;Body "
       b"&lt;img src=\"/i.png\"&gt;&lt;/p&gt;</description><category>World</category>"
       b"<author>ed@news.org (Ed)</author></item></channel></rss>")
ATOM = (b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://atom.example/blog/" xml:lang="de">'
        b"<title>A</title><link href=\"/\"/><entry><id>urn:x:1</id><title type=\"html\">&lt;b&gt;Hi&lt;/b&gt;"
        b"</title><link href=\"post\"/><updated>2026-11-16T10:00:00Z</updated><author><name>Ann</name>"
        b"</author><content type=\"html\">&lt;a href=\"x\"&gt;x&lt;/a&gt;</content></entry></feed>")


def test_well_formed_rss_and_atom_take_the_fast_path_with_feedparser_s_fields():
    rss = parse_feed(RSS, URL)
    assert rss.parser == "lxml" and rss.version == "rss20" and rss.ttl_minutes == 30
    [entry] = rss.entries
    assert entry["link"] == "https://news.example/a?x=1&y=2" and entry["id"] == "g1"
    assert entry["summary"] == '<p>Body <img src="https://news.example/i.png" /></p>'
    assert entry["authors"] == [{"name": "Ed", "email": "ed@news.org"}]
    assert entry["published_parsed"] == "2026-11-16T10:00:00+00:00"
    atom = parse_feed(ATOM, URL)
    assert (atom.parser, atom.language, atom.link) == ("lxml", "de", "https://atom.example/")
    assert atom.entries[0]["link"] == "https://atom.example/blog/post"
    assert atom.entries[0]["content"][0]["value"] == '<a href="https://atom.example/blog/x">x</a>'
    for body in (RSS, ATOM):  # the reference agrees on every field the pipeline reads
        reference = parse_feed(body, URL, parser="feedparser")
        assert reference.parser == "feedparser"
        for ours, theirs in zip(parse_feed(body, URL).entries, reference.entries):
            for key in ("id", "link", "title", "summary", "published_parsed", "updated_parsed",
                        "authors", "author"):
                assert ours.get(key) == theirs.get(key), key
            assert [c["value"] for c in ours.get("content", [])] == [c["value"] for c in theirs.get("content", [])]
            assert [t["term"] for t in ours.get("tags", [])] == [t["term"] for t in theirs.get("tags", [])]


@pytest.mark.parametrize("body, reason", [
    (RSS.replace(b"</channel>", b""), "not well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x "y">]>' + RSS[38:], "DOCTYPE"),
    (RSS.replace(b'encoding="utf-8"', b'encoding="koi8-r"'), "encoding"),
    (RSS.replace(b"<item>", b"<item><xhtml:body xmlns:xhtml='http://www.w3.org/1999/xhtml'/>"), "xhtml_body"),
    (RSS.replace(b"</title><link>/a", b"<b>x</b></title><link>/a"), "markup inside"),
    (ATOM.replace(b'type="html">&lt;a', b'type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"/>&lt;a'),
     "content type"),
    (b'<feed xmlns="http://purl.org/atom/ns#"><entry><title>x</title></entry></feed>', "root"),
    (RSS.replace(b"</item>", b"<item><title>nested</title></item></item>"), "nested"),
    (RSS.replace(b"<item>", b'<x:meta xmlns:x="http://x.example/"><language>de</language></x:meta><item>'),
     "feed field nested"),
    (ATOM.replace(b"<entry>", b'<x:meta xmlns:x="http://x.example/"><link href="/n"/></x:meta><entry>'),
     "feed field nested"),
    (ATOM.replace(b"<name>Ann</name>", b'<x:foo xmlns:x="http://x.example/"><name>Deep</name></x:foo>'),
     "inside an author"),
])
def test_bodies_the_fast_path_cannot_vouch_for_are_feedparser_s(body, reason):
    with pytest.raises(fastparse.Unsupported, match=reason):
        fastparse.parse(body, URL)
    assert parse_feed(body, URL).parser == "feedparser"


def test_entities_are_never_expanded_and_nothing_is_fetched():
    xxe = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           b'<rss version="2.0"><channel><item><title>&e;</title></item></channel></rss>')
    with pytest.raises(fastparse.Unsupported):
        fastparse.parse(xxe, URL)
    assert "root:" not in str(parse_feed(xxe, URL).entries)


def test_a_fast_path_failure_falls_back_to_feedparser(monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug in the fast path")

    monkeypatch.setattr(fastparse, "parse", broken)
    parsed = parse_feed(RSS, URL)
    assert parsed.parser == "feedparser" and len(parsed.entries) == 1
    assert "fast parse path failed" in caplog.text


def test_the_setting_turns_the_fast_path_off_and_is_checked():
    assert Settings.from_env({}).feed_parser == "auto"
    assert Settings.from_env({"FEED_PARSER": "feedparser"}).feed_parser == "feedparser"
    with pytest.raises(ConfigError):
        Settings.from_env({"FEED_PARSER": "lxml"})
    assert parse_feed(RSS, URL, parser="feedparser").parser == "feedparser"
    assert parse.PARSERS == ("auto", "feedparser")


def test_the_entry_cap_applies_before_the_fast_path():
    items = b"".join(b"<item><title>t%d</title><link>https://n.example/%d</link></item>" % (i, i)
                     for i in range(30))
    body = b'<rss version="2.0"><channel><title>T</title>' + items + b"</channel></rss>"
    parsed = parse_feed(body, URL, max_entries=10)
    assert (parsed.parser, len(parsed.entries), parsed.entries_over_cap) == ("lxml", 10, 20)


@pytest.mark.parametrize("content_type", [None, "application/rss+xml", "text/xml", "text/xml; charset=utf-8",
                                          "text/html", "application/octet-stream"])
@pytest.mark.parametrize("title", ["Caf\u00e9 \u2013 na\u00efve", "Caf&#195;&#169;", "plain"])
def test_content_types_and_encodings_read_as_feedparser_reads_them(content_type, title):
    body = RSS.replace(b"One &amp; two", title.encode())
    ours, theirs = parse_feed(body, URL, content_type), parse_feed(body, URL, content_type, parser="feedparser")
    assert ours.entries[0]["title"] == theirs.entries[0]["title"], ours.parser


def test_a_latin_1_document_reads_as_feedparser_reads_it():
    body = RSS.replace(b'encoding="utf-8"', b'encoding="iso-8859-1"').replace(
        b"One &amp; two", "Caf\u00e9 \u00c3\u00a9 \u0093q\u0094".encode("latin-1"))
    ours, theirs = parse_feed(body, URL), parse_feed(body, URL, parser="feedparser")
    assert ours.parser == "lxml" and ours.entries[0]["title"] == theirs.entries[0]["title"]


def test_a_long_tag_is_resolved_as_feedparser_does_but_not_kept_in_the_tag_cache():
    from pipeline import fastmarkup

    fp = fastparse._feedparser()
    long_alt = "a" * 100_000  # a hostile feed's huge tag: rendered each time, never cached
    markup = f'<p><img src="/i.png" alt="{long_alt}"><a href="x">x</a></p>'
    fastmarkup._RENDERED.clear()
    first = fastmarkup.resolve(markup, URL, fp.safe_absolute, fp.cp1252)
    assert first == fp.resolve_relative_uris(markup, URL, "utf-8", "text/html")
    assert first == fastmarkup.resolve(markup, URL, fp.safe_absolute, fp.cp1252)
    assert 'src="https://news.example/i.png"' in first
    cached = {tag for tag, _ in fastmarkup._RENDERED}
    assert '<a href="x">' in cached and not any(long_alt in tag for tag in cached)


def test_the_tag_cache_stays_small_however_many_feeds_a_worker_parses():
    """A shard worker parses feed after feed: the tags it remembers (each feed's own, under
    its own address) must not grow with them (50,000 kept held ~25 MB in every worker)."""
    import tracemalloc

    from pipeline import fastmarkup

    fp = fastparse._feedparser()
    fastmarkup._RENDERED.clear()
    tracemalloc.start()
    try:
        for feed in range(1_000):  # 20,000 distinct tags
            base = f"https://news{feed}.example/feed.xml"
            for n in range(10):
                markup = f'<p><a href="/story/{n}" title="{feed}-{n}">x</a><img src="i{n}.png"></p>'
                resolved = fastmarkup.resolve(markup, base, fp.safe_absolute, fp.cp1252)
                if feed % 250 == 0:
                    assert resolved == fp.resolve_relative_uris(markup, base, "utf-8", "text/html")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        fastmarkup._RENDERED.clear()
    assert held < 3 << 20, f"{held / 2**20:.1f} MB held"


# Links as feeds write them, and the ways urllib would rewrite or refuse one.
_SCHEMES = st.sampled_from(["http", "https", "HTTP", "Https", "ftp", "javascript", "mailto", ""])
_SEPARATORS = st.sampled_from(["://", ":", ":///", "//", ""])
_HOSTS = st.sampled_from(["news.example", "a.b:8080", "user@host", "[::1]", "[bad", "host]",
                          "ex ample", "bücher.de", "", "h%41st", "host;x"])
_PIECES = st.text(alphabet="/abc%;?#&=. \t\n[]\\\"<>é+:@!~", max_size=12)
_B = "https://news.example/feed.xml"
_BASES = st.sampled_from(["", "https://news.example/feed.xml", "http://news.example/a/b/", "http://[bad/",
                          "https://[::1]:80/x", "ftp://files.example/", "relative/base", "http://h/p;q?r#f"])


# mostly links that look absolute, so the shortcut's edges (an empty query or fragment, a
# ";", a bracket, whitespace) are met often
_NEAR_ABSOLUTE = st.tuples(st.sampled_from(["http", "https"]), st.just("://"),
                           st.sampled_from(["news.example", "a.b:8080", "user@host", "[::1]"]),
                           st.lists(st.sampled_from(["/", "/a", "b", ";", "?", "#", "x=1", "&", " ", "\t",
                                                     "[", "]", "%20", "é", "//", "\\", ":"]),
                                    max_size=6).map("".join))
_ANY_LINK = st.tuples(_SCHEMES, _SEPARATORS, _HOSTS, _PIECES)


@given(base=_BASES, parts=st.one_of(_NEAR_ABSOLUTE, _NEAR_ABSOLUTE, _ANY_LINK))
@example(base=_B, parts=("https://news.example/a;",))  # urllib drops an empty parameter,
@example(base=_B, parts=("https://news.example/a;?x=1",))
@example(base=_B, parts=("https://news.example/a?",))  # an empty query,
@example(base=_B, parts=("https://news.example/a?#top",))
@example(base=_B, parts=("https://news.example/a#",))  # an empty fragment,
@example(base=_B, parts=("https:///news.example/a",))  # feedparser the extra slashes
@example(base=_B, parts=("https://[::1/a",))  # urllib refuses a broken IPv6 host,
@example(base="http://[bad/", parts=("https://news.example/a",))  # and a base it cannot parse
@settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "12")) * 40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_a_link_is_joined_as_feedparser_joins_it(base, parts):
    """The plain-absolute shortcut gives what feedparser's joins give, for any link and base."""
    from feedparser import urls

    uri = "".join(parts)
    fp = fastparse._feedparser()
    assert fp.urljoin(base, uri) == urls._urljoin(base, uri)
    assert fp.safe_absolute(base, uri) == urls.make_safe_absolute_uri(base, uri)


@pytest.mark.parametrize("link", [
    "https://www.bbc.co.uk/news/articles/c4g0r2z5x5ro",
    "https://www.theguardian.com/world/2026/dec/07/story-title?CMP=rss#comments",
    "http://feeds.example.com/~r/site/~3/AbC-123_x/story.html",
    "https://img.example/i/800x450/photo.jpg?w=800&h=450&crop=1",
])
def test_a_plain_absolute_link_skips_urllib(link, monkeypatch):
    """A real feed's absolute links are joined without urllib's parse (the shortcut is taken)."""
    import urllib.parse

    fp = fastparse._feedparser()
    monkeypatch.setattr(urllib.parse, "urljoin", lambda *a, **k: pytest.fail("urllib joined it"))
    assert fp.safe_absolute("https://news.example/feed.xml", link) == link
    assert fp.urljoin("https://news.example/feed.xml", link) == link


def _one_item(inner: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            f"<item><title>x</title><link>http://a.example/1</link>{inner}</item></channel></rss>").encode()


@pytest.mark.parametrize("author", ["Jane Roe (jane.roe@news.example)", "jane@news.example", "no address here",
                                    "a" * 2000 + " x@y.example", "b" * 3000, "c" * 500 + "@" + "d" * 500,
                                    "e@f@g.example h@i.example"])
def test_an_authors_address_is_the_one_feedparser_finds(author):
    body = _one_item(f"<author>{author}</author>")
    assert fastparse.parse(body, "http://a.example/f").entries[0].get("authors") == \
        parse.parse_feed(body, "http://a.example/f", parser="feedparser").entries[0].get("authors")


def test_tags_keep_feedparsers_order_and_repeats_are_dropped():
    inner = "".join(f"<category>c{i % 7}</category>" for i in range(30))
    body = _one_item(inner + '<category domain="d">c1</category>')
    fast = fastparse.parse(body, "http://a.example/f").entries[0]["tags"]
    assert fast == parse.parse_feed(body, "http://a.example/f", parser="feedparser").entries[0]["tags"]
    assert len(fast) == 8


@pytest.mark.parametrize("inner", ["<author>" + "a" * (1 << 20) + "</author>",
                                   "<author>" + "a" * (1 << 20) + "@</author>",
                                   "".join(f"<category>c{i}</category>" for i in range(50_000))],
                         ids=["1 MB author", "1 MB author and an at-sign", "50,000 categories"])
def test_an_entry_made_to_be_slow_parses_in_linear_time(inner):
    """A megabyte author line without an address, or an entry of 50,000 distinct tags: an
    e-mail search and a tag check over each were quadratic (an hour for the first)."""
    started = time.perf_counter()
    parsed = parse.parse_feed(_one_item(inner), "http://a.example/f")
    assert parsed.parser == "lxml" and len(parsed.entries) == 1
    assert time.perf_counter() - started < 5
