"""Normalize stage: one parsed entry -> one typed `Article`. Pure: time is passed in.

Chooses the entry's link (FeedBurner's origLink first), canonicalizes it,
turns title and body into plain text, keeps sanitized HTML apart, picks the
published time by the date policy (`pipeline.dates`), and computes the identity
key (under the default `guid` rule: the dedup stage applies each feed's rule)
and the content hash.

Never raises on a JSON-shaped entry: a field of the wrong type (a title that is a
list, `links` that is a string, tags that are not objects) counts as absent, a
number as its text. Every step is linear or reads a bounded prefix (`pipeline.text`);
the bounds here are far above real entries and at or above what validation accepts.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import islice
from typing import Any

from pipeline import dates, neardup
from pipeline.identity import content_hash, identity_key
from pipeline.language import DETECT_CHARS, article_language
from pipeline.records import Article, ParsedEntry
from pipeline.text import clean_text, html_to_text, sanitize_html, word_count
from pipeline.urls import canonical_url

MAX_TITLE_CHARS = 1 << 14  # title markup read (validation rejects titles over 1,000 characters)
MAX_ID_CHARS = 1 << 14  # GUID read (validation rejects identity keys over 2,000 bytes)
MAX_NAMES = 100  # authors, and tags, kept (real entries: at most 34)
MAX_NAME_CHARS = 1_000  # of each name read
MAX_ITEMS = 1_000  # list items (links, contents, authors, tags) looked at


def _text(value: Any) -> str:
    """A string as is, a number as its text, anything else (list, object, null) as ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def _items(value: Any) -> list[Any]:
    return list(value[:MAX_ITEMS]) if isinstance(value, (list, tuple)) else []


def _entry_link(raw: dict[str, Any]) -> str | None:
    for key in ("feedburner_origlink", "link"):
        if _text(raw.get(key)):
            return _text(raw[key])
    for link in _items(raw.get("links")):
        if not isinstance(link, dict) or link.get("rel", "alternate") != "alternate":
            continue
        if _text(link.get("href")):
            return _text(link["href"])
    return None


def _body_html(raw: dict[str, Any]) -> str:
    """The fullest body the entry carries: the longest `content`, else the summary."""
    contents = [_text(c.get("value")) for c in _items(raw.get("content")) if isinstance(c, dict)]
    best = max(contents, key=len, default="")
    summary = _text(raw.get("summary"))
    return best if len(best) >= len(summary) else summary


def _names(items: Any, key: str) -> tuple[str, ...]:
    """Distinct names, in order, of objects (their `key`) or plain strings."""
    names: dict[str, None] = {}
    for item in _items(items):
        name = _text(item.get(key) if isinstance(item, dict) else item)
        name = clean_text(name[:MAX_NAME_CHARS])
        if name:
            names.setdefault(name)
    return tuple(islice(names, MAX_NAMES))


def _signature(title: str, text: str) -> str | None:
    sig = neardup.signature(title, text)
    return sig.hex() if sig is not None else None


def normalize_entry(entry: ParsedEntry,
                    future_tolerance: timedelta = dates.DEFAULT_FUTURE_TOLERANCE) -> Article:
    raw = entry.raw if isinstance(entry.raw, dict) else {}
    guid = clean_text(_text(raw.get("id"))[:MAX_ID_CHARS]) or None
    url = canonical_url(_entry_link(raw), base=entry.feed_link)
    title = html_to_text(_text(raw.get("title"))[:MAX_TITLE_CHARS])
    body = _body_html(raw)
    text = html_to_text(body)
    published = dates.published_date(raw, entry.fetched_at, future_tolerance)
    authors = _names(raw.get("authors"), "name") or _names([raw.get("author")], "name")
    digest = content_hash(title, text, url)
    # detection reads at most DETECT_CHARS: the same prefix, without copying the whole text
    language, language_source = article_language(
        raw.get("language"), entry.feed_language, f"{title}\n{text[:DETECT_CHARS]}")
    return Article(
        feed_id=entry.feed_id,
        seq=entry.seq,
        identity_key=identity_key(guid, url, digest),
        guid=guid,
        canonical_url=url,
        title=title,
        text=text,
        html=sanitize_html(body),
        published_at=published.at,
        published_source=published.source,
        published_raw=published.raw,
        date_issue=published.issue,
        content_hash=digest,
        language=language,
        language_source=language_source,
        word_count=word_count(text),
        signature=_signature(title, text),
        authors=authors,
        tags=_names(raw.get("tags"), "term"),
        link=url,
        feed_link=entry.feed_link,
    )
