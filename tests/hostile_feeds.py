"""Hostile feeds: Hypothesis strategies, and one named sample of each class of input that
has broken a run before (kept as regular tests).

Every generated body is a whole HTTP response body, served on loopback and pushed
through the real pipeline by the tests.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

from hypothesis import strategies as st

# Text that has broken a step before: NUL, C0 controls, surrogate references, bidi,
# markup fragments, entity soup, very long words.
NASTY_TEXT = [
    "\x00", "a\x00b", "\x01\x02\x1b[31m", "&#xD800;", "&#55296;", "&#0;", "&#x110000;",
    "\ufeff", "\u202e", "<img ", "<script>alert(1)</script>", "]]>", "<![CDATA[", "&amp;amp;",
    "&nbsp;", "\r\n\r\n", "💥", "Ａ", "x" * 300, "<p>" * 50,
]
NASTY_URLS = [
    "http://example.com:abc/story", "http://[::1/story", "http://example.com:99999/x",
    "http://[fe80::1%25eth0]/", "javascript:alert(1)", "//no-scheme.example/a", "http://", "",
    "http://exa mple.com/", "https://news.example/" + "a" * 3000, "http://127.0.0.1:8080/admin",
    "mailto:x@y", "http://user:pw@example.com/", "http://例え.テスト/記事", "http://%zz/",
]
NASTY_DATES = [
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "Mon, 32 Foo 99999 25:61:61 +9999",
    "", "yesterday", "1970-01-01T00:00:00Z", "2026-02-30T10:00:00Z", "-1", "1e309",
]
LANGUAGES = ["en", "xx", "", "\x00", "en-US", "english!"]
NASTY_TTL = ["99999999999", "-5", "abc", "0", "1e9", "１２", "9" * 40]

text = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40),
                 st.lists(st.sampled_from(NASTY_TEXT), max_size=4).map("".join))
urls = st.one_of(st.sampled_from(NASTY_URLS), st.text(max_size=30).map(lambda t: "http://x.example/" + t))
dates = st.one_of(st.sampled_from(NASTY_DATES), st.text(max_size=20))


def _xml_text(value: str) -> str:
    """Escape for XML, keeping character references in (the point of several samples)."""
    return escape(value).replace("&amp;#", "&#")


@st.composite
def rss_item(draw: st.DrawFn) -> str:
    fields = {
        "title": draw(text), "link": draw(urls), "guid": draw(st.one_of(text, urls)),
        "pubDate": draw(dates), "description": draw(text), "author": draw(text),
        "category": draw(text),
    }
    keep = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
    return "<item>" + "".join(f"<{k}>{_xml_text(fields[k])}</{k}>" for k in keep) + "</item>"


@st.composite
def rss_feed(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(rss_item(), max_size=6))
    ttl = draw(st.sampled_from(NASTY_TTL))
    body = (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{_xml_text(draw(text))}</title><link>{_xml_text(draw(urls))}</link>"
            f"<language>{_xml_text(draw(st.sampled_from(LANGUAGES)))}</language>"
            f"<ttl>{ttl}</ttl>{''.join(items)}</channel></rss>")
    return _encode(draw, body)


@st.composite
def atom_feed(draw: st.DrawFn) -> bytes:
    entries = []
    for _ in range(draw(st.integers(0, 5))):
        entries.append(
            f"<entry><id>{_xml_text(draw(st.one_of(text, urls)))}</id>"
            f"<title type=\"{draw(st.sampled_from(['text', 'html', 'xhtml', 'bogus']))}\">"
            f"{_xml_text(draw(text))}</title>"
            f"<link href=\"{_xml_text(draw(urls))}\" rel=\"{draw(st.sampled_from(['alternate', 'self', '']))}\"/>"
            f"<updated>{_xml_text(draw(dates))}</updated>"
            f"<content type=\"html\">{_xml_text(draw(text))}</content></entry>")
    base = _xml_text(draw(urls))
    body = (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
            f'xml:base="{base}"><title>{_xml_text(draw(text))}</title>{"".join(entries)}</feed>')
    return _encode(draw, body)


@st.composite
def rdf_feed(draw: st.DrawFn) -> bytes:
    items = []
    for _ in range(draw(st.integers(0, 5))):
        link = _xml_text(draw(urls))
        items.append(f'<item rdf:about="{link}"><title>{_xml_text(draw(text))}</title>'
                     f"<link>{link}</link><dc:date>{_xml_text(draw(dates))}</dc:date>"
                     f"<description>{_xml_text(draw(text))}</description></item>")
    body = ('<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>{_xml_text(draw(text))}</title></channel>{''.join(items)}</rdf:RDF>")
    return _encode(draw, body)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text, urls, dates),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=8), children, max_size=3)),
    max_leaves=8,
)


@st.composite
def json_feed(draw: st.DrawFn) -> bytes:
    keys = ["id", "url", "external_url", "title", "content_html", "content_text", "summary",
            "date_published", "date_modified", "authors", "author", "tags", "language"]
    items = []
    for _ in range(draw(st.integers(0, 5))):
        item = {k: draw(st.one_of(json_values, urls, dates)) for k in draw(
            st.lists(st.sampled_from(keys), unique=True))}
        items.append(item)
    document = {"version": "https://jsonfeed.org/version/1.1", "title": draw(json_values),
                "home_page_url": draw(st.one_of(urls, json_values)), "items": items}
    return json.dumps(document).encode()


def _encode(draw: st.DrawFn, body: str) -> bytes:
    """Mostly UTF-8 (lone surrogates as replacement), sometimes with raw NUL or stray bytes."""
    raw = body.encode("utf-8", "replace")
    damage = draw(st.sampled_from(["none", "none", "nul", "cp1252", "truncate"]))
    if damage == "nul":
        return raw.replace(b"<title>", b"<title>\x00", 1)
    if damage == "cp1252":
        return raw.replace(b"<title>", b"<title>\x92\x93", 1)
    if damage == "truncate":
        return raw[: max(1, len(raw) * 2 // 3)]
    return raw


any_body = st.one_of(st.binary(max_size=300), rss_feed(), atom_feed(), rdf_feed(), json_feed())


def rss(items: str, extra: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
            f"<link>https://hostile.example/</link>{extra}{items}</channel></rss>").encode()


def rss_item_xml(n: int, title: str = "", link: str | None = None, description: str = "") -> str:
    link = link if link is not None else f"https://hostile.example/{n}"
    return (f"<item><title>Story {n} {title}</title><link>{escape(link)}</link>"
            f"<guid>hostile-{n}</guid><pubDate>Mon, 16 Nov 2026 10:00:00 +0000</pubDate>"
            f"<description>{description or f'Body of hostile story {n}.'}</description></item>")


# One sample of every class that broke a run before; each is also a regression test.
HOSTILE_SAMPLES: dict[str, tuple[bytes, str]] = {
    "link_port_not_a_number": (rss(rss_item_xml(1, link="http://example.com:abc/story")), "application/rss+xml"),
    "link_broken_ipv6": (rss(rss_item_xml(2, link="http://[::1/story")), "application/rss+xml"),
    "surrogate_reference": (rss(rss_item_xml(3, title="&#xD800;", description="&#55296; x")), "application/rss+xml"),
    "nul_reference_and_byte": (rss(rss_item_xml(4, title="a\x00b", description="&#0;c")), "application/rss+xml"),
    "ttl_overflow": (rss(rss_item_xml(5), extra="<ttl>99999999999</ttl>"), "application/rss+xml"),
    "json_huge_number": (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [{"id": "1", '
        b'"url": "https://hostile.example/j1", "title": "Big", "content_text": "x", "number": '
        + b"9" * 5000 + b'}, {"id": "2", "url": "https://hostile.example/j2", "title": "Fine", '
        b'"content_text": "ok"}]}', "application/feed+json"),
    "json_deep_nesting": (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "x": '
        + b"[" * 100_000 + b"]" * 100_000 + b"}]}", "application/feed+json"),
    "json_year_one": (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "y1", '
        b'"url": "https://hostile.example/y1", "title": "Year one", "content_text": "old", '
        b'"date_published": "0001-01-01T00:00:00+01:00"}]}', "application/feed+json"),
    "json_wrong_types": (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": ["a"], "items": [{"id": {"a": 1}, '
        b'"url": 5, "title": null, "tags": "notalist", "authors": [1, "x", {"name": ["n"]}], '
        b'"content_html": {"x": 1}, "date_published": 12}]}', "application/feed+json"),
    "huge_link": (rss(rss_item_xml(6, link="https://hostile.example/" + "a" * 5000)), "application/rss+xml"),
    "huge_guid": (rss(rss_item_xml(7).replace("<guid>hostile-7", "<guid>" + "g" * 5000)), "application/rss+xml"),
    "many_entries": (rss("".join(f"<item><title>m{n}</title><link>https://hostile.example/m/{n}</link>"
                                 f"<description>many {n}</description></item>" for n in range(900))),
                     "application/rss+xml"),
    "unclosed_img": (rss(rss_item_xml(8, description="&lt;img " * 20_000)), "application/rss+xml"),
    "feed_date_year_zero": (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>'
        b"<updated>0000-01-01T00:00:00Z</updated><entry><id>z1</id><title>Zero year feed</title>"
        b'<link href="https://hostile.example/z1"/><updated>2026-11-16T10:00:00Z</updated>'
        b"<content>fine</content></entry></feed>", "application/atom+xml"),
    "random_bytes": (bytes(range(256)) * 40, "application/octet-stream"),
    "body_is_a_path": (b"/etc/passwd", "application/rss+xml"),
}
