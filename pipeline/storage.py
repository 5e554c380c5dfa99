"""Storage: every SQL statement the stages run, except the load (pipeline.load).

Functions take an open cursor and run parameterized SQL; the caller owns the
transaction. The staging table (`staged_entries`) carries a run's entries from
its shard tasks to its load, keyed by run id, so the DAG's tasks pass only ids
and counts through XCom.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import psycopg2
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json, execute_values

from pipeline.containment import describe, exception_reason
from pipeline.identity import IdentityRule
from pipeline.records import (
    Article,
    DedupVerdict,
    FeedSource,
    FeedState,
    FetchOutcome,
    FetchResult,
    ParsedEntry,
    StoredArticleKey,
)
from pipeline.shard_pass import FeedBatch, StagedEntry

PAGE = 1000
STALE_STAGING = timedelta(days=2)


# --- feeds and runs ---------------------------------------------------------------


def upsert_feeds(cur: Cursor, sources: Sequence[FeedSource], source: str = "list") -> list[int]:
    """Register feeds; ids in list order. A URL that moved (301/308) maps to its feed.

    `source='cli'` (an explicit subscription) also re-subscribes a removed feed.
    """
    cur.execute(
        "SELECT old_url, feed_id FROM feed_url_history WHERE old_url = ANY(%s)",
        ([s.url for s in sources],),
    )
    ids = dict(cur.fetchall())
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


def plan_feeds(
    cur: Cursor, list_ids: Sequence[int], now: datetime, force: bool
) -> tuple[list[int], int]:
    """The feeds a run covers: subscribed (in the list, or added by CLI), not removed, and
    due (next check reached) unless `force`. Disabled feeds are included, to be reported.
    Returns (feed ids, number of feeds not due)."""
    cur.execute(
        """SELECT id, enabled, next_check_at FROM feeds
           WHERE removed_at IS NULL AND (id = ANY(%s) OR source = 'cli') ORDER BY id""",
        (list(list_ids),),
    )
    included, not_due = [], 0
    for feed_id, enabled, next_check_at in cur.fetchall():
        if not enabled or force or next_check_at is None or next_check_at <= now:
            included.append(feed_id)
        else:
            not_due += 1
    return included, not_due


def create_run(
    cur: Cursor, run_id: str, started_at: datetime, feed_ids: Sequence[int], shards: int,
    not_due: int = 0, kind: str = "fetch",
) -> int:
    """Record a run and assign its feeds to shards; a repeated call keeps the first plan."""
    cur.execute(
        """INSERT INTO ingest_runs (run_id, started_at, feed_count, shards, not_due, kind)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING RETURNING shards""",
        (run_id, started_at, len(feed_ids), shards, not_due, kind),
    )
    if cur.fetchone() is None:
        cur.execute("SELECT shards FROM ingest_runs WHERE run_id = %s", (run_id,))
        return int(cur.fetchone()[0])
    execute_values(
        cur,
        "INSERT INTO run_feeds (run_id, feed_id, shard) VALUES %s ON CONFLICT DO NOTHING",
        [(run_id, feed_id, i % shards) for i, feed_id in enumerate(feed_ids)],
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


def prune_archive(cur: Cursor, now: datetime, retention_days: int) -> int:
    """Drop archived bodies not fetched within the retention period."""
    cur.execute("DELETE FROM raw_bodies WHERE last_fetched_at < %s",
                (now - timedelta(days=retention_days),))
    return cur.rowcount


def shard_feeds(cur: Cursor, run_id: str, shard: int) -> list[FeedState]:
    """The shard's feeds as the fetcher needs them. The error streak is the one before this
    run, so a retried shard backs off from the same streak as its first attempt."""
    cur.execute(
        """SELECT f.id, f.url, f.etag, f.last_modified, f.enabled, f.disabled_reason,
                  f.body_hash,
                  CASE WHEN f.enabled THEN feed_error_streak(f.id, r.run_id) ELSE 0 END
           FROM run_feeds r JOIN feeds f ON f.id = r.feed_id
           WHERE r.run_id = %s AND r.shard = %s ORDER BY f.id""",
        (run_id, shard),
    )
    return [FeedState(*row) for row in cur.fetchall()]


# --- fetch --------------------------------------------------------------------------


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
    execute_values(
        cur,
        """INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome, status)
           VALUES %s ON CONFLICT (run_id, feed_id) DO NOTHING""",
        [(run_id, fid, url, now, "ok", None) for fid, url in feeds.items()],
    )
    return [ParsedEntry(fid, qid, entry, at, lang, link) for qid, fid, _, entry, at, lang, link in held]


@contextmanager
def savepoint(cur: Cursor) -> Iterator[None]:
    """A sub-transaction: on an exception, what ran inside is undone and the rest kept."""
    cur.execute("SAVEPOINT contained")
    try:
        yield
    except BaseException:
        if not cur.connection.closed:
            cur.execute("ROLLBACK TO SAVEPOINT contained")
        raise
    cur.execute("RELEASE SAVEPOINT contained")


def is_connection_error(exc: BaseException) -> bool:
    """A lost or shut-down server (transient: the stage fails and is retried), as opposed to
    a row the server refuses (data: that row or feed fails)."""
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))


# --- staging -------------------------------------------------------------------


_STAGE_ENTRIES = """INSERT INTO staged_entries (run_id, feed_id, seq, raw, fetched_at, feed_language,
                                              feed_link, article, decision, reasons) VALUES %s"""
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
    return (run_id, e.feed_id, e.seq, json.dumps(e.raw), e.fetched_at, e.feed_language, e.feed_link,
            json.dumps(article.to_json()) if article is not None else None,
            "quarantined" if reasons is not None else None,
            json.dumps(reasons) if reasons is not None else None)


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
        with savepoint(cur):
            rows = [_entry_row(run_id, s) for b in batches for s in b.entries]
            execute_values(cur, _STAGE_ENTRIES, rows, template=_STAGE_TEMPLATE, page_size=PAGE)
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


# --- the load plan -----------------------------------------------------------------
# The load task decides (identity rules, dedup, validation) and loads in one transaction.
# Its decisions go to `load_plan`, a temporary copy of the run's staged entries that lives
# only in that transaction: the staged rows, written once by the shard tasks, are never
# rewritten, and the load's SQL (pipeline.load) applies the plan.


def open_plan(cur: Cursor, run_id: str) -> int:
    """Copy the run's staged entries into this transaction's `load_plan`; return their number."""
    cur.execute(
        """CREATE TEMP TABLE load_plan ON COMMIT DROP AS
           SELECT run_id, feed_id, seq, raw, fetched_at, feed_language, feed_link, article,
                  decision, rule, matched_article_id, matched_url, reasons,
                  NULL::bigint AS article_id  -- of a new article: from the INSERT's RETURNING
           FROM staged_entries WHERE run_id = %s""",
        (run_id,),
    )
    count = cur.rowcount
    cur.execute("ALTER TABLE load_plan ADD PRIMARY KEY (feed_id, seq)")
    cur.execute("ANALYZE load_plan")
    return count


_SET_ARTICLES = """UPDATE load_plan s SET article = v.article::jsonb
                   FROM (VALUES %s) AS v(run_id, feed_id, seq, article)
                   WHERE s.run_id = v.run_id AND s.feed_id = v.feed_id AND s.seq = v.seq"""


def set_articles(cur: Cursor, run_id: str, articles: Sequence[Article]
                 ) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Plan articles re-keyed by their feed's identity rule. Should PostgreSQL refuse the
    batch, each article is planned alone: those it refuses are returned, with the reason,
    to be quarantined."""
    rows = [(run_id, a.feed_id, a.seq, json.dumps(a.to_json())) for a in articles]
    try:
        with savepoint(cur):
            execute_values(cur, _SET_ARTICLES, rows, template="(%s, %s::bigint, %s::int, %s)",
                           page_size=PAGE)
        return {}
    except Exception as exc:  # noqa: BLE001 - find the rows refused, keep the others
        if is_connection_error(exc):
            raise
    refused: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        try:
            with savepoint(cur):
                execute_values(cur, _SET_ARTICLES, [row], template="(%s, %s::bigint, %s::int, %s)")
        except Exception as exc:  # noqa: BLE001
            if is_connection_error(exc):
                raise
            refused[(row[1], row[2])] = [exception_reason(exc, "staging")]
    return refused




def staged_articles(cur: Cursor, run_id: str, decisions: Sequence[str] | None = None) -> list[Article]:
    """The run's normalized articles in (feed, position) order, optionally by decision."""
    query = "SELECT article FROM load_plan WHERE run_id = %s AND article IS NOT NULL"
    params: list[Any] = [run_id]
    if decisions is not None:
        query += " AND decision = ANY(%s)"
        params.append(list(decisions))
    cur.execute(query + " ORDER BY feed_id, seq", params)
    return [Article.from_json(row[0]) for row in cur]


def stored_keys(cur: Cursor, articles: Sequence[Article]) -> list[StoredArticleKey]:
    """Stored articles sharing an identity (within its feed), canonical URL or content hash
    with the batch. Three index lookups, so the cost follows the batch, not the archive."""
    cur.execute(
        """SELECT id, feed_id, identity_key, canonical_url, content_hash FROM articles
           WHERE (feed_id, identity_key) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))
           UNION
           SELECT id, feed_id, identity_key, canonical_url, content_hash FROM articles
           WHERE canonical_url = ANY(%s)
           UNION
           SELECT id, feed_id, identity_key, canonical_url, content_hash FROM articles
           WHERE content_hash = ANY(%s)""",
        (
            [a.feed_id for a in articles],
            [a.identity_key for a in articles],
            list({a.canonical_url for a in articles if a.canonical_url}),
            list({a.content_hash for a in articles}),
        ),
    )
    return [StoredArticleKey(*row) for row in cur.fetchall()]


def identity_rules(cur: Cursor, feed_ids: Sequence[int]) -> dict[int, IdentityRule]:
    cur.execute("SELECT id, identity_rule FROM feeds WHERE id = ANY(%s)", (list(feed_ids),))
    return {feed_id: IdentityRule(rule) for feed_id, rule in cur.fetchall()}


def stored_guids_by_link(cur: Cursor, articles: Sequence[Article]) -> dict[int, dict[str, str | None]]:
    """feed -> {link: the GUID the feed's article at that link was stored with}."""
    cur.execute(
        "SELECT feed_id, canonical_url, guid FROM articles WHERE canonical_url = ANY(%s)",
        (list({a.link for a in articles if a.link}),),
    )
    by_feed: dict[int, dict[str, str | None]] = {}
    for feed_id, url, guid in cur.fetchall():
        by_feed.setdefault(feed_id, {})[url] = guid
    return by_feed


def change_identity_rules(cur: Cursor, run_id: str, changes: dict[int, tuple[IdentityRule, IdentityRule, str]],
                          now: datetime) -> None:
    """Record each feed's new identity rule on its row and in `feed_identity_changes`."""
    for feed_id, (old, new, reason) in changes.items():
        cur.execute(
            """UPDATE feeds SET identity_rule = %s, identity_rule_reason = %s,
                   identity_rule_changed_at = %s WHERE id = %s""",
            (new.value, reason, now, feed_id),
        )
        cur.execute(
            """INSERT INTO feed_identity_changes (feed_id, run_id, old_rule, new_rule, reason, changed_at)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            (feed_id, run_id, old.value, new.value, reason, now),
        )


def identity_rule_changes(cur: Cursor, run_id: str) -> list[dict[str, Any]]:
    """The feeds whose identity rule this run changed, with why."""
    cur.execute("""SELECT f.url, c.old_rule, c.new_rule, c.reason FROM feed_identity_changes c
                   JOIN feeds f ON f.id = c.feed_id WHERE c.run_id = %s ORDER BY f.url""", (run_id,))
    return _dicts(cur)


def set_decisions(
    cur: Cursor, run_id: str, articles: Sequence[Article], verdicts: Sequence[DedupVerdict]
) -> None:
    execute_values(
        cur,
        """UPDATE load_plan s SET decision = v.decision, rule = v.rule,
               matched_article_id = v.matched_id, matched_url = v.matched_url, reasons = NULL
           FROM (VALUES %s) AS v(run_id, feed_id, seq, decision, rule, matched_id, matched_url)
           WHERE s.run_id = v.run_id AND s.feed_id = v.feed_id AND s.seq = v.seq""",
        [
            (run_id, a.feed_id, a.seq, v.decision.value, v.rule.value if v.rule else None,
             v.matched_article_id, v.matched_url)
            for a, v in zip(articles, verdicts, strict=False)
        ],
        template="(%s, %s::bigint, %s::int, %s, %s, %s::bigint, %s)",
        page_size=PAGE,
    )


def set_quarantined(cur: Cursor, run_id: str, reasons: dict[tuple[int, int], list[dict[str, Any]]]) -> None:
    """Mark rows as quarantined with their failed expectations."""
    execute_values(
        cur,
        """UPDATE load_plan s SET decision = 'quarantined', reasons = v.reasons::jsonb
           FROM (VALUES %s) AS v(run_id, feed_id, seq, reasons)
           WHERE s.run_id = v.run_id AND s.feed_id = v.feed_id AND s.seq = v.seq""",
        [(run_id, fid, seq, json.dumps(r)) for (fid, seq), r in reasons.items()],
        template="(%s, %s::bigint, %s::int, %s)",
        page_size=PAGE,
    )


def batch_duplicates_of(cur: Cursor, run_id: str, urls: Sequence[str]) -> list[tuple[int, int, str]]:
    """Rows of this run marked duplicate of an earlier row in the batch with one of `urls`."""
    cur.execute(
        """SELECT feed_id, seq, matched_url FROM load_plan
           WHERE run_id = %s AND decision = 'duplicate' AND matched_article_id IS NULL
             AND matched_url = ANY(%s)""",
        (run_id, list(urls)),
    )
    return list(cur.fetchall())


def mark_validated(cur: Cursor, run_id: str, now: datetime, error: str | None,
                   warning: str | None = None, data_docs: str | None = None) -> None:
    cur.execute(
        """UPDATE ingest_runs SET validated_at = %s, validation_error = %s,
               validation_warning = %s, data_docs = %s WHERE run_id = %s""",
        (now, error, warning, data_docs, run_id),
    )


def feed_entry_counts(cur: Cursor, run_id: str) -> list[tuple[int, str, int, int, int]]:
    """(feed_id, url, entries, undated, quarantined) per feed of the run's batch."""
    cur.execute(
        """SELECT s.feed_id, f.url, count(*),
                  count(*) FILTER (WHERE s.article->>'published_source' = 'fetched'),
                  count(*) FILTER (WHERE s.decision = 'quarantined')
           FROM load_plan s JOIN feeds f ON f.id = s.feed_id
           WHERE s.run_id = %s GROUP BY s.feed_id, f.url ORDER BY s.feed_id""",
        (run_id,),
    )
    return list(cur.fetchall())


def record_validation(cur: Cursor, run_id: str, outcome: Any, now: datetime) -> None:
    """Store one suite run and its per-expectation results (replacing a retried one)."""
    cur.execute(
        """INSERT INTO validation_runs (run_id, suite, success, evaluated_at, element_count,
                                        statistics, data_docs)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (run_id, suite) DO UPDATE SET success = EXCLUDED.success,
               evaluated_at = EXCLUDED.evaluated_at, element_count = EXCLUDED.element_count,
               statistics = EXCLUDED.statistics, data_docs = EXCLUDED.data_docs
           RETURNING id""",
        (run_id, outcome.suite, outcome.success, now, outcome.element_count,
         Json(outcome.statistics), outcome.data_docs),
    )
    validation_id = cur.fetchone()[0]
    cur.execute("DELETE FROM validation_results WHERE validation_id = %s", (validation_id,))
    execute_values(
        cur,
        """INSERT INTO validation_results (validation_id, expectation, column_name, success,
               element_count, unexpected_count, unexpected_percent, observed) VALUES %s
           ON CONFLICT DO NOTHING""",
        [(validation_id, e.expectation, e.column or "", e.success, e.element_count,
          e.unexpected_count, e.unexpected_percent, Json(e.observed, dumps=_dumps))
         for e in outcome.expectations],
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


# --- report -------------------------------------------------------------------------


def run_feed_outcomes(cur: Cursor, run_id: str) -> list[dict[str, Any]]:
    cur.execute(
        """SELECT r.feed_id, f.url,
                  coalesce(l.outcome, 'error') AS outcome, l.status, l.error_kind,
                  CASE WHEN l.feed_id IS NULL THEN 'not fetched (task failed)' ELSE l.error END,
                  coalesce(l.duration_ms, 0), coalesce(l.entries, 0), coalesce(l.new, 0),
                  coalesce(l.updated, 0), coalesce(l.duplicates, 0), coalesce(l.quarantined, 0),
                  l.parser
           FROM run_feeds r JOIN feeds f ON f.id = r.feed_id
           LEFT JOIN fetch_log l ON l.run_id = r.run_id AND l.feed_id = r.feed_id
           WHERE r.run_id = %s ORDER BY r.feed_id""",
        (run_id,),
    )
    names = ("feed_id", "url", "outcome", "status", "error_kind", "error", "duration_ms",
             "entries", "new", "updated", "duplicates", "quarantined", "parser")
    return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]


def run_state(cur: Cursor, run_id: str) -> dict[str, Any]:
    """What a run's summary needs from its row."""
    cur.execute(
        """SELECT started_at, loaded_at, validation_error, validation_warning, data_docs, not_due, kind
           FROM ingest_runs WHERE run_id = %s""",
        (run_id,),
    )
    row = cur.fetchone()
    if row is None:
        raise KeyError(f"unknown run {run_id}")
    return dict(zip([d.name for d in cur.description], row, strict=False))


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


def finish_run(cur: Cursor, run_id: str, now: datetime, status: str, summary: dict[str, Any]) -> None:
    cur.execute(
        "UPDATE ingest_runs SET finished_at = %s, status = %s, summary = %s WHERE run_id = %s",
        (now, status, Json(summary), run_id),
    )


def run_summary(cur: Cursor, run_id: str) -> dict[str, Any] | None:
    cur.execute("SELECT summary FROM ingest_runs WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return row[0] if row else None


def article_count(cur: Cursor) -> int:
    cur.execute("SELECT count(*) FROM articles")
    return int(cur.fetchone()[0])


def _dicts(cur: Cursor) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]


def quarantined_entries(cur: Cursor, include_released: bool) -> list[dict[str, Any]]:
    """Held entries (and released ones with `include_released`): id, feed, expectations, title."""
    cur.execute(
        """SELECT q.id, f.url AS feed, q.first_seen_at, q.times_seen, q.released_at,
                  (SELECT array_agg(DISTINCT r->>'expectation') FROM jsonb_array_elements(q.reasons) r)
                      AS expectations,
                  left(coalesce(q.article->>'title', q.entry->>'title', ''), 80) AS title
           FROM quarantine q JOIN feeds f ON f.id = q.feed_id
           WHERE %s OR q.released_at IS NULL ORDER BY q.id""",
        (include_released,),
    )
    return _dicts(cur)


def quarantined_entry(cur: Cursor, entry_id: int) -> dict[str, Any] | None:
    """One quarantined entry whole: reasons, original entry, normalized form, history."""
    cur.execute(
        """SELECT q.id, f.url AS feed, q.run_id, q.last_run_id, q.first_seen_at, q.last_seen_at,
                  q.times_seen, q.released_at, q.reasons, q.entry, q.article
           FROM quarantine q JOIN feeds f ON f.id = q.feed_id WHERE q.id = %s""",
        (entry_id,),
    )
    rows = _dicts(cur)
    return rows[0] if rows else None


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
    return _dicts(cur)
