"""The fast parse path: well-formed RSS 0.9x/2.0, RSS 1.0 (RDF) and Atom 1.0 through lxml.

It yields the entry fields the normalize stage reads from feedparser's output (id,
link, links, feedburner_origlink, title, summary, content, published/updated/created
and their `_parsed` values, author/authors, tags, language) and the feed's title,
link, language and ttl, computed as feedparser computes them: the same element
aliases and precedence (first title, a `description` after a summary becoming
content, deeper elements not overriding shallower ones), the same relative-URI
resolution (`xml:base`, then the document URL; feedparser's own `_urljoin` and
`resolve_relative_uris`), the same "looks like HTML" guess, the same repairs
(UTF-8 read as Latin-1, windows-1252 code points) and feedparser's own date parser.

It does not guess. A body it cannot vouch for raises `Unsupported` with the reason,
and the caller (`pipeline.parse`) gives the whole body to feedparser: not
well-formed, a DOCTYPE, an encoding other than UTF-8 or Latin-1 (or one the HTTP
header and the document disagree on), an unknown root or version, an element
feedparser treats specially that this module does not reproduce (images or
text inputs inside entries, Atom `source`, XHTML or base64 content, markup
inside a text element), or a content type it does not know.

The XML parser is hardened: no network, no DTD loading, no entity expansion,
`huge_tree` off (libxml2's depth and size limits hold).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from lxml import etree

from pipeline import fastmarkup

# The feed-level fields read_feed takes from the top level; feedparser takes them at any depth.
_FEED_FIELDS = frozenset({"title", "dc_title", "media_title", "link", "language", "dc_language",
                          "ttl", "id", "guid"})
ATOM = "http://www.w3.org/2005/Atom"
RSS10 = "http://purl.org/rss/1.0/"
RSS090 = "http://my.netscape.com/rdf/simple/0.9/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML_NS = "http://www.w3.org/XML/1998/namespace"
_XML_BASE = f"{{{XML_NS}}}base"
_XML_LANG = f"{{{XML_NS}}}lang"
_RSS_VERSIONS = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}
_LINK_TYPES = {"text": "text/plain", "plain": "text/plain", "html": "text/html",
               "xhtml": "application/xhtml+xml"}
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_KNOWN_TYPES = {"text/plain", "text/html"}
_CAN_BE_RELATIVE_URI = {"id", "link", "href", "url", "comments"}
_CAN_CONTAIN_RELATIVE_URIS = {"content", "description", "summary", "title"}
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._-]+)""", re.IGNORECASE)
# feedparser's repair of `?a=1&b;=2` in links (a query read as a reference)
_LINK_REFERENCE = re.compile("&([A-Za-z0-9_]+);")
_C1 = re.compile("[\x80-\x9f]")  # the code points feedparser maps as windows-1252
_UTF8 = {"utf-8", "utf8"}
_LATIN1 = {"iso-8859-1", "latin-1", "latin1", "iso8859-1", "l1"}
# Keys normalize reads: an element named so that this module does not handle is routed.
_RESERVED = {"links", "authors", "tags", "content", "summary", "author", "title", "link", "id",
             "published_parsed", "updated_parsed", "created_parsed", "feedburner_origlink",
             "language", "published", "updated", "created"}


class Unsupported(Exception):
    """This body is feedparser's: the reason says why."""


@dataclass
class FastFeed:
    """What feedparser would have returned for the fields the pipeline reads."""

    version: str
    feed: dict[str, Any]
    entries: list[dict[str, Any]]
    encoding: str


def _feedparser() -> Any:
    """feedparser's own helpers, imported once (the reference this module reproduces)."""
    global _FP
    if _FP is None:
        from feedparser import api, mixin, urls
        from feedparser.datetimes import _parse_date
        from feedparser.html import _cp1252

        handlers = {name.split("_", 2)[2].lower() for name in dir(api.StrictFeedParser)
                    if name.startswith(("_start_", "_end_"))}
        namespaces = {uri.lower(): prefix for uri, prefix in mixin._FeedParserMixin.namespaces.items()}
        # The URL joins are pure functions of their arguments, and a feed's entries repeat
        # their bases and many of their links: each pair is joined once per process.
        _FP = _Reference(mixin._FeedParserMixin.looks_like_html, urls.resolve_relative_uris,
                         _cached_join(urls._urljoin), _cached_join(urls.make_safe_absolute_uri),
                         _parse_date, _cp1252, frozenset(handlers), namespaces)
    return _FP


@dataclass(frozen=True)
class _Reference:
    looks_like_html: Callable[[str], bool]
    resolve_relative_uris: Callable[..., str]
    urljoin: Callable[[str, str], str]
    safe_absolute: Callable[..., str]
    parse_date: Callable[[str], Any]
    cp1252: dict[int, str]
    handlers: frozenset[str]
    namespaces: dict[str, str]


_FP: _Reference | None = None
_JOINS_CACHED = 1 << 11  # pairs kept per process (each at most _JOIN_CACHED_CHARS): few lookups
# hit (bench-feeds, 500 feeds in one process: 18% with 16,384 kept), memory held in every worker
_JOIN_CACHED_CHARS = 2048


# An absolute http(s) address that urllib's `urljoin` gives back as it is, whatever the
# base: printable ASCII, a host right after "//" (feedparser strips extra slashes), no
# brackets (urllib checks IPv6 hosts), no ";" (path parameters are re-joined), and a query
# or fragment only when not empty (an empty one is dropped). Such an address, joined by
# feedparser's `_urljoin` or `make_safe_absolute_uri` against a base urllib can parse, is
# itself: nearly every link of a real feed is one, and skips urllib's parse and re-join.
_PLAIN_ABSOLUTE = re.compile(
    r"https?://[A-Za-z0-9._~%!$&'()*+,=:@-]+(?:/[A-Za-z0-9._~%!$&'()*+,=:@/-]*)?"
    r"(?:\?[!-\"$-~]+)?(?:#[!-~]+)?")


def _cached_join(join: Callable[..., str]) -> Callable[..., str]:
    """`join` with its short (base, uri) pairs remembered: a long one (a hostile feed's
    megabyte `id`) is joined afresh, so the cache's memory stays bounded. A plain absolute
    address (`_PLAIN_ABSOLUTE`) is its own join, without urllib."""
    cached = lru_cache(maxsize=_JOINS_CACHED)(join)

    def short_or_fresh(base: str | None, uri: str | None = None) -> str:
        if uri and _PLAIN_ABSOLUTE.fullmatch(uri) and (not base or _parsable_base(base)):
            return uri
        if len(base or "") + len(uri or "") <= _JOIN_CACHED_CHARS:
            return cached(base, uri)
        return join(base, uri)

    return short_or_fresh


def _parses(base: str) -> bool:
    """Whether urllib parses `base` (a join against one it cannot parse is feedparser's "")."""
    from urllib.parse import urlparse

    try:
        urlparse(base)
    except ValueError:
        return False
    return True


_parses_cached = lru_cache(maxsize=1024)(_parses)


def _parsable_base(base: str) -> bool:
    """`_parses`, remembered for a base short enough to keep."""
    return _parses_cached(base) if len(base) <= _JOIN_CACHED_CHARS else _parses(base)


def _encoding(body: bytes, content_type: str | None) -> str:
    """The document's encoding when feedparser and lxml would both read it the same way."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:4]:
        raise Unsupported("UTF-16/32 body")
    declared_http = None
    if content_type:
        match = _CHARSET.search(content_type)
        declared_http = match.group(1).lower() if match else None
        media = content_type.split(";", 1)[0].strip().lower()
        if media.startswith("text/") and declared_http is None and body.isascii():
            return "us-ascii"  # RFC 3023's default, which feedparser tries first
    xml_match = _XML_ENCODING.match(body[:512].removeprefix(b"\xef\xbb\xbf"))
    declared_xml = xml_match.group(1).decode("ascii").lower() if xml_match else None
    if declared_http is not None and declared_xml is not None and declared_http != declared_xml:
        raise Unsupported(f"charset {declared_http} against declaration {declared_xml}")
    declared = declared_http or declared_xml
    if declared is None or declared in _UTF8:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise Unsupported("not UTF-8") from None
        return "utf-8"
    if declared in _LATIN1 and declared_http is None:
        return "iso-8859-1"
    raise Unsupported(f"encoding {declared}")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_blank_text=False,
                           recover=False)


def parse(body: bytes, url: str, content_type: str | None = None) -> FastFeed:
    """The fields of a body the fast path vouches for; `Unsupported` otherwise."""
    encoding = _encoding(body, content_type)
    if b"<!DOCTYPE" in body[:4096] or b"<!ENTITY" in body:
        raise Unsupported("DOCTYPE")
    if body[:1].isspace() and body.lstrip()[:5] == b"<?xml":
        body = body.lstrip()  # a blank line before the declaration (feedparser reads on)
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise Unsupported(f"not well-formed: {exc}") from None
    if root is None:
        raise Unsupported("empty document")
    if root.getroottree().docinfo.doctype:  # one past the first 4 KB (after long comments)
        raise Unsupported("DOCTYPE")
    return _Document(url, encoding).read(root)


def _local(tag: Any) -> tuple[str, str]:
    if not isinstance(tag, str):
        raise Unsupported("comment or processing instruction inside an entry")
    if tag[0] == "{":
        namespace, local = tag[1:].split("}", 1)
        return namespace, local
    return "", tag


class _Document:
    def __init__(self, url: str, encoding: str):
        self.fp = _feedparser()
        self.url = url
        self.document_encoding = encoding
        self.encoding = "utf-8"  # feedparser's parser always works on the body as UTF-8
        self.atom = False
        self.names: dict[tuple[str, str | None], str] = {}

    # -- names and scopes ---------------------------------------------------------------

    def name(self, element: Any) -> str:
        """feedparser's handler name for an element (`title`, `dc_creator`, ...)."""
        key = (element.tag, element.prefix)
        name = self.names.get(key)
        if name is None:
            name = self.names[key] = self._name(element)
        return name

    def _name(self, element: Any) -> str:
        namespace, local = _local(element.tag)
        local = local.lower()
        lowered = namespace.lower()
        if "backend.userland.com/rss" in lowered:
            lowered = "http://backend.userland.com/rss"
        prefix = self.fp.namespaces.get(lowered)
        if prefix is None:  # an unknown namespace: feedparser dispatches on the document's prefix
            prefix = (element.prefix or "").lower()
        return f"{prefix.lower()}_{local}" if prefix else local

    def base(self, element: Any, current: str) -> str:
        given = element.get(_XML_BASE) or element.get("base")
        if not given:
            return current
        if current:
            return self.fp.safe_absolute(current, given) or current
        return self.fp.urljoin(current, given)

    # -- the document -------------------------------------------------------------------

    def read(self, root: Any) -> FastFeed:
        namespace, local = _local(root.tag)
        base = self.fp.safe_absolute(self.url, self.url) if self.url else ""
        base = self.base(root, base or self.url)
        feed: dict[str, Any] = {}
        lang = root.get(_XML_LANG) or root.get("lang")
        if namespace == "" and local == "rss":
            given = root.get("version", "")
            version = _RSS_VERSIONS.get(given) or ("rss20" if given.startswith("2.") else "rss")
            channels = [c for c in root if c.tag == "channel"]
            if len(channels) != 1:
                raise Unsupported(f"RSS with {len(channels)} channels")
            if lang:
                feed["language"] = lang.replace("_", "-")
            channel = channels[0]
            items = [c for c in channel if c.tag == "item"]
            self.read_feed(channel, self.base(channel, base), feed)
            entry_base = self.base(channel, base)
        elif namespace == RDF and local == "RDF":
            rss = RSS10 if root.find(f"{{{RSS10}}}channel") is not None else RSS090
            version = "rss10" if rss == RSS10 else "rss090"
            channels = [c for c in root if c.tag == f"{{{rss}}}channel"]
            items = [c for c in root if c.tag == f"{{{rss}}}item"]
            if len(channels) != 1:
                raise Unsupported("RDF without one RSS 1.0 channel")
            self.read_feed(channels[0], self.base(channels[0], base), feed)
            entry_base = base
        elif namespace == ATOM and local == "feed":
            version, self.atom = "atom10", True
            if lang:
                feed["language"] = lang.replace("_", "-")
            items = [c for c in root if c.tag == f"{{{ATOM}}}entry"]
            self.read_feed(root, base, feed)
            entry_base = base
        else:
            raise Unsupported(f"root {root.tag!r}")
        if sum(1 for _ in root.iter("{*}item", "{*}entry")) != len(items):
            raise Unsupported("an item or entry out of its place, or nested")
        entries = [_Entry(self, item, self.base(item, entry_base)).read() for item in items]
        return FastFeed(version, feed, entries, self.document_encoding)

    def read_feed(self, element: Any, base: str, feed: dict[str, Any]) -> None:
        """The feed's title, link, language and ttl (the direct children feedparser reads)."""
        title_depth = -1  # feedparser's rule: the first non-empty title holds, until an
        for child in element:  # image, text input, item or entry resets it
            if not isinstance(child.tag, str):
                continue
            name = self.name(child)
            child_base = self.base(child, base)
            if name in ("title", "dc_title", "media_title"):
                ctype = self.content_type(child, "text/plain")
                value = self.finish("title", self.text(child), ctype, child_base)
                if not -1 < title_depth:
                    feed["title"] = value
                    if value and name != "media_title":
                        title_depth = 0
            elif name in ("image", "textinput", "item", "entry"):
                title_depth = -1
            elif name == "link":
                self.feed_link(child, child_base, feed)
            elif name in ("id", "guid"):  # an Atom feed's id is its link until one is given
                attrs = {k.lower(): v for k, v in child.attrib.items()}
                if attrs.get("ispermalink", "true") == "true":
                    feed.setdefault("link", self.finish("id", self.text(child), "text/plain", child_base))
            elif name in ("language", "dc_language", "ttl"):
                key = "ttl" if name == "ttl" else "language"
                feed[key] = self.finish(key, self.text(child), "text/plain", child_base)
            elif any(isinstance(d.tag, str) and self.name(d) in _FEED_FIELDS for d in child.iterdescendants()):
                # feedparser reads the feed's fields at any depth; this module at the top only
                raise Unsupported(f"a feed field nested in <{name}>")

    def feed_link(self, child: Any, base: str, feed: dict[str, Any]) -> None:
        attrs = {k.lower(): v for k, v in child.attrib.items()}
        href = attrs.get("url") or attrs.get("uri") or attrs.get("href")
        rel = (attrs.get("rel") or "alternate").lower()
        if href or "href" in attrs:
            ctype = (attrs.get("type") or ("application/atom+xml" if rel == "self" else "text/html")).lower()
            if rel == "alternate" and _LINK_TYPES.get(ctype, ctype) in _HTML_TYPES:
                feed["link"] = self.fp.urljoin(base, href or "")
            return
        output = self.finish("link", self.text(child), "text/plain", base)
        feed["link"] = _LINK_REFERENCE.sub(r"&\g<1>", output)

    # -- values ---------------------------------------------------------------------------

    @staticmethod
    def text(element: Any) -> str:
        if len(element):
            raise Unsupported(f"markup inside <{element.tag}>")
        return element.text or ""

    def content_type(self, element: Any, default: str) -> str:
        given = (element.get("type") or default).lower()
        mapped = {"text": "text/plain", "plain": "text/plain", "html": "text/html",
                  "xhtml": "application/xhtml+xml"}.get(given, given)
        if mapped not in _KNOWN_TYPES or element.get("mode") == "base64":
            raise Unsupported(f"content type {given!r}")
        return mapped

    def finish(self, element: str, text: str, ctype: str, base: str, resolve: bool = True) -> str:
        """feedparser's `pop` on an element's text: strip, resolve, guess HTML, repair."""
        output = text.strip()
        if element in _CAN_BE_RELATIVE_URI and output and resolve:
            output = self.fp.urljoin(base or "", output)
        if (not self.atom and ctype == "text/plain" and ("<" in output or "&" in output)
                and self.fp.looks_like_html(output)):  # it needs a tag or a reference
            ctype = "text/html"
        if ctype in _HTML_TYPES and element in _CAN_CONTAIN_RELATIVE_URIS and output:
            output = self.resolve_markup(output, base, ctype)
        if not output.isascii():  # feedparser's repair of UTF-8 read as Latin-1
            try:
                output = output.encode("iso-8859-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                pass
        return output.translate(self.fp.cp1252) if _C1.search(output) else output

    def resolve_markup(self, output: str, base: str, ctype: str) -> str:
        """feedparser's relative-URI pass over embedded markup (`pipeline.fastmarkup`;
        feedparser's own resolver for markup that is not plain enough)."""
        if "<" not in output and "&" not in output:
            return output
        fast = fastmarkup.resolve(output, base, self.fp.safe_absolute, self.fp.cp1252)
        if fast is not None:
            return fast
        return self.fp.resolve_relative_uris(output, base, self.encoding, ctype)

    def date(self, value: str) -> Any:
        return self.fp.parse_date(value)


# Elements whose feedparser handlers write none of the keys the pipeline reads.
_HARMLESS = {
    "comments", "enclosure", "subtitle", "tagline", "rights", "copyright", "info", "generator",
    "dc_rights", "dc_publisher", "webmaster", "contributor", "dc_contributor", "expirationdate",
    "dcterms_valid", "cloud", "width", "height", "url", "uri", "homepage", "newlocation",
    "feedburner_browserfriendly", "media_content", "media_thumbnail", "media_group",
    "media_credit", "media_rating", "media_restriction", "media_license", "media_player",
    "itunes_image", "itunes_link", "itunes_block", "itunes_explicit", "itunes_subtitle",
    "itunes_owner", "cc_license", "creativecommons_license", "psc_chapters", "psc_chapter",
    "admin_generatoragent", "admin_errorreportsto", "georss_point", "georss_line",
    "georss_polygon", "georss_box", "georss_where", "gml_point", "gml_pos", "gml_linestring",
    "gml_poslist", "gml_polygon", "gml_exterior", "gml_linearring", "gml_envelope",
    "gml_lowercorner", "gml_uppercorner", "georss_featurename", "georss_featuretypetag",
    "georss_relationshiptag", "georss_elev", "georss_floor", "georss_radius",
    "itunes_name", "itunes_email", "name", "email",
}
_DATES = {"pubdate": "published", "published": "published", "issued": "published",
          "dcterms_issued": "published", "updated": "updated", "modified": "updated",
          "lastbuilddate": "updated", "dc_date": "updated", "dcterms_modified": "updated",
          "created": "created", "dcterms_created": "created"}
_CONTENT = {"content", "content_encoded", "fullitem", "body", "xhtml_body"}
_AUTHORS = {"author", "managingeditor", "dc_author", "dc_creator", "itunes_author"}
_CATEGORIES = {"category", "keywords", "dc_subject", "media_category", "itunes_category"}
_EMAIL = re.compile(r'''(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?''')  # noqa: E501 - feedparser's own pattern, kept verbatim


# feedparser's e-mail search (`_EMAIL`) backtracks over every start of a long run of
# letters: quadratic in an author line without an address. A match can only start where a
# run of the local part's characters starts and reaches an at-sign (a later start in the
# run reaches the same at-sign, with the same rest), so `_email_in` tries `_EMAIL` there
# only, left to right: `_LOCAL_PART` finds those runs in one pass (a start inside a run
# fails its look-behind at once, and a run is read once). The same match as feedparser's
# search, in linear time.
_LOCAL_PART = re.compile(r"(?<![a-zA-Z0-9_\-.+])[a-zA-Z0-9_\-.+]++@")


def _email_in(author: str) -> re.Match[str] | None:
    for run in _LOCAL_PART.finditer(author):
        match = _EMAIL.match(author, run.start())
        if match:
            return match
    return None


def name_and_email(author: str) -> tuple[str, str | None]:
    """feedparser's split of an author line into the name and the e-mail address in it
    (`_sync_author_detail`'s), the address found in linear time (`_email_in`)."""
    match = _email_in(author)
    if not match:
        return author, None
    email = match.group(0)
    author = author.replace(email, "").replace("()", "").replace("<>", "").replace("&lt;&gt;", "").strip()
    if author and author[0] == "(":
        author = author[1:]
    if author and author[-1] == ")":
        author = author[:-1]
    return author.strip(), email


@dataclass
class _Entry:
    """One item or entry, read the way feedparser's handlers read it."""

    doc: _Document
    element: Any
    base: str
    entry: dict[str, Any] = field(default_factory=dict)
    depths: dict[str, int] = field(default_factory=dict)
    title_depth: int = -1
    has_content: bool = False
    guid_is_link: bool = False
    tag_keys: set[tuple[Any, Any, Any]] = field(default_factory=set)

    def read(self) -> dict[str, Any]:
        about = self.element.get(f"{{{RDF}}}about")
        if about:
            self.entry["id"] = about
        self.walk(self.element, self.base, 1)
        return self.entry

    def walk(self, parent: Any, base: str, depth: int) -> None:
        for child in parent:
            if not isinstance(child.tag, str):
                continue  # a comment or a processing instruction between elements
            name = self.doc.name(child)
            child_base = self.doc.base(child, base)
            if not self.handle(name, child, child_base, depth + 1):
                self.walk(child, child_base, depth + 1)

    def store(self, key: str, value: Any, depth: int) -> None:
        """feedparser's rule: a deeper element does not override a shallower one."""
        old = self.depths.get(key)
        if old is None or depth <= old:
            self.depths[key] = depth
            self.entry[key] = value

    def handle(self, name: str, el: Any, base: str, depth: int) -> bool:
        """Apply the element's handler; True when its children were read (or need not be)."""
        doc = self.doc
        if name in ("title", "dc_title", "media_title"):
            self.title(name, el, base, depth)
        elif name == "link":
            self.link(el, base, depth)
        elif name in ("guid", "id"):
            self.guid(el, base, depth)
        elif name in ("description", "dc_description", "media_description"):
            self.summary_like(el, base, depth, "description", "text/html")
        elif name in ("summary", "itunes_summary"):
            self.summary_like(el, base, depth, "summary", "text/plain")
        elif name in ("content_encoded", "fullitem"):
            self.content(el, base, depth, "text/html")
        elif name == "content":
            if el.get("src"):
                raise Unsupported("content with src")
            self.content(el, base, depth, "text/plain")
        elif name in _DATES:
            key = _DATES[name]
            value = doc.finish(key, doc.text(el), "text/plain", base)
            self.store(key, value, depth)
            self.entry[f"{key}_parsed"] = doc.date(value)
        elif name in _AUTHORS:
            self.author(el, base, depth)
        elif name in _CATEGORIES:
            self.category(name, el, base, depth)
        elif name in ("itunes_keywords", "media_keywords"):
            value = doc.finish(name, doc.text(el), "text/plain", base)
            scheme = "http://www.itunes.com/" if name == "itunes_keywords" else None
            for term in value.split(","):
                if term.strip():
                    self.add_tag(term.strip(), scheme, None)
        elif name in ("language", "dc_language"):
            self.store("language", doc.finish("language", doc.text(el), "text/plain", base), depth)
        elif name == "feedburner_origlink":
            self.store(name, doc.finish(name, doc.text(el), "text/plain", base), depth)
        elif name == "image":
            self.image(el, base, depth)
        elif name == "source":  # its elements are the source's, not the entry's
            if any(self.doc.name(e) in _CONTENT for e in el.iter() if isinstance(e.tag, str)):
                raise Unsupported("content inside a source")
            self.title_depth = -1
        elif name in _HARMLESS:
            return False
        elif name in doc.fp.handlers or name in _RESERVED:
            raise Unsupported(f"element {name!r} in an entry")
        else:
            return False  # kept by feedparser under its own key; its children are read
        return True

    # -- handlers -------------------------------------------------------------------------

    def title(self, name: str, el: Any, base: str, depth: int) -> None:
        ctype = self.doc.content_type(el, "text/plain")
        value = self.doc.finish("title", self.doc.text(el), ctype, base)
        if -1 < self.title_depth <= depth:
            return
        self.store("title", value, depth)
        if value and name != "media_title":
            self.title_depth = depth

    def image(self, el: Any, base: str, depth: int) -> None:
        """An entry's `<image>`: feedparser reads its title (under the depth rule) and keeps
        its link out of the entry."""
        self.title_depth = -1
        for child in el:
            if not isinstance(child.tag, str):
                continue
            name = self.doc.name(child)
            if name == "title":
                self.title(name, child, self.doc.base(child, base), depth + 1)
            elif name not in ("url", "link", "width", "height"):
                raise Unsupported(f"{name!r} inside an entry's image")

    def link(self, el: Any, base: str, depth: int) -> None:
        attrs = {k.lower(): v for k, v in el.attrib.items()}
        rel = (attrs.get("rel") or "alternate").lower()
        ctype = (attrs.get("type") or ("application/atom+xml" if rel == "self" else "text/html")).lower()
        ctype = _LINK_TYPES.get(ctype, ctype)
        href = attrs.get("url") or attrs.get("uri") or attrs.get("href")
        links = self.entry.setdefault("links", [])
        if href or "href" in attrs:
            href = self.doc.fp.urljoin(base, href or "")
            links.append({"rel": rel, "type": ctype, "href": href})
            if rel == "alternate" and ctype in _HTML_TYPES:
                self.entry["link"] = href
            return
        link = {"rel": rel, "type": ctype}
        links.append(link)
        output = self.doc.finish("link", self.doc.text(el), "text/plain", base)
        output = output.replace("&amp;", "&")
        output = _LINK_REFERENCE.sub(r"&\g<1>", output)
        self.entry["link"] = output
        if output:
            link["href"] = output

    def guid(self, el: Any, base: str, depth: int) -> None:
        attrs = {k.lower(): v for k, v in el.attrib.items()}
        self.guid_is_link = attrs.get("ispermalink", "true") == "true"
        value = self.doc.finish("id", self.doc.text(el), "text/plain", base, resolve=self.guid_is_link)
        self.store("id", value, depth)
        if self.guid_is_link:
            self.entry.setdefault("link", value)

    def summary_like(self, el: Any, base: str, depth: int, kind: str, default: str) -> None:
        if "summary" in self.entry and not self.has_content:
            self.content(el, base, depth, "text/plain")
            return
        ctype = self.doc.content_type(el, default)
        self.store("summary", self.doc.finish(kind, self.doc.text(el), ctype, base), depth)

    def content(self, el: Any, base: str, depth: int, default: str) -> None:
        self.has_content = True
        ctype = self.doc.content_type(el, default)
        value = self.doc.finish("content", self.doc.text(el), ctype, base)
        self.entry.setdefault("content", []).append({"value": value})
        self.entry.setdefault("summary", value)

    def author(self, el: Any, base: str, depth: int) -> None:
        authors = self.entry.setdefault("authors", [])
        detail: dict[str, Any] = {}
        authors.append(detail)
        text = el.text or ""
        for child in el:
            name = self.doc.name(child)
            if name in ("name", "email", "itunes_name", "itunes_email"):
                key = name.removeprefix("itunes_")
                value = self.doc.finish(key, self.doc.text(child), "text/plain", base)
                detail[key] = value
            elif name in ("uri", "url", "homepage"):
                detail["href"] = self.doc.finish("href", self.doc.text(child), "text/plain", base)
            elif name in self.doc.fp.handlers or name in _RESERVED:
                raise Unsupported(f"{name!r} inside an author")
            elif len(child):  # feedparser finds a name or email nested at any depth
                raise Unsupported(f"markup inside an author's <{name}>")
            text += child.tail or ""
        self.store("author", self.doc.finish("author", text, "text/plain", base), depth)
        self.sync_author(detail)

    def sync_author(self, detail: dict[str, Any]) -> None:
        """feedparser's `_sync_author_detail`: the name and email out of `author`."""
        if detail:
            name, email = detail.get("name"), detail.get("email")
            if name and email:
                self.entry["author"] = f"{name} ({email})"
            elif name or email:
                self.entry["author"] = name or email
            return
        author = self.entry.get("author")
        if not author:
            return
        author, email = name_and_email(author)
        if author:
            detail["name"] = author
        if email:
            detail["email"] = email

    def category(self, name: str, el: Any, base: str, depth: int) -> None:
        if name == "itunes_category":
            self.add_tag(el.get("text"), "http://www.itunes.com/", None)
            if len(el):
                for child in el:  # nested itunes:category elements
                    if self.doc.name(child) != "itunes_category":
                        raise Unsupported("markup inside itunes:category")
                    self.category(name, child, base, depth + 1)
                return
        else:
            scheme = el.get("scheme", el.get("domain"))
            if name == "media_category" and scheme is None:
                scheme = "http://search.yahoo.com/mrss/category_schema"
            self.add_tag(el.get("term"), scheme, el.get("label"))
        value = self.doc.finish("category", self.doc.text(el), "text/plain", base)
        if not value:
            return
        tags = self.entry["tags"]
        if tags and not tags[-1]["term"]:
            tags[-1]["term"] = value
        else:
            self.add_tag(value, None, None)

    def add_tag(self, term: Any, scheme: Any, label: Any) -> None:
        """feedparser's: each distinct (term, scheme, label) once, in order; the ones kept
        are remembered in a set (feedparser scans the list: quadratic in an entry's tags)."""
        tags = self.entry.setdefault("tags", [])
        if not term and not scheme and not label:
            return
        if (term, scheme, label) not in self.tag_keys:
            self.tag_keys.add((term, scheme, label))
            tags.append({"term": term, "scheme": scheme, "label": label})
