"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org), which feedparser 6 cannot read.

Each item becomes a dict shaped like a feedparser entry (`id`, `link`, `title`,
`content`, `summary`, `*_parsed` dates as ISO 8601 UTC, `authors`, `tags`), so the
normalize stage treats every format alike. Pure: bytes in, records out.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Any

from pipeline.records import ParsedFeed


def looks_like_json(body: bytes, content_type: str | None) -> bool:
    ctype = (content_type or "").split(";")[0].strip().lower()
    return ctype.endswith("json") or body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def _date(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).isoformat()


def _authors(item: dict[str, Any], feed: dict[str, Any]) -> list[dict[str, str]]:
    found = _list(item.get("authors")) or ([item["author"]] if isinstance(item.get("author"), dict) else [])
    if not found:
        found = _list(feed.get("authors")) or ([feed["author"]] if isinstance(feed.get("author"), dict) else [])
    return [{"name": _text(a["name"])} for a in found if isinstance(a, dict) and _text(a.get("name"))]


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


def parse_json_feed(body: bytes) -> ParsedFeed:
    """Parse a JSON Feed. Never raises: anything that is not one is `is_feed=False`."""
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return ParsedFeed(entries=(), is_feed=False, bozo_reason=f"invalid JSON: {exc}",
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
    return ParsedFeed(
        entries=tuple(_entry(item, document) for item in items),
        is_feed=True,
        bozo_reason=reason,
        version="json" + version.rsplit("/", 1)[-1].replace(".", ""),
        language=_text(document.get("language")),
        link=_text(document.get("home_page_url")) or _text(document.get("feed_url")),
        title=_text(document.get("title")),
    )
