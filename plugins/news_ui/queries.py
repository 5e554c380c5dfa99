"""What the News view reads from the news database: read-only SQL, one function per page.

Every function takes an open cursor (of a read-only session, see `read_only`) and returns
plain rows (dicts); sorting and filtering are parameters, never SQL built from input: a
sort key is looked up in a fixed map of columns. The SQL reads the tables of
sql/migrations and the views of sql/views (feed_health, feed_quality, story_clusters).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pipeline.storage.runs import run_feed_outcomes
from pipeline.storage.transactions import dict_rows

STATEMENT_TIMEOUT_MS = 15_000
FEED_SORTS = {  # the feeds table's sortable columns: query value -> SQL column
    "feed": "feed", "status": "status", "error_streak": "error_streak", "last_success": "last_success_at",
    "next_check": "next_check_at", "identity_rule": "identity_rule", "quality": "quality_score",
    "entries_7d": "entries_7d",
}
FEED_STATUSES = ("ok", "failing", "disabled", "never_fetched")


@contextmanager
def read_only(url: str) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor in a read-only transaction: the server refuses any write from this view."""
    conn = psycopg2.connect(url, application_name="news-view", connect_timeout=5,
                            options=f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}")
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            yield cur
        conn.rollback()
    finally:
        conn.close()


def feeds(cur: Any, now: datetime, sort: str = "feed", descending: bool = False,
          status: str | None = None, text: str | None = None) -> list[dict[str, Any]]:
    """Subscribed feeds with their health, quality score and entries of the last 7 days."""
    order = sql.SQL("{} {} NULLS LAST, feed_id").format(
        sql.Identifier(FEED_SORTS.get(sort, "feed")), sql.SQL("DESC" if descending else "ASC"))
    query = sql.SQL("""
        SELECT * FROM (
            SELECT h.feed_id, h.url, coalesce(h.title, h.url) AS feed, h.status, h.error_streak,
                   h.last_success_at, h.next_check_at, h.identity_rule, h.reason,
                   q.score AS quality_score, coalesce(w.entries, 0) AS entries_7d
            FROM feed_health h
            LEFT JOIN feed_quality q ON q.feed_id = h.feed_id
            LEFT JOIN (SELECT feed_id, sum(entries) AS entries FROM fetch_log
                       WHERE fetched_at > %(since)s GROUP BY feed_id) w ON w.feed_id = h.feed_id
            WHERE (%(status)s::text IS NULL OR h.status = %(status)s)
              AND (%(text)s::text IS NULL OR h.url ILIKE %(pattern)s OR h.title ILIKE %(pattern)s)
        ) f ORDER BY {}""").format(order)
    pattern = "%" + (text or "").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cur.execute(query, {"since": now - timedelta(days=7), "status": status or None,
                        "text": text or None, "pattern": pattern})
    return dict_rows(cur)


def feed(cur: Any, feed_id: int) -> dict[str, Any] | None:
    cur.execute("""SELECT h.*, coalesce(h.title, h.url) AS feed, q.score AS quality_score,
                          q.entries_30d, q.quarantine_share, q.undated_share, q.fetch_error_share
                   FROM feed_health h LEFT JOIN feed_quality q ON q.feed_id = h.feed_id
                   WHERE h.feed_id = %s""", (feed_id,))
    rows = dict_rows(cur)
    return rows[0] if rows else None


def fetch_history(cur: Any, feed_id: int, limit: int = 50, errors_only: bool = False) -> list[dict[str, Any]]:
    cur.execute("""SELECT run_id, fetched_at, outcome, status, error_kind, error, duration_ms, bytes,
                          entries, new, updated, duplicates, quarantined, parser
                   FROM fetch_log WHERE feed_id = %s AND (NOT %s OR outcome = 'error')
                   ORDER BY fetched_at DESC LIMIT %s""", (feed_id, errors_only, limit))
    return dict_rows(cur)


def entries_per_day(cur: Any, feed_id: int, first: date, last: date) -> list[dict[str, Any]]:
    """The feed's fetched entries per UTC day, every day from `first` to `last` (zero-filled)."""
    cur.execute("""SELECT d::date AS day, coalesce(sum(l.entries), 0)::int AS entries,
                          coalesce(sum(l.new), 0)::int AS new
                   FROM generate_series(%(first)s::date, %(last)s::date, interval '1 day') d
                   LEFT JOIN fetch_log l ON l.feed_id = %(feed)s
                        AND (l.fetched_at AT TIME ZONE 'UTC')::date = d::date
                   GROUP BY d ORDER BY d""", {"first": first, "last": last, "feed": feed_id})
    return dict_rows(cur)


_FUNNEL = """
    count(*) FILTER (WHERE l.outcome = 'ok')::int AS fetched,
    count(*) FILTER (WHERE l.outcome = 'not_modified')::int AS not_modified,
    count(*) FILTER (WHERE l.outcome = 'error'  -- or not fetched at all (its task failed)
                     OR (rf.feed_id IS NOT NULL AND l.feed_id IS NULL AND r.finished_at IS NOT NULL))::int AS failed,
    count(*) FILTER (WHERE l.outcome = 'disabled')::int AS disabled,
    coalesce(sum(l.entries), 0)::int AS entries, coalesce(sum(l.new), 0)::int AS new,
    coalesce(sum(l.updated), 0)::int AS updated, coalesce(sum(l.duplicates), 0)::int AS duplicates,
    coalesce(sum(l.quarantined), 0)::int AS quarantined"""


def runs(cur: Any, limit: int = 30) -> list[dict[str, Any]]:
    """The last runs, newest first, each with its funnel: feeds (fetched, not modified, failed)
    and entries (new, updated, duplicates, quarantined), counted from the run's feeds."""
    cur.execute(f"""
        SELECT r.run_id, r.kind, r.status, r.started_at, r.finished_at, r.feed_count,
               r.validation_warning, r.validation_error, {_FUNNEL}
        FROM (SELECT * FROM ingest_runs ORDER BY started_at DESC LIMIT %s) r
        LEFT JOIN run_feeds rf ON rf.run_id = r.run_id
        LEFT JOIN fetch_log l ON l.run_id = rf.run_id AND l.feed_id = rf.feed_id
        GROUP BY r.run_id, r.kind, r.status, r.started_at, r.finished_at, r.feed_count,
                 r.validation_warning, r.validation_error
        ORDER BY r.started_at DESC""", (limit,))
    return dict_rows(cur)


def run(cur: Any, run_id: str) -> dict[str, Any] | None:
    """One run: its row, funnel, feeds (failures first), warnings and validation suites."""
    cur.execute(f"""
        SELECT r.run_id, r.kind, r.status, r.started_at, r.finished_at, r.loaded_at, r.feed_count,
               r.not_due, r.validation_warning, r.validation_error, r.data_docs, r.summary, {_FUNNEL}
        FROM ingest_runs r
        LEFT JOIN run_feeds rf ON rf.run_id = r.run_id
        LEFT JOIN fetch_log l ON l.run_id = rf.run_id AND l.feed_id = rf.feed_id
        WHERE r.run_id = %s GROUP BY r.run_id""", (run_id,))
    rows = dict_rows(cur)
    if not rows:
        return None
    found = rows[0]
    outcomes = run_feed_outcomes(cur, run_id)
    found["failing"] = [f for f in outcomes if f["outcome"] in ("error", "disabled")]
    found["feeds"] = outcomes
    stored = found.pop("summary") or {}
    found["attention"] = stored.get("attention") or []
    found["identity_rule_changes"] = stored.get("identity_rule_changes") or []
    found["polling_warning"] = stored.get("polling_warning")  # pipeline.tasks.report_run
    found["possible_gaps"] = stored.get("possible_gaps") or []
    found["failed_tasks"] = stored.get("failed_tasks") or []
    totals = stored.get("totals") or {}
    found["deferred"], found["possible_gap_count"] = totals.get("deferred"), totals.get("possible_gaps")
    found["suites"] = validation_suites(cur, run_id)
    return found


def data_docs(cur: Any, run_id: str) -> str | None:
    """The path of the run's Data Docs page, as the validate task recorded it (or None)."""
    cur.execute("SELECT data_docs FROM ingest_runs WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return row[0] if row else None


def validation_runs(cur: Any, limit: int = 30) -> list[dict[str, Any]]:
    cur.execute("""SELECT run_id, max(evaluated_at) AS evaluated_at, bool_and(success) AS success,
                          count(*)::int AS suites
                   FROM validation_runs GROUP BY run_id ORDER BY max(evaluated_at) DESC LIMIT %s""", (limit,))
    return dict_rows(cur)


def validation_suites(cur: Any, run_id: str) -> list[dict[str, Any]]:
    """The run's suites, each with its expectations: success, counts and observed values."""
    cur.execute("""SELECT id, suite, success, evaluated_at, element_count, statistics, data_docs
                   FROM validation_runs WHERE run_id = %s ORDER BY suite""", (run_id,))
    suites = dict_rows(cur)
    for suite in suites:
        cur.execute("""SELECT expectation, nullif(column_name, '') AS column_name, success, element_count,
                              unexpected_count, unexpected_percent, observed
                       FROM validation_results WHERE validation_id = %s
                       ORDER BY success, expectation, column_name""", (suite.pop("id"),))
        suite["expectations"] = dict_rows(cur)
    return suites


def failing_rows(cur: Any, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The entries this run quarantined, one row per failed expectation: the failing rows."""
    cur.execute("""SELECT q.id, coalesce(f.title, f.url) AS feed, r->>'expectation' AS expectation,
                          r->>'column' AS column_name, r->'observed' AS observed,
                          coalesce(q.article->>'title', q.entry->>'title', '') AS title,
                          coalesce(q.article->>'canonical_url', q.entry->>'link', '') AS link
                   FROM quarantine q JOIN feeds f ON f.id = q.feed_id
                   CROSS JOIN LATERAL jsonb_array_elements(q.reasons) r
                   WHERE %s IN (q.run_id, q.last_run_id)
                   ORDER BY expectation, q.id LIMIT %s""", (run_id, limit))
    return dict_rows(cur)


def held_entries(cur: Any, limit: int = 500) -> list[dict[str, Any]]:
    """Entries held in quarantine, one row per failed expectation, with the original entry."""
    cur.execute("""SELECT r->>'expectation' AS expectation, r->>'column' AS column_name, r->'observed' AS observed,
                          q.id, coalesce(f.title, f.url) AS feed, q.feed_id, q.run_id, q.first_seen_at,
                          q.last_seen_at, q.times_seen, q.entry,
                          coalesce(q.article->>'title', q.entry->>'title', '') AS title
                   FROM quarantine q JOIN feeds f ON f.id = q.feed_id
                   CROSS JOIN LATERAL jsonb_array_elements(q.reasons) r
                   WHERE q.released_at IS NULL
                   ORDER BY expectation, q.last_seen_at DESC, q.id LIMIT %s""", (limit,))
    return dict_rows(cur)


def story_clusters(cur: Any, limit: int = 30) -> list[dict[str, Any]]:
    """The latest stories told by more than one article, with their outlets."""
    cur.execute("""SELECT cluster_id, size, title, outlets, first_seen, last_seen
                   FROM story_clusters WHERE size > 1
                   ORDER BY last_seen DESC, cluster_id DESC LIMIT %s""", (limit,))
    return dict_rows(cur)


def stories_per_day(cur: Any, first: date, last: date) -> list[dict[str, Any]]:
    """Per source and UTC day from `first` to `last` (zero-filled): the stories (clusters of
    more than one article) the source told an article of, by the article's first sighting."""
    cur.execute("""
        WITH told AS (
            SELECT a.feed_id, (a.first_seen_at AT TIME ZONE 'UTC')::date AS day,
                   count(DISTINCT c.cluster_id)::int AS stories
            FROM article_clusters c JOIN articles a ON a.id = c.article_id
            WHERE c.cluster_id IN (SELECT cluster_id FROM article_clusters GROUP BY cluster_id HAVING count(*) > 1)
              AND a.first_seen_at >= %(first)s::date
              AND a.first_seen_at < %(last)s::date + 1
            GROUP BY 1, 2
        )
        SELECT coalesce(f.title, f.url) AS source, d::date AS day, coalesce(t.stories, 0) AS stories
        FROM (SELECT DISTINCT feed_id FROM told) s
        JOIN feeds f ON f.id = s.feed_id
        CROSS JOIN generate_series(%(first)s::date, %(last)s::date, interval '1 day') d
        LEFT JOIN told t ON t.feed_id = s.feed_id AND t.day = d::date
        ORDER BY source, day""", {"first": first, "last": last})
    return dict_rows(cur)
