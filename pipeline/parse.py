"""Parse stage: feed bytes -> entries, through feedparser, with no network I/O.

feedparser is kept behind this adapter: it is always handed bytes (a string
could make it fetch a URL), and its output (dicts with aliased keys and
`time.struct_time` values) is turned into JSON-safe dicts at once. A
malformed ("bozo") feed keeps every entry that parsed. A body meant as UTF-8 with
stray windows-1252 bytes, or undeclared and in a legacy encoding, is turned into
UTF-8 first (`pipeline.encoding`).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

from pipeline import encoding, jsonfeed
from pipeline.records import ParsedFeed

# A body that opens like a feed but yields nothing is a broken feed, not some other document.
_FEED_ROOT = re.compile(rb"<(?:rss|feed|rdf:RDF|channel)\b", re.IGNORECASE)
# Keys feedparser adds as aliases of others; dropping them keeps the stored entry lean.
_ALIASES = {"guidislink", "title_detail", "summary_detail", "author_detail", "subtitle_detail"}


def to_json_safe(value: Any) -> Any:
    """feedparser values -> JSON: struct_time becomes ISO 8601 UTC, unknowns become text."""
    if isinstance(value, time.struct_time):
        return datetime(*value[:6], tzinfo=timezone.utc).isoformat()
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items() if k not in _ALIASES}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def parse_feed(body: bytes, url: str, content_type: str | None = None) -> ParsedFeed:
    """Parse one fetched body (RSS, Atom, RDF, or JSON Feed). Never raises: an unreadable
    body is `is_feed=False`."""
    if jsonfeed.looks_like_json(body, content_type):
        return jsonfeed.parse_json_feed(body)
    import feedparser

    repaired = encoding.repair_utf8(body, content_type)
    if repaired is not None:
        body = repaired[0]
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    result = feedparser.parse(
        body,
        response_headers=headers,
        sanitize_html=False,  # pipeline.text sanitizes with nh3, once, on the chosen content
        resolve_relative_uris=True,
    )
    bozo_reason = str(result.get("bozo_exception")) if result.get("bozo") else None
    if repaired is not None:
        bozo_reason = "; ".join(filter(None, [repaired[1], bozo_reason]))
    entries = tuple(to_json_safe(entry) for entry in result.entries)
    feed_info = result.get("feed", {})
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
    )


def _ttl(value: Any) -> int | None:
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes if minutes > 0 else None
