"""Normalize stage: one parsed entry -> one typed `Article`. Pure: time is passed in.

Chooses the entry's link (FeedBurner's origLink first), canonicalizes it,
turns title and body into plain text, keeps sanitized HTML apart, picks the
published time by the date policy (`pipeline.dates`), and computes the identity
key (under the default `guid` rule: the dedup stage applies each feed's rule)
and the content hash.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pipeline import dates, neardup
from pipeline.identity import content_hash, identity_key
from pipeline.records import Article, ParsedEntry
from pipeline.language import article_language
from pipeline.text import clean_text, html_to_text, sanitize_html, word_count
from pipeline.urls import canonical_url


def _entry_link(raw: dict[str, Any]) -> str | None:
    for key in ("feedburner_origlink", "link"):
        if raw.get(key):
            return str(raw[key])
    for link in raw.get("links") or ():
        if link.get("href") and link.get("rel", "alternate") == "alternate":
            return str(link["href"])
    return None


def _body_html(raw: dict[str, Any]) -> str:
    """The fullest body the entry carries: the longest `content`, else the summary."""
    contents = [c.get("value") or "" for c in raw.get("content") or () if isinstance(c, dict)]
    best = max(contents, key=len, default="")
    summary = raw.get("summary") or ""
    return best if len(best) >= len(summary) else summary


def _names(items: Any, key: str) -> tuple[str, ...]:
    names: list[str] = []
    for item in items or ():
        name = clean_text(str(item.get(key) or "")) if isinstance(item, dict) else ""
        if name and name not in names:
            names.append(name)
    return tuple(names)


def _signature(title: str, text: str) -> str | None:
    sig = neardup.signature(title, text)
    return sig.hex() if sig is not None else None


def normalize_entry(entry: ParsedEntry,
                    future_tolerance: timedelta = dates.DEFAULT_FUTURE_TOLERANCE) -> Article:
    raw = entry.raw
    guid = clean_text(str(raw.get("id") or "")) or None
    url = canonical_url(_entry_link(raw), base=entry.feed_link)
    title = html_to_text(raw.get("title"))
    body = _body_html(raw)
    text = html_to_text(body)
    published = dates.published_date(raw, entry.fetched_at, future_tolerance)
    authors = _names(raw.get("authors"), "name") or (
        (clean_text(raw["author"]),) if raw.get("author") else ()
    )
    digest = content_hash(title, text, url)
    language, language_source = article_language(
        raw.get("language"), entry.feed_language, f"{title}\n{text}")
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
