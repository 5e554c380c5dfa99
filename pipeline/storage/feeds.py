"""The feed list and each feed's state: registration, which feeds are due, health.

Functions take an open cursor and run parameterized SQL; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from pipeline.records import FeedSource, FeedState
from pipeline.storage.transactions import PAGE, dict_rows


def upsert_feeds(cur: Cursor, sources: Sequence[FeedSource], source: str = "list") -> list[int]:
    """Register feeds; ids in list order. A URL that moved (301/308) maps to its feed.

    `source='cli'` (an explicit subscription) also re-subscribes a removed feed.
    """
    cur.execute(
        "SELECT old_url, feed_id FROM feed_url_history WHERE old_url = ANY(%s)",
        ([s.url for s in sources],),
    )
    ids = dict(cur.fetchall())
    # Registered feeds that this call changes nothing in are not written again (a feed list
    # of thousands is registered on every run): only new URLs, titles filling a gap, and
    # explicit (CLI) subscriptions go to the upsert.
    cur.execute("SELECT url, id, title IS NULL, source, removed_at IS NOT NULL FROM feeds WHERE url = ANY(%s)",
                ([s.url for s in sources if s.url not in ids],))
    titled = {s.url for s in sources if s.title}
    for url, feed_id, untitled, current, removed in cur.fetchall():
        unchanged = source != "cli" or (current == "cli" and not removed)
        if unchanged and not (untitled and url in titled):
            ids[url] = feed_id
    fresh = [s for s in sources if s.url not in ids]
    if fresh:
        # Existing rows locked in id order first, as every writer of many feed rows does,
        # so a run preparing while another records its fetches cannot deadlock with it.
        cur.execute("SELECT 1 FROM feeds WHERE url = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
                    ([s.url for s in fresh],))
        rows = execute_values(
            cur,
            """INSERT INTO feeds (url, title, source) VALUES %s
               ON CONFLICT (url) DO UPDATE SET
                   title = coalesce(feeds.title, EXCLUDED.title),
                   source = CASE WHEN EXCLUDED.source = 'cli' THEN 'cli' ELSE feeds.source END,
                   removed_at = CASE WHEN EXCLUDED.source = 'cli' THEN NULL ELSE feeds.removed_at END
               RETURNING url, id""",
            [(s.url, s.title, source) for s in fresh],
            page_size=PAGE,
            fetch=True,
        )
        ids.update(dict(rows))
    return [ids[s.url] for s in sources]


@dataclass(frozen=True)
class Candidate:
    """A subscribed feed a run may cover, with what ranking it needs."""

    id: int
    url: str
    enabled: bool
    last_fetched_at: datetime | None
    poll_interval_s: int | None


def plan_feeds(
    cur: Cursor, list_ids: Sequence[int], now: datetime, force: bool, hot_only: bool = False
) -> tuple[list[Candidate], int]:
    """The feeds a run may cover: subscribed (in the list, or added by CLI), not removed, and
    due (next check reached) unless `force`; with `hot_only`, only hot feeds. Disabled
    feeds are included, to be reported. Returns (candidates, number of feeds not due)."""
    cur.execute(
        # The list's ids through a hashed subplan: `id = ANY(<array>)` inside an OR is searched
        # linearly for every row (minutes at 180,000 feeds).
        """SELECT id, url, enabled, last_fetched_at, poll_interval_s,
                  %(force)s OR next_check_at IS NULL OR next_check_at <= %(now)s OR NOT enabled AS due
           FROM feeds
           WHERE removed_at IS NULL
             AND (id IN (SELECT unnest(%(ids)s::bigint[])) OR source = 'cli')
             AND (hot OR NOT %(hot_only)s)
           ORDER BY id""",
        {"ids": list(list_ids), "now": now, "force": force, "hot_only": hot_only},
    )
    included, not_due = [], 0
    for *row, due in cur.fetchall():
        if due:
            included.append(Candidate(*row))
        else:
            not_due += 1
    return included, not_due


def shard_feeds(cur: Cursor, run_id: str, shard: int) -> list[FeedState]:
    """The shard's feeds as the fetcher needs them. The error streak is the one before this
    run, so a retried shard backs off from the same streak as its first attempt. It is
    counted only where it can be other than 0: the feed's row says a streak, or this run
    fetched it already (the row's streak may then be this run's); a row's 0 is the count of
    the last fetch recorded, and only a newer one changes it."""
    cur.execute(
        """SELECT f.id, f.url, f.etag, f.last_modified, f.enabled, f.disabled_reason,
                  f.body_hash,
                  CASE WHEN f.enabled AND (f.consecutive_errors > 0 OR EXISTS (
                           SELECT 1 FROM fetch_log x WHERE x.run_id = r.run_id AND x.feed_id = f.id))
                       THEN feed_error_streak(f.id, r.run_id) ELSE 0 END
           FROM run_feeds r JOIN feeds f ON f.id = r.feed_id
           WHERE r.run_id = %s AND r.shard = %s ORDER BY f.id""",
        (run_id, shard),
    )
    return [FeedState(*row) for row in cur.fetchall()]


def feeds_needing_attention(cur: Cursor) -> list[dict[str, Any]]:
    """Every disabled or failing subscribed feed, whether or not this run fetched it."""
    cur.execute(
        """SELECT url, status, error_streak, last_success_at, next_check_at, reason
           FROM feed_health WHERE status IN ('disabled', 'failing')
           ORDER BY status, error_streak DESC, url"""
    )
    names = ("url", "status", "error_streak", "last_success_at", "next_check_at", "reason")
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in zip(names, row, strict=False)}
        for row in cur.fetchall()
    ]


def subscribed_feeds(cur: Cursor) -> list[FeedSource]:
    cur.execute("SELECT url, title FROM feeds WHERE removed_at IS NULL ORDER BY id")
    return [FeedSource(url, title) for url, title in cur.fetchall()]


def remove_feed(cur: Cursor, url: str, now: datetime) -> bool:
    """Unsubscribe (the feed's articles stay); False when it was not subscribed."""
    cur.execute("UPDATE feeds SET removed_at = %s WHERE url = %s AND removed_at IS NULL", (now, url))
    return cur.rowcount == 1


def feed_health(cur: Cursor) -> list[dict[str, Any]]:
    cur.execute("""SELECT url, source, status, error_streak, last_success_at, next_check_at, reason,
                          identity_rule, identity_rule_reason
                   FROM feed_health ORDER BY url""")
    return dict_rows(cur)
