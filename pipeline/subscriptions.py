"""Managing the feed list in the database: import, export, add (with discovery), remove, list.

Feeds named by the feed list file (`FEEDS_FILE`) are registered on every run; feeds
added here are fetched too (source `cli`) until removed. Removing keeps the feed's
articles; its row is marked removed and no longer fetched.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline import storage
from pipeline.config import Settings
from pipeline.database import connect
from pipeline.discover import alternate_feeds
from pipeline.errors import FeedListError
from pipeline.feedlist import read_feed_list, to_opml
from pipeline.fetch import Fetcher
from pipeline.parse import parse_feed
from pipeline.records import FeedSource, FeedState, FetchOutcome
from pipeline.urls import MAX_SHOWN_URL, feed_url_problem


def import_feeds(db_url: str, path: Path) -> int:
    sources = read_feed_list(path)
    with connect(db_url) as conn, conn.cursor() as cur:
        storage.upsert_feeds(cur, sources, source="cli")
    return len(sources)


def export_feeds(db_url: str) -> str:
    with connect(db_url) as conn, conn.cursor() as cur:
        return to_opml(storage.subscribed_feeds(cur))


def _feed_at(fetcher: Fetcher, url: str, now: datetime) -> tuple[str | None, bytes | None, str]:
    """(feed URL if `url` serves a feed, the body, what happened)."""
    result = fetcher.fetch(FeedState(0, url), now)
    if result.outcome is not FetchOutcome.OK or result.body is None:
        return None, None, f"{result.error_kind}: {result.error}"
    final = result.permanent_redirect or url
    parsed = parse_feed(result.body, result.final_url or url, result.content_type)
    if parsed.is_feed:
        return final, result.body, "feed"
    return None, result.body, "not a feed"


def add_feed(db_url: str, settings: Settings, url: str, now: datetime) -> tuple[str, str]:
    """Subscribe to `url`, or to the first feed a web page at `url` announces.
    Returns (the feed URL subscribed, how it was found)."""
    with Fetcher(settings) as fetcher:
        feed_url, body, what = _feed_at(fetcher, url, now)
        how = "the URL is a feed"
        if feed_url is None:
            if body is None:
                raise FeedListError(f"cannot fetch {url}: {what}")
            candidates = alternate_feeds(body.decode("utf-8", "replace"), url)
            for candidate in candidates:
                feed_url, _, _ = _feed_at(fetcher, candidate, now)
                if feed_url is not None:
                    how = f'found through <link rel="alternate"> on {url}'
                    break
            else:
                raise FeedListError(f"{url} is not a feed and announces no working feed "
                                    f"(candidates: {candidates or 'none'})")
    if (problem := feed_url_problem(feed_url)) is not None:
        raise FeedListError(f"{url}: its feed's URL {problem}: {feed_url[:MAX_SHOWN_URL]}")
    with connect(db_url) as conn, conn.cursor() as cur:
        storage.upsert_feeds(cur, [FeedSource(feed_url)], source="cli")
    return feed_url, how


def remove_feed(db_url: str, url: str, now: datetime) -> bool:
    with connect(db_url) as conn, conn.cursor() as cur:
        return storage.remove_feed(cur, url, now)


def list_feeds(db_url: str) -> list[dict[str, Any]]:
    with connect(db_url) as conn, conn.cursor() as cur:
        return storage.feed_health(cur)
