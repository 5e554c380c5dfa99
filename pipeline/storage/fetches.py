"""Fetch outcomes (`fetch_log`), the politeness they carry, and the body archive.

Functions take an open cursor and run parameterized SQL; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json, execute_values

from pipeline import body_codec
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
    consecutive_errors = CASE WHEN l.outcome IN ('ok', 'not_modified') THEN 0  -- the newest (below)
                              ELSE feed_error_streak(f.id) END,
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


_FETCH_COLUMNS = """run_id, feed_id, url, fetched_at, outcome, status, error_kind, error, duration_ms,
                    bytes, final_url, etag, last_modified, body_hash, headers, unchanged,
                    permanent_redirect, next_check_at"""

# fetch_log is partitioned by fetched_at (migration 017), so (run_id, feed_id) is no unique
# key to upsert on: a retried shard's fetch updates the run's row of the feed in place (to
# another month's partition if its month changed; what the load wrote stays, as the upsert
# left it), and the other fetches are inserted. The run's run_feeds rows of the feeds,
# locked first (nothing else locks them, so no new lock order with the load's), serialize
# writers of the same run and feed: a retried shard and the attempt it replaces.
_REFETCHED = f"""
UPDATE fetch_log l SET
    fetched_at = v.fetched_at, outcome = v.outcome, status = v.status, error_kind = v.error_kind,
    error = v.error, duration_ms = v.duration_ms, bytes = v.bytes, final_url = v.final_url,
    entries = 0, staged = false, etag = v.etag, last_modified = v.last_modified,
    body_hash = v.body_hash, headers = v.headers, unchanged = v.unchanged,
    permanent_redirect = v.permanent_redirect, next_check_at = v.next_check_at, entries_dropped = 0
FROM (VALUES %s) AS v({_FETCH_COLUMNS})
WHERE l.run_id = v.run_id AND l.feed_id = v.feed_id
"""

_FETCH_TEMPLATE = ("(%s, %s::bigint, %s, %s::timestamptz, %s, %s::int, %s, %s, %s::int, %s::int, %s, %s, %s,"
                   " %s, %s::jsonb, %s::boolean, %s, %s::timestamptz)")


def record_fetches(cur: Cursor, run_id: str, results: Iterable[FetchResult]) -> None:
    """Write each fetch's outcome to fetch_log with the feeds' politeness state, and archive
    the bodies (idempotent per run: a retried shard replaces its rows). Entries are staged
    apart (`stage_batches`): a fetch not `staged` when the run loads is its feed's error in
    the run (pipeline.load, `_UNSTAGED_AS_ERRORS`)."""
    results = list(results)
    if not results:
        return
    feed_ids = sorted(r.feed_id for r in results)
    cur.execute("""SELECT 1 FROM run_feeds WHERE run_id = %s AND feed_id = ANY(%s)
                   ORDER BY feed_id FOR NO KEY UPDATE""", (run_id, feed_ids))
    cur.execute("SELECT feed_id FROM fetch_log WHERE run_id = %s AND feed_id = ANY(%s)", (run_id, feed_ids))
    recorded = {feed_id for (feed_id,) in cur.fetchall()}
    rows = [
        (run_id, r.feed_id, r.url, r.fetched_at, r.outcome.value, r.status, r.error_kind,
         r.error, r.duration_ms, len(r.body or b""), r.final_url, r.etag, r.last_modified,
         r.body_hash, Json(r.headers) if r.headers else None, r.unchanged,
         r.permanent_redirect, r.next_check_at)
        for r in results
    ]
    if recorded:  # a retried shard: what its earlier attempt staged goes with the old outcome
        cur.execute("DELETE FROM staged_entries WHERE run_id = %s AND feed_id = ANY(%s)",
                    (run_id, sorted(recorded)))
        execute_values(cur, _REFETCHED, [row for row in rows if row[1] in recorded],
                       template=_FETCH_TEMPLATE, page_size=PAGE)
    if len(recorded) < len(rows):
        execute_values(cur, f"INSERT INTO fetch_log ({_FETCH_COLUMNS}) VALUES %s",
                       [row for row in rows if row[1] not in recorded], page_size=PAGE)
    cur.execute("SELECT 1 FROM feeds WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", (feed_ids,))
    cur.execute(_RECORD_POLITENESS, {"run": run_id, "feeds": feed_ids})
    archive_bodies(cur, results)


def archive_bodies(cur: Cursor, results: Sequence[FetchResult]) -> None:
    """Keep every fetched body, compressed (pipeline.body_codec), once per content hash; a
    body still served (unchanged, or answered by 304) has its retention clock reset."""
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
            (h, body_codec.compress(body), len(body), r.content_type, r.fetched_at, r.fetched_at)
            for h, (r, body) in fetched.items() if body is not None
        ],
        page_size=50,
    )


def archived_fetches(cur: Cursor, since: datetime, until: datetime | None = None
                     ) -> list[tuple[int, str, str, datetime]]:
    """(feed_id, feed url, body_hash, first fetched_at) of each distinct archived body fetched
    since `since` (and before `until`), oldest first, by real fetches (not replays); bodies
    pruned from the archive are skipped."""
    cur.execute(
        """SELECT l.feed_id, f.url, l.body_hash, min(l.fetched_at) AS fetched_at
           FROM fetch_log l
           JOIN ingest_runs i ON i.run_id = l.run_id AND i.kind = 'fetch'
           JOIN raw_bodies r ON r.body_hash = l.body_hash
           JOIN feeds f ON f.id = l.feed_id
           WHERE l.fetched_at >= %s AND l.fetched_at < coalesce(%s::timestamptz, 'infinity')
             AND l.body_hash IS NOT NULL AND NOT l.unchanged
           GROUP BY l.feed_id, f.url, l.body_hash
           ORDER BY fetched_at, l.feed_id""",
        (since, until),
    )
    return list(cur.fetchall())


def latest_archived(items: Sequence[tuple[int, str, str, datetime]]) -> list[tuple[int, str, str, datetime]]:
    """Each feed's latest body of `items` (oldest first, as `archived_fetches` gives them)."""
    latest = {item[0]: item for item in items}
    return sorted(latest.values(), key=lambda item: (item[3], item[0]))


def shard_archived_bodies(cur: Cursor, run_id: str, shard: int
                          ) -> list[tuple[int, str, bytes, str | None, datetime]]:
    """A replay run's shard: its recorded archived bodies (feed_id, url, body, content type,
    fetched_at), read back from the archive."""
    cur.execute(
        """SELECT l.feed_id, l.url, r.body, r.content_type, l.fetched_at
           FROM run_feeds rf
           JOIN fetch_log l ON l.run_id = rf.run_id AND l.feed_id = rf.feed_id
           JOIN raw_bodies r ON r.body_hash = l.body_hash
           WHERE rf.run_id = %s AND rf.shard = %s ORDER BY l.feed_id""",
        (run_id, shard),
    )
    return [(fid, url, body_codec.decompress(body), ctype, at) for fid, url, body, ctype, at in cur.fetchall()]


def record_archived(cur: Cursor, run_id: str, items: Sequence[tuple[int, str, str, datetime]]
                    ) -> list[tuple[int, str, bytes, str | None, datetime]]:
    """Record archived bodies as a replay run's fetches; return them (feed_id, url, body,
    content type, fetched_at) for the run's pass."""
    cur.execute(
        "SELECT body_hash, body, content_type FROM raw_bodies WHERE body_hash = ANY(%s)",
        (list({h for _, _, h, _ in items}),),
    )
    bodies = {h: (body_codec.decompress(body), ctype) for h, body, ctype in cur.fetchall()}
    # One row per feed, the first (fetch_log has no unique (run_id, feed_id) to skip on: see
    # _REFETCHED); the caller's new ingest_runs row serializes writers of the run.
    first: dict[int, tuple[Any, ...]] = {}
    for fid, url, h, at in items:
        first.setdefault(fid, (run_id, fid, url, at, "ok", 200, len(bodies[h][0]), h))
    execute_values(
        cur,
        """INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome, status, bytes, body_hash)
           SELECT v.* FROM (VALUES %s) AS v(run_id, feed_id, url, fetched_at, outcome, status, bytes, body_hash)
           WHERE NOT EXISTS (SELECT 1 FROM fetch_log l WHERE l.run_id = v.run_id AND l.feed_id = v.feed_id)""",
        list(first.values()),
        template="(%s, %s::bigint, %s, %s::timestamptz, %s, %s::int, %s::int, %s)",
        page_size=PAGE,
    )
    return [(fid, url, bodies[h][0], bodies[h][1], at) for fid, url, h, at in items]


def possible_gaps(cur: Cursor, run_id: str) -> list[str]:
    """URLs of the run's fetches that shared no entry with what their feed had stored."""
    cur.execute("SELECT url FROM fetch_log WHERE run_id = %s AND possible_gap ORDER BY url", (run_id,))
    return [url for (url,) in cur.fetchall()]
