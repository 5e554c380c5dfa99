"""Read a feed list: OPML (any flavour listparser reads) or plain URLs, one per line.

Blank lines and lines starting with `#` are ignored in plain lists. URLs are
de-duplicated, first occurrence wins. Reading never touches the network.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import FeedListError
from pipeline.records import FeedSource
from pipeline.urls import MAX_SHOWN_URL, feed_url_problem

log = logging.getLogger(__name__)


def parse_feed_list(text: str) -> list[FeedSource]:
    """Feeds named by an OPML document or a plain list, in order, without repeats."""
    stripped = text.lstrip("\ufeff \t\r\n")
    sources = _parse_opml(stripped) if stripped.startswith("<") else _parse_plain(stripped)
    seen: set[str] = set()
    unique = []
    for source in sources:
        if source.url not in seen:
            seen.add(source.url)
            unique.append(source)
    return unique


def read_feed_list(path: Path) -> list[FeedSource]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedListError(f"cannot read feed list {path}: {exc}") from exc
    sources = parse_feed_list(text)
    if not sources:
        raise FeedListError(f"feed list {path} names no feeds")
    return sources


def to_opml(sources: Sequence[FeedSource], title: str = "news-pipeline feeds") -> str:
    """An OPML 2.0 document listing `sources`."""
    root = ET.Element("opml", version="2.0")
    ET.SubElement(ET.SubElement(root, "head"), "title").text = title
    body = ET.SubElement(root, "body")
    for source in sources:
        ET.SubElement(body, "outline", type="rss", text=source.title or source.url,
                      title=source.title or source.url, xmlUrl=source.url)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _parse_plain(text: str) -> list[FeedSource]:
    sources = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if (problem := feed_url_problem(line)) is not None:
            raise FeedListError(f"line {number}: not a feed URL: {line[:MAX_SHOWN_URL]!r} {problem}")
        sources.append(FeedSource(url=line))
    return sources


def _parse_opml(text: str) -> list[FeedSource]:
    import listparser

    result = listparser.parse(text.encode("utf-8"))  # bytes: a document, never a URL to fetch
    if result.bozo and not result.feeds:
        raise FeedListError(f"not a readable OPML document: {result.bozo_exception}")
    sources = []
    for feed in result.feeds:
        if (problem := feed_url_problem(feed.url)) is not None:  # the rest of the list still counts
            log.warning("OPML outline left out: %r %s", feed.url[:MAX_SHOWN_URL], problem)
            continue
        sources.append(FeedSource(url=feed.url, title=feed.title or None))
    return sources
