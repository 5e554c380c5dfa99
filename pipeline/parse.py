"""Parse stage: feed bytes -> entries, through feedparser, with no network I/O.

feedparser is kept behind this adapter: it is always handed a file-like object
over the fetched bytes (given bytes or a string, it first tries them as a file
path or a URL), and its output (dicts with aliased keys and `time.struct_time`
values) is turned into JSON-safe dicts at once, with NUL removed and lone
surrogates replaced (`pipeline.containment`). A malformed ("bozo") feed keeps
every entry that parsed. A body meant as UTF-8 with stray windows-1252 bytes, or
undeclared and in a legacy encoding, is turned into UTF-8 first
(`pipeline.encoding`). Entries past the cap are cut from the bytes before
feedparser sees them (`pipeline.entry_cap`). Character references that make
feedparser raise (surrogates) are neutralized first; an entry that cannot be
turned into JSON is kept as a failed entry, which the normalize stage quarantines.

Two parsers read XML feeds. With `FEED_PARSER=auto` (the default) each body is first
offered to the fast path (`pipeline.fastparse`, lxml), which takes the well-formed
RSS, RDF and Atom documents it can read exactly as feedparser would and refuses the
rest; a refused body, or one the fast path fails on, goes to feedparser whole. With
`FEED_PARSER=feedparser` every XML body goes to feedparser. `ParsedFeed.parser` says
which parser read the body (`lxml`, `feedparser` or `jsonfeed`).
"""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pipeline import encoding, fastparse, feedparser_linear, jsonfeed
from pipeline.config import Settings
from pipeline.containment import Scrubber, describe, failed_entry
from pipeline.entry_cap import cap_entries
from pipeline.records import ParsedFeed

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES: int = Settings.model_fields["max_entries_per_feed"].default  # FETCH_MAX_ENTRIES's
PARSERS = ("auto", "feedparser")
MAX_TTL_MINUTES = 366 * 24 * 60

# A body that opens like a feed but yields nothing is a broken feed, not some other document.
_FEED_ROOT = re.compile(rb"<(?:rss|feed|rdf:RDF|channel)\b", re.IGNORECASE)
# Keys feedparser adds as aliases of others; dropping them keeps the stored entry lean.
_ALIASES = {"guidislink", "title_detail", "summary_detail", "author_detail", "subtitle_detail"}


def to_json_safe(value: Any) -> Any:
    """feedparser values -> JSON: struct_time becomes ISO 8601 UTC, unknowns become text."""
    if isinstance(value, time.struct_time):
        try:
            return datetime(*value[:6], tzinfo=UTC).isoformat()
        except (ValueError, OverflowError):  # year 0, or out of range once in UTC: no date
            return None
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items() if k not in _ALIASES}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# A numeric character reference feedparser cannot turn into text (it raises on surrogates).
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,16})|([0-9]{1,20}));")


def _neutralize_char_refs(body: bytes) -> bytes:
    """`&#xD800;`, `&#0;` and references past U+10FFFF become `&#xFFFD;` (one linear pass)."""
    if b"&#" not in body:
        return body

    def replace(match: re.Match[bytes]) -> bytes:
        hexa, decimal = match.groups()
        code = int(hexa, 16) if hexa else int(decimal)
        if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            return b"&#xFFFD;"
        return match.group()

    return _CHAR_REF.sub(replace, body)


def parse_feed(body: bytes, url: str, content_type: str | None = None,
               max_entries: int = DEFAULT_MAX_ENTRIES, parser: str = "auto") -> ParsedFeed:
    """Parse one fetched body (RSS, Atom, RDF, or JSON Feed), keeping at most `max_entries`
    entries, with the fast path first when `parser` is "auto". An unreadable body is
    `is_feed=False`; an exception raised inside is the caller's to contain
    (`pipeline.shard_pass`)."""
    scrub = Scrubber()
    if jsonfeed.looks_like_json(body, content_type):
        return replace(jsonfeed.parse_json_feed(body, max_entries, scrub), parser="jsonfeed")
    repaired = encoding.repair_utf8(body, content_type)
    if repaired is not None:
        body = repaired[0]
    capped = cap_entries(body, max_entries)
    if parser == "auto" and repaired is None:  # a repaired body's encoding was doubtful
        # Not neutralized: lxml refuses every reference `_neutralize_char_refs` would change.
        fast = _fast(capped.body, url, content_type)
        if fast is not None and fast.entries:  # an empty feed's verdict is feedparser's bozo rule
            return _from_fast(fast, capped.over_cap, max_entries, repaired, scrub)
    return _with_feedparser(_neutralize_char_refs(capped.body), body, url, content_type,
                            capped.over_cap, max_entries, repaired, scrub)


def _fast(body: bytes, url: str, content_type: str | None) -> fastparse.FastFeed | None:
    """The fast path's reading, or None when the body is feedparser's (refused, or the fast
    path failed on it: then it is logged, and feedparser reads the body)."""
    try:
        return fastparse.parse(body, url, content_type)
    except fastparse.Unsupported:
        return None
    except Exception as exc:  # noqa: BLE001 - the fast path's own failure is feedparser's body
        log.warning("feed_url=%s fast parse path failed, body given to feedparser: %s",
                    url, describe(exc))
        return None


def _from_fast(fast: fastparse.FastFeed, over_cap: int, max_entries: int,
               repaired: tuple[bytes, str] | None, scrub: Scrubber) -> ParsedFeed:
    kept = fast.entries[:max_entries]
    feed_info = scrub.value(to_json_safe(fast.feed))
    return ParsedFeed(
        entries=tuple(_json_entry(_dates_as_text(entry), scrub, convert=False) for entry in kept),
        is_feed=True,
        bozo_reason=repaired[1] if repaired is not None else None,
        version=fast.version,
        language=feed_info.get("language") or None,
        link=feed_info.get("link") or None,
        title=feed_info.get("title") or None,
        ttl_minutes=_ttl(feed_info.get("ttl")),
        entries_over_cap=over_cap + len(fast.entries) - len(kept),
        nuls_removed=scrub.nuls_removed,
        parser="lxml",
    )


def _dates_as_text(entry: dict[str, Any]) -> dict[str, Any]:
    """A fast-path entry (plain dicts, lists and text) with its parsed dates as ISO 8601."""
    for field in ("published_parsed", "updated_parsed", "created_parsed"):
        if field in entry:
            entry[field] = to_json_safe(entry[field])
    return entry


def _with_feedparser(prepared: bytes, body: bytes, url: str, content_type: str | None,
                     over_cap: int, max_entries: int, repaired: tuple[bytes, str] | None,
                     scrub: Scrubber) -> ParsedFeed:
    import feedparser

    feedparser_linear.install()
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    result = feedparser.parse(
        io.BytesIO(prepared),  # never a path or a URL
        response_headers=headers,
        sanitize_html=False,  # pipeline.text sanitizes with nh3, once, on the chosen content
        resolve_relative_uris=True,
    )
    bozo_reason = scrub.text(str(result.get("bozo_exception"))) if result.get("bozo") else None
    if repaired is not None:
        bozo_reason = "; ".join(filter(None, [repaired[1], bozo_reason]))
    kept = result.entries[:max_entries]
    entries = tuple(_json_entry(entry, scrub) for entry in kept)
    over_cap = over_cap + len(result.entries) - len(kept)
    feed_info = scrub.value(to_json_safe(result.get("feed", {})))
    # An empty feed is a feed; a broken one that yields nothing is a parse error.
    is_feed = bool(entries) or (bool(result.get("version")) and not result.get("bozo"))
    broken = bool(result.get("version")) or _FEED_ROOT.search(body[:2048]) is not None
    return ParsedFeed(
        failure=None if is_feed else ("parse_error" if broken else "not_a_feed"),
        entries=entries,
        is_feed=is_feed,
        bozo_reason=bozo_reason,
        version=result.get("version") or None,
        language=feed_info.get("language") or None,
        link=feed_info.get("link") or None,
        title=feed_info.get("title") or None,
        ttl_minutes=_ttl(feed_info.get("ttl")),
        entries_over_cap=over_cap,
        nuls_removed=scrub.nuls_removed,
        parser="feedparser",
    )


def _json_entry(entry: Any, scrub: Scrubber, convert: bool = True) -> dict[str, Any]:
    """One feedparser entry as a JSON-safe dict; one that cannot be converted is kept as a
    failed entry with what could be read of it."""
    try:
        return scrub.document(to_json_safe(entry) if convert else entry)
    except Exception as exc:  # noqa: BLE001 - the boundary: any failure is this entry's data
        return failed_entry(exc, repr(entry)[:2000], scrub)


def _ttl(value: Any) -> int | None:
    """RSS `<ttl>` in minutes, within a year (a larger one means "rarely", not an overflow)."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        return None
    minutes = int(text)
    return min(minutes, MAX_TTL_MINUTES) if minutes > 0 else None
