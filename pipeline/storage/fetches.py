"""Fetch outcomes (`fetch_log`), the politeness they carry, and the body archive.

Functions take an open cursor and run parameterized SQL; the caller owns the transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json, execute_values

from pipeline.records import FetchOutcome, FetchResult
from pipeline.storage.transactions import PAGE


def prune_archive(cur: Cursor, now: datetime, retention_days: int) -> int:
    """Drop archived bodies not fetched within the retention period."""
    cur.execute("DELETE FROM raw_bodies WHERE last_fetched_at < %s",
                (now - timedelta(days=retention_days),))
    return cur.rowcount


# Politeness, recorded with each fetch's outcome (so it holds whatever fails later: parse,
# validate, load or a crash) when the fetch is the feed's newest: the error and its
# streak (derived from fetch_log: a retried shard counts once), the next check of a
# failed fetch (Retry-After, backoff), 410 Gone disabling the feed. A successful fetch's
# next check, its validators and body hash wait for the load, with the entries.
_RECORD_POLITENESS = """
UPDATE feeds f
SET last_fetched_at = l.fetched_at, last_status = l.status,
    last_error_kind = CASE WHEN l.outcome = 'error' THEN l.error_kind END,
    last_error = CASE WHEN l.outcome = 'error' THEN l.error END,
    consecutive_errors = feed_error_streak(f.id),
    next_check_at = CASE WHEN l.outcome = 'error' THEN coalesce(l.next_check_at, f.next_check_at)
                         ELSE f.next_check_at END,
    enabled = CASE WHEN l.error_kind = 'gone' THEN false ELSE f.enabled END,
    disabled_reason = CASE WHEN l.error_kind = 'gone'
                           THEN 'HTTP 410 Gone on ' || to_char(l.fetched_at, 'YYYY-MM-DD')
                           ELSE f.disabled_reason END,
    updated_at = greatest(f.updated_at, l.fetched_at)
FROM fetch_log l
WHERE l.run_id = %(run)s AND l.feed_id = ANY(%(feeds)s) AND f.id = l.feed_id
  AND l.outcome <> 'disabled' AND l.fetched_at >= coalesce(f.last_fetched_at, '-infinity')
"""


def record_fetches(cur: Cursor, run_id: str, results: Iterable[FetchResult]) -> None:
    """Write each fetch's outcome to fetch_log with the feeds' politeness state, and archive
    the bodies (idempotent per run: a retried shard replaces its rows). Entries are staged
    apart (`stage_batches`): until then the fetch is not `staged`, and the run not loadable."""
    results = list(results)
    if not results:
        return
    execute_values(
        cur,
        """INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome, status, error_kind,
                                  error, duration_ms, bytes, final_url, etag, last_modified,
                                  body_hash, headers, unchanged, permanent_redirect, next_check_at)
           VALUES %s
           ON CONFLICT (run_id, feed_id) DO UPDATE SET
               fetched_at = EXCLUDED.fetched_at, outcome = EXCLUDED.outcome,
               status = EXCLUDED.status, error_kind = EXCLUDED.error_kind,
               error = EXCLUDED.error, duration_ms = EXCLUDED.duration_ms,
               bytes = EXCLUDED.bytes, final_url = EXCLUDED.final_url, entries = 0, staged = false,
               etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified,
               body_hash = EXCLUDED.body_hash, headers = EXCLUDED.headers,
               unchanged = EXCLUDED.unchanged, permanent_redirect = EXCLUDED.permanent_redirect,
               next_check_at = EXCLUDED.next_check_at, entries_dropped = 0""",
        [
            (run_id, r.feed_id, r.url, r.fetched_at, r.outcome.value, r.status, r.error_kind,
             r.error, r.duration_ms, len(r.body or b""), r.final_url, r.etag, r.last_modified,
             r.body_hash, Json(r.headers) if r.headers else None, r.unchanged,
             r.permanent_redirect, r.next_check_at)
            for r in results
        ],
        page_size=PAGE,
    )
    feed_ids = sorted(r.feed_id for r in results)
    cur.execute("SELECT 1 FROM feeds WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", (feed_ids,))
    cur.execute(_RECORD_POLITENESS, {"run": run_id, "feeds": feed_ids})
    archive_bodies(cur, results)


def archive_bodies(cur: Cursor, results: Sequence[FetchResult]) -> None:
    """Keep every fetched body, compressed, once per content hash; a body still served
    (unchanged, or answered by 304) has its retention clock reset."""
    still_served = [r.feed_id for r in results if r.outcome is FetchOutcome.NOT_MODIFIED]
    if still_served:  # rows locked in hash order: runs fetching the same bodies at once
        cur.execute(
            """UPDATE raw_bodies SET last_fetched_at = %s WHERE body_hash IN (
                   SELECT r.body_hash FROM raw_bodies r JOIN feeds f ON r.body_hash = f.body_hash
                   WHERE f.id = ANY(%s) ORDER BY r.body_hash FOR NO KEY UPDATE OF r)""",
            (results[0].fetched_at, still_served),
        )
    fetched = {r.body_hash: (r, r.body) for r in sorted(results, key=lambda r: r.body_hash or "")
               if r.body_hash and r.body is not None}
    if not fetched:
        return
    execute_values(
        cur,
        """INSERT INTO raw_bodies (body_hash, body, size, content_type, first_fetched_at,
                                   last_fetched_at) VALUES %s
           ON CONFLICT (body_hash) DO UPDATE SET last_fetched_at = EXCLUDED.last_fetched_at""",
        [
            (h, zlib.compress(body, 6), len(body), r.content_type, r.fetched_at, r.fetched_at)
            for h, (r, body) in fetched.items() if body is not None
        ],
        page_size=50,
    )


def archived_fetches(cur: Cursor, since: datetime) -> list[tuple[int, str, str, datetime]]:
    """(feed_id, feed url, body_hash, first fetched_at) of each distinct archived body fetched
    since `since`, oldest first; bodies pruned from the archive are skipped."""
    cur.execute(
        """SELECT l.feed_id, f.url, l.body_hash, min(l.fetched_at) AS fetched_at
           FROM fetch_log l
           JOIN raw_bodies r ON r.body_hash = l.body_hash
           JOIN feeds f ON f.id = l.feed_id
           WHERE l.fetched_at >= %s AND l.body_hash IS NOT NULL AND NOT l.unchanged
           GROUP BY l.feed_id, f.url, l.body_hash
           ORDER BY fetched_at, l.feed_id""",
        (since,),
    )
    return list(cur.fetchall())


def record_archived(cur: Cursor, run_id: str, items: Sequence[tuple[int, str, str, datetime]]
                    ) -> list[tuple[int, str, bytes, str | None, datetime]]:
    """Record archived bodies as a replay run's fetches; return them (feed_id, url, body,
    content type, fetched_at) for the run's pass."""
    cur.execute(
        "SELECT body_hash, body, content_type FROM raw_bodies WHERE body_hash = ANY(%s)",
        (list({h for _, _, h, _ in items}),),
    )
    bodies = {h: (zlib.decompress(bytes(body)), ctype) for h, body, ctype in cur.fetchall()}
    execute_values(
        cur,
        """INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome, status, bytes, body_hash)
           VALUES %s ON CONFLICT (run_id, feed_id) DO NOTHING""",
        [(run_id, fid, url, at, "ok", 200, len(bodies[h][0]), h) for fid, url, h, at in items],
        page_size=PAGE,
    )
    return [(fid, url, bodies[h][0], bodies[h][1], at) for fid, url, h, at in items]


def possible_gaps(cur: Cursor, run_id: str) -> list[str]:
    """URLs of the run's fetches that shared no entry with what their feed had stored."""
    cur.execute("SELECT url FROM fetch_log WHERE run_id = %s AND possible_gap ORDER BY url", (run_id,))
    return [url for (url,) in cur.fetchall()]
