"""Runs: their shards, state, summary, and the pruning of abandoned staging.

Functions take an open cursor and run parameterized SQL; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json, execute_values

from pipeline import shard_plan
from pipeline.errors import RunIdTaken
from pipeline.storage.transactions import PAGE

STALE_STAGING = timedelta(days=2)


def create_run(
    cur: Cursor, run_id: str, started_at: datetime, feed_ids: Sequence[int], shards: int,
    not_due: int = 0, kind: str = "fetch", lane: str = "all", deferred: int = 0,
) -> int:
    """Record a run and assign its feeds (ranked, most urgent first) to shards, each host's
    spread over all of them (pipeline.shard_plan); a repeated call (a retried or cleared
    task, even one that now takes the replay path) keeps the first plan. The id naming a
    run of another lane raises `RunIdTaken`: two DAGs' runs would share one plan."""
    cur.execute(
        """INSERT INTO ingest_runs (run_id, started_at, feed_count, shards, not_due, kind, lane, deferred)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING RETURNING shards""",
        (run_id, started_at, len(feed_ids), shards, not_due, kind, lane, deferred),
    )
    if cur.fetchone() is None:
        cur.execute("SELECT shards, lane FROM ingest_runs WHERE run_id = %s", (run_id,))
        planned, planned_lane = cur.fetchone()
        if planned_lane != lane:
            raise RunIdTaken(f"run id {run_id!r} already names a run of the {planned_lane!r} lane; "
                             f"this run of the {lane!r} lane needs an id of its own")
        return int(planned)
    cur.execute("SELECT id, url FROM feeds WHERE id = ANY(%s)", (list(feed_ids),))
    urls = dict(cur.fetchall())
    plan = shard_plan.assign([shard_plan.host_of(urls.get(fid) or f"feed {fid}") for fid in feed_ids], shards)
    execute_values(
        cur,
        "INSERT INTO run_feeds (run_id, feed_id, shard) VALUES %s ON CONFLICT DO NOTHING",
        [(run_id, feed_id, shard) for feed_id, shard in zip(feed_ids, plan, strict=True)],
        page_size=PAGE,
    )
    return shards


def prune_stale_staging(cur: Cursor, now: datetime) -> None:
    """Drop staged data of runs that never loaded and are old enough to be abandoned."""
    cur.execute(
        """DELETE FROM staged_entries WHERE run_id IN (
               SELECT run_id FROM ingest_runs WHERE loaded_at IS NULL AND started_at < %s)""",
        (now - STALE_STAGING,),
    )


def assign_run_feeds(cur: Cursor, run_id: str, feed_ids: Sequence[int]) -> None:
    """Put feeds in a run's only shard (release runs, whose feeds are known after staging)."""
    execute_values(cur, "INSERT INTO run_feeds (run_id, feed_id, shard) VALUES %s ON CONFLICT DO NOTHING",
                   [(run_id, fid, 0) for fid in feed_ids])
    cur.execute("UPDATE ingest_runs SET feed_count = %s WHERE run_id = %s", (len(feed_ids), run_id))


def release_counts(cur: Cursor, run_id: str) -> tuple[int, int]:
    """(released by this run, still held after it) among the entries it re-ran."""
    cur.execute(
        """SELECT count(*) FILTER (WHERE released_run_id = %s),
                  count(*) FILTER (WHERE released_at IS NULL AND last_run_id = %s)
           FROM quarantine""",
        (run_id, run_id),
    )
    released, held = cur.fetchone()
    return int(released), int(held)


# A feed of the run with no fetch at all: its shard's task failed before fetching it.
NOT_FETCHED = "not fetched (task failed)"


def run_feed_outcomes(cur: Cursor, run_id: str) -> list[dict[str, Any]]:
    cur.execute(
        """SELECT r.feed_id, f.url,
                  coalesce(l.outcome, 'error') AS outcome, l.status, l.error_kind,
                  CASE WHEN l.feed_id IS NULL THEN %s ELSE l.error END,
                  coalesce(l.duration_ms, 0), coalesce(l.entries, 0), coalesce(l.new, 0),
                  coalesce(l.updated, 0), coalesce(l.duplicates, 0), coalesce(l.quarantined, 0),
                  l.parser
           FROM run_feeds r JOIN feeds f ON f.id = r.feed_id
           LEFT JOIN fetch_log l ON l.run_id = r.run_id AND l.feed_id = r.feed_id
           WHERE r.run_id = %s ORDER BY r.feed_id""",
        (NOT_FETCHED, run_id),
    )
    names = ("feed_id", "url", "outcome", "status", "error_kind", "error", "duration_ms",
             "entries", "new", "updated", "duplicates", "quarantined", "parser")
    return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]


def run_state(cur: Cursor, run_id: str) -> dict[str, Any]:
    """What a run's summary needs from its row."""
    cur.execute(
        """SELECT started_at, loaded_at, validation_error, validation_warning, data_docs, not_due, kind,
                  lane, deferred
           FROM ingest_runs WHERE run_id = %s""",
        (run_id,),
    )
    row = cur.fetchone()
    if row is None:
        raise KeyError(f"unknown run {run_id}")
    return dict(zip([d.name for d in cur.description], row, strict=False))


# The run's feed counts, from its summary's totals, as `counts` keys (run_history.feeds).
_FEED_COUNT_KEYS = {"feeds": "feeds", "feeds_fetched": "fetched", "feeds_not_modified": "not_modified",
                    "feeds_failed": "failed", "feeds_disabled": "disabled"}


def finish_run(cur: Cursor, run_id: str, now: datetime, status: str, summary: dict[str, Any]) -> None:
    """Record the run's end, its summary, and its feed counts beside the load's entry counts."""
    totals = summary.get("totals", {})
    feed_counts = {key: totals.get(total) for key, total in _FEED_COUNT_KEYS.items()}
    cur.execute(
        """UPDATE ingest_runs SET finished_at = %s, status = %s, summary = %s,
                  counts = coalesce(counts, '{}'::jsonb) || %s
           WHERE run_id = %s""",
        (now, status, Json(summary), Json(feed_counts), run_id),
    )


def run_summary(cur: Cursor, run_id: str) -> dict[str, Any] | None:
    cur.execute("SELECT summary FROM ingest_runs WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return row[0] if row else None


def article_count(cur: Cursor) -> int:
    cur.execute("SELECT count(*) FROM articles")
    return int(cur.fetchone()[0])
