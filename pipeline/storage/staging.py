"""Staging a shard's entries (`staged_entries`), written once by its shard task.

Functions take an open cursor and run parameterized SQL; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from pipeline.containment import describe, exception_reason, json_text
from pipeline.records import ParsedEntry
from pipeline.shard_pass import FeedBatch, StagedEntry
from pipeline.storage.copy_rows import copy_rows
from pipeline.storage.transactions import PAGE, is_connection_error, savepoint

CLAIM_TIMEOUT = timedelta(hours=1)


def claim_held(cur: Cursor, run_id: str, now: datetime, ids: Sequence[int] | None) -> list[ParsedEntry]:
    """Claim held (unreleased) quarantined entries for a release run; return them as parsed
    entries whose position is their quarantine id, for the run's pass to stage.

    The claim is atomic: rows another release claimed (and has not loaded, within
    `CLAIM_TIMEOUT`) or is claiming right now are skipped, so two releases at once never
    stage the same entry. The run's load ends its claims."""
    cur.execute(
        """UPDATE quarantine q SET claimed_run_id = %(run)s, claimed_at = %(now)s
           FROM feeds f
           WHERE f.id = q.feed_id AND q.id IN (
               SELECT id FROM quarantine
               WHERE released_at IS NULL AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
                 AND (claimed_run_id IS NULL OR claimed_at < %(stale)s)
               ORDER BY id FOR NO KEY UPDATE SKIP LOCKED)
           RETURNING q.id, q.feed_id, f.url, q.entry, coalesce(q.fetched_at, q.first_seen_at),
                     q.feed_language, q.feed_link""",
        {"run": run_id, "now": now, "stale": now - CLAIM_TIMEOUT,
         "ids": list(ids) if ids is not None else None},
    )
    held = sorted(cur.fetchall(), key=lambda row: row[0])
    feeds = {fid: url for _, fid, url, _, _, _, _ in held}
    # fetch_log has no unique (run_id, feed_id) (partitioned, migration 017): a feed's row is
    # inserted unless the run has one; the run's new ingest_runs row serializes its writers.
    execute_values(
        cur,
        """INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome, status)
           SELECT v.* FROM (VALUES %s) AS v(run_id, feed_id, url, fetched_at, outcome, status)
           WHERE NOT EXISTS (SELECT 1 FROM fetch_log l WHERE l.run_id = v.run_id AND l.feed_id = v.feed_id)""",
        [(run_id, fid, url, now, "ok", None) for fid, url in feeds.items()],
        template="(%s, %s::bigint, %s, %s::timestamptz, %s, %s::int)",
    )
    return [ParsedEntry(fid, qid, entry, at, lang, link) for qid, fid, _, entry, at, lang, link in held]


_STAGED_COLUMNS = ("run_id", "feed_id", "seq", "raw", "fetched_at", "feed_language", "feed_link",
                   "article", "decision", "reasons")

_STAGE_ENTRIES = f"INSERT INTO staged_entries ({', '.join(_STAGED_COLUMNS)}) VALUES %s"


_STAGE_TEMPLATE = "(%s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb, %s, %s::jsonb)"


_STAGED_FETCHES = """
UPDATE fetch_log l SET staged = true, entries = v.entries, entries_dropped = v.dropped,
    nuls_removed = v.nuls, parser = coalesce(v.parser, l.parser),
    outcome = CASE WHEN v.error_kind IS NULL THEN l.outcome ELSE 'error' END,
    error_kind = coalesce(v.error_kind, l.error_kind), error = coalesce(v.error, l.error),
    next_check_at = CASE WHEN v.ttl IS NULL THEN l.next_check_at
        ELSE GREATEST(l.next_check_at, LEAST(l.fetched_at + make_interval(mins => v.ttl),
                                             l.fetched_at + make_interval(secs => v.max_interval)))
        END
FROM (VALUES %s) AS v(run_id, feed_id, entries, dropped, nuls, parser, error_kind, error, ttl, max_interval)
WHERE l.run_id = v.run_id AND l.feed_id = v.feed_id
"""


_STAGED_TEMPLATE = "(%s, %s::bigint, %s::int, %s::int, %s::int, %s, %s, %s, %s::int, %s::int)"


def _entry_row(run_id: str, staged: StagedEntry) -> tuple[Any, ...]:
    e, article = staged.entry, staged.article
    reasons = staged.reasons or [] if article is None else None
    return (run_id, e.feed_id, e.seq, json_text(e.raw), e.fetched_at, e.feed_language, e.feed_link,
            json_text(article.to_json()) if article is not None else None,
            "quarantined" if reasons is not None else None,
            json_text(reasons) if reasons is not None else None)


def has_staged_entries(cur: Cursor, run_id: str) -> bool:
    cur.execute("SELECT EXISTS (SELECT 1 FROM staged_entries WHERE run_id = %s)", (run_id,))
    return bool(cur.fetchone()[0])


def stage_batches(cur: Cursor, run_id: str, batches: Sequence[FeedBatch], max_interval_s: int) -> list[FeedBatch]:
    """Stage a shard's entries, each with its article or its quarantine reasons, and complete
    the feeds' fetch_log rows (entries, what the parse learnt, or the error that a body
    which is no feed became) in one go. Idempotent: a retried shard replaces its rows.

    Should PostgreSQL refuse the batch, each feed is staged alone, and in a feed it
    refuses, each entry: one it refuses with its article is staged quarantined with the
    reason; a feed whose entries it refuses even so fails as `internal_error`. Returns the
    batches as staged (with those changes)."""
    cur.execute("DELETE FROM staged_entries WHERE run_id = %s AND feed_id = ANY(%s)",
                (run_id, [b.feed_id for b in batches]))
    try:
        with savepoint(cur):  # an entry that cannot be written (copy_rows raises its error) undoes the COPY
            copy_rows(cur, "staged_entries", _STAGED_COLUMNS,
                      (_entry_row(run_id, s) for b in batches for s in b.entries))
        staged = list(batches)
    except Exception as exc:  # noqa: BLE001 - find what it refuses, keep the rest
        if is_connection_error(exc):
            raise
        staged = [_stage_feed_alone(cur, run_id, b) for b in batches]
    titled = [(b.title[:500], b.feed_id) for b in staged if b.title and not b.error_kind]
    if titled:
        execute_values(cur, "UPDATE feeds f SET title = v.title FROM (VALUES %s) AS v(title, id) "
                            "WHERE f.id = v.id AND f.title IS NULL", titled)
    execute_values(
        cur, _STAGED_FETCHES,
        [(run_id, b.feed_id, len(b.entries), b.entries_over_cap, b.nuls_removed, b.parser,
          b.error_kind, b.error, b.ttl_minutes, max_interval_s) for b in staged],
        template=_STAGED_TEMPLATE, page_size=PAGE)
    failed = sorted(b.feed_id for b in staged if b.error_kind)
    if failed:  # their fetch is an error now: the feed row's streak counts it (`shard_feeds` reads it)
        cur.execute("SELECT 1 FROM feeds WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", (failed,))
        cur.execute("UPDATE feeds SET consecutive_errors = feed_error_streak(id) WHERE id = ANY(%s)", (failed,))
    return staged


def _stage_feed_alone(cur: Cursor, run_id: str, batch: FeedBatch) -> FeedBatch:
    try:
        with savepoint(cur):
            entries = []
            for staged in batch.entries:
                try:
                    with savepoint(cur):
                        execute_values(cur, _STAGE_ENTRIES, [_entry_row(run_id, staged)],
                                       template=_STAGE_TEMPLATE)
                    entries.append(staged)
                except Exception as exc:  # noqa: BLE001 - the entry refused with its article
                    if is_connection_error(exc) or staged.article is None:
                        raise
                    held = replace(staged, article=None, reasons=[exception_reason(exc, "staging")])
                    execute_values(cur, _STAGE_ENTRIES, [_entry_row(run_id, held)], template=_STAGE_TEMPLATE)
                    entries.append(held)
        return replace(batch, entries=tuple(entries))
    except Exception as exc:  # noqa: BLE001 - a feed whose rows PostgreSQL refuses fails alone
        if is_connection_error(exc):
            raise
        return FeedBatch(batch.feed_id, error_kind="internal_error", error=f"staging failed: {describe(exc)}")
