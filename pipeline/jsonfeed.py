"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org), which feedparser 6 cannot read.

Each item becomes a dict shaped like a feedparser entry (`id`, `link`, `title`,
`content`, `summary`, `*_parsed` dates as ISO 8601 UTC, `authors`, `tags`), so the
normalize stage treats every format alike. Pure: bytes in, records out.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from pipeline.containment import Scrubber, describe, failed_entry
from pipeline.records import ParsedFeed


def looks_like_json(body: bytes, content_type: str | None) -> bool:
    ctype = (content_type or "").split(";")[0].strip().lower()
    return ctype.endswith("json") or body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def _date(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).isoformat()
    except (ValueError, OverflowError):  # not ISO 8601, or out of range once in UTC (year 1)
        return None


def _authors(item: dict[str, Any], feed: dict[str, Any]) -> list[dict[str, str]]:
    found = _list(item.get("authors")) or ([item["author"]] if isinstance(item.get("author"), dict) else [])
    if not found:
        found = _list(feed.get("authors")) or ([feed["author"]] if isinstance(feed.get("author"), dict) else [])
    return [{"name": name} for a in found if isinstance(a, dict) and (name := _text(a.get("name")))]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    """Broken feeds put numbers, lists or objects where the spec says string: keep strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _entry(item: dict[str, Any], feed: dict[str, Any]) -> dict[str, Any]:
    content = _text(item.get("content_html"))
    if not content and _text(item.get("content_text")):
        content = "<p>" + html.escape(_text(item["content_text"]) or "").replace("\n\n", "</p><p>") + "</p>"
    identity = _text(item.get("id", item.get("guid")))  # feed2json-style feeds carry `guid`
    entry: dict[str, Any] = {
        "id": identity or None,
        "link": _text(item.get("url")) or _text(item.get("external_url")),
        "title": _text(item.get("title")) or "",
        "summary": _text(item.get("summary")) or "",
        "content": [{"value": content, "type": "text/html"}] if content else [],
        "published": _text(item.get("date_published")),  # as written, kept with the article
        "published_parsed": _date(item.get("date_published")),
        "updated": _text(item.get("date_modified")),
        "updated_parsed": _date(item.get("date_modified")),
        "authors": _authors(item, feed),
        "tags": [{"term": _text(t)} for t in _list(item.get("tags")) if _text(t)],
        "language": _text(item.get("language")),
    }
    return {k: v for k, v in entry.items() if v not in (None, [], "")}


# json.loads builds every object before the entry cap can drop one: a 10 MB body of `{}`
# would be 3 million dicts (about 300 MB). A real feed of 500 entries holds a few thousand
# objects and arrays (braces in its text count too, so this is an upper bound): a body
# with more is refused whole, as its feed's parse error, before anything is built.
MAX_CONTAINERS = 200_000


def _number(text: str) -> int | str:
    """JSON integers as int, except absurd ones (past Python's 4,300-digit limit): kept as text."""
    return int(text) if len(text) <= 100 else text


def parse_json_feed(body: bytes, max_entries: int, scrub: Scrubber | None = None) -> ParsedFeed:
    """Parse a JSON Feed, keeping at most `max_entries` items. Anything that is not one is
    `is_feed=False`; an item that cannot be read is kept as a failed entry (quarantined
    by the normalize stage) and the others go on."""
    scrub = scrub or Scrubber()
    containers = body.count(b"{") + body.count(b"[")
    if containers > MAX_CONTAINERS:
        return ParsedFeed(entries=(), is_feed=False, failure="parse_error", bozo_reason=(
            f"{containers} JSON objects and arrays: more than a feed of {max_entries} entries "
            f"holds (at most {MAX_CONTAINERS} are read)"))
    try:
        document = json.loads(body.decode("utf-8-sig"), parse_int=_number, parse_constant=str)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        return ParsedFeed(entries=(), is_feed=False, bozo_reason=f"invalid JSON: {describe(exc)}",
                          failure="parse_error")
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        return ParsedFeed(entries=(), is_feed=False, bozo_reason="JSON without an items list",
                          failure="not_a_feed")
    version = str(document.get("version") or "")
    if "jsonfeed.org/version/" not in version:
        reason = f"not a JSON Feed version: {version or 'missing'}"
        if not version:
            return ParsedFeed(entries=(), is_feed=False, bozo_reason=reason, failure="not_a_feed")
    else:
        reason = None
    items = [i for i in document["items"] if isinstance(i, dict)]
    kept = items[:max_entries]
    return ParsedFeed(
        entries=tuple(_safe_entry(item, document, scrub) for item in kept),
        is_feed=True,
        bozo_reason=reason,
        version="json" + version.rsplit("/", 1)[-1].replace(".", ""),
        language=scrub.value(_text(document.get("language"))),
        link=scrub.value(_text(document.get("home_page_url")) or _text(document.get("feed_url"))),
        title=scrub.value(_text(document.get("title"))),
        entries_over_cap=len(items) - len(kept),
        nuls_removed=scrub.nuls_removed,
    )


def _safe_entry(item: dict[str, Any], feed: dict[str, Any], scrub: Scrubber) -> dict[str, Any]:
    try:
        return scrub.value(_entry(item, feed))
    except Exception as exc:  # noqa: BLE001 - the boundary: this item's failure is its data
        original: Any
        try:
            original = json.loads(json.dumps(item, default=str))
        except (ValueError, RecursionError):
            original = repr(item)[:2000]
        return failed_entry(exc, original, scrub)
