"""The analytics views at scale: `python -m bench.analytics_scale [--articles 1000000]`.

Fills a scratch database (`news_bench_analytics`, beside the configured one) in SQL, in
bulk (INSERT ... SELECT over generate_series): `--feeds` sources; `--articles` articles
spread evenly over the `--days` days before now, each first seen 1 to 180 minutes after it
was published and none after now (a language mix with real stemming
configurations, titles and texts drawn from a small vocabulary, one title in 50 about a
flood, one article in 10 on another outlet's domain, one in 20 undated, one source in 100 silent since the start
of the UTC day before yesterday); a run every two hours over the last `--fetch-days` days
with a fetch_log row per source (ok, not modified or failed, with its entry and load
counts) and the lineage of the articles those runs cover. fetch_log's month partitions
for those days are created first (migration 017's `ensure_month_partitions`), so its rows
land in them as a real archive's do, not in the DEFAULT partition. Secondary indexes are
dropped for the fill and built again, then VACUUM ANALYZE, as autovacuum would have left
a grown archive. A database already holding the same fill is reused (`--refill` to start
again).

Then runs each view's typical query (`QUERIES`) a few times and prints the fastest time
of each, with its row count: printed, not asserted (the issue's figure: under 1 s each).
tests/integration/test_analytics_at_scale.py runs the same `fill` and `measure` on a test
database and asserts what the answers must be (the generator's shape below says what).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg2

from pipeline import database
from pipeline.config import Settings
from pipeline.storage import partitions

DATABASE = "news_bench_analytics"
# The default fill (the million articles), the bench's and the scale test's.
ARTICLES, FEEDS, DAYS, FETCH_DAYS = 1_000_000, 1_000, 365, 60
# Bumped when the fill changes, so that `prepare` does not reuse a database of an older one.
GENERATOR = 2  # 2: fetch_log in month partitions; ids in time order; none first seen after now
RUN_HOURS = 2
# The generator's shape, which the scale test asserts the views' answers against.
SILENT_EVERY = 100  # feeds 100, 200, ...: silent since the start of the day before yesterday
WIRES = 7  # one article in 10 is on www.wire0.example ... www.wire6.example
FLOOD_EVERY = 50  # one title in 50 is a flood warning ("Flood warning for the ...")

_FEEDS = """
INSERT INTO feeds (url, title, created_at)
SELECT 'https://outlet' || f || '.example/feed', 'Outlet ' || f, %(start)s
FROM generate_series(1, %(feeds)s) AS f
"""

_RUNS = """
INSERT INTO ingest_runs (run_id, started_at, loaded_at, finished_at, status, feed_count, kind, counts)
SELECT 'bench-' || r, t, t + interval '1 minute', t + interval '2 minutes', 'ok', %(feeds)s, 'fetch',
       jsonb_build_object('feeds', %(feeds)s, 'entries', %(feeds)s * 3)
FROM generate_series(0, %(runs)s - 1) AS r,
     LATERAL (SELECT %(fetch_start)s::timestamptz + make_interval(hours => r * %(run_hours)s) AS t) x
"""

# Fetch ids are run * feeds + feed, so the articles' lineage is arithmetic.
_FETCHES = """
INSERT INTO fetch_log (id, run_id, feed_id, url, fetched_at, outcome, status, error_kind, error,
                       duration_ms, bytes, entries, new, updated, duplicates, quarantined,
                       body_hash, staged)
SELECT r * %(feeds)s + f, 'bench-' || r, f, 'https://outlet' || f || '.example/feed',
       %(fetch_start)s::timestamptz + make_interval(hours => r * %(run_hours)s, secs => f %% 60),
       o.outcome, CASE o.outcome WHEN 'ok' THEN 200 WHEN 'not_modified' THEN 304 ELSE 503 END,
       CASE WHEN o.outcome = 'error' THEN 'http_error' END,
       CASE WHEN o.outcome = 'error' THEN 'HTTP 503' END, 120, 30000,
       CASE WHEN o.outcome = 'ok' THEN 20 ELSE 0 END, CASE WHEN o.outcome = 'ok' THEN 3 ELSE 0 END, 0,
       CASE WHEN o.outcome = 'ok' THEN 17 ELSE 0 END, 0,
       CASE WHEN o.outcome = 'ok' THEN md5('body' || r || ':' || f) END, true
FROM generate_series(%(from)s, %(to)s) AS r, generate_series(1, %(feeds)s) AS f,
     LATERAL (SELECT CASE WHEN (r + f) %% 33 = 0 THEN 'error' WHEN (r * 7 + f) %% 10 = 0 THEN 'not_modified'
                          ELSE 'ok' END AS outcome) o
"""

# The last day's bodies in the archive (the lineage view's body columns).
_BODIES = """
INSERT INTO raw_bodies (body_hash, body, size, content_type, first_fetched_at, last_fetched_at)
SELECT body_hash, '\\x789c030000000001'::bytea, 30000, 'application/rss+xml', fetched_at, fetched_at
FROM fetch_log WHERE body_hash IS NOT NULL AND fetched_at > %(end)s::timestamptz - interval '1 day'
"""

_WORDS = ("council harbour budget vote storm school hospital rail bridge election market court police "
          "river energy water housing farm port museum festival strike tax road climate trade union "
          "mayor minister report plan fire").split()

_ARTICLES = """
INSERT INTO articles (id, feed_id, guid, identity_key, canonical_url, title, text, html, published_at,
                      published_source, language, language_source, content_hash, word_count,
                      first_seen_at, updated_at, fetched_at, first_run_id, content_run_id,
                      first_fetch_id, content_fetch_id)
SELECT i, q.f, 'g' || i, 'v1:guid:g' || i,
       'https://' || CASE WHEN i %% 10 = 0 THEN 'www.wire' || (i %% %(wires)s) || '.example'
                          ELSE 'outlet' || q.f || '.example' END || '/story/' || i,
       w.title, w.text, '', p.published, CASE WHEN i %% 20 = 0 THEN 'fetched' ELSE 'published' END,
       (ARRAY['en', 'en', 'en', 'en', 'fr', 'de', 'es', 'it', NULL, 'xx'])[1 + i %% 10], 'detected',
       'v1:' || md5('c' || i), 40, s.seen, s.seen, s.seen, run.id, run.id, run.fetch, run.fetch
FROM generate_series(%(from)s, %(to)s) AS i,
     LATERAL (SELECT 1 + i %% %(feeds)s AS f, decode(md5(i::text), 'hex') AS h, %(words)s::text[] AS v) k,
     -- published up to 3 hours before the end, so that none is first seen after it
     LATERAL (SELECT %(end)s::timestamptz - make_interval(mins => 180, secs => (%(articles)s - i)::double precision
                                                          * %(span)s / %(articles)s) AS published) p,
     -- one source in 100 falls silent from the start of the UTC day before yesterday (its
     -- stories go to another): every article it would have first seen yesterday is gone,
     -- so source_health has sources to flag
     LATERAL (SELECT CASE WHEN k.f %% %(silent_every)s = 0 AND p.published >= %(silent_from)s
                          THEN k.f - 1 ELSE k.f END AS f) q,
     LATERAL (SELECT p.published + make_interval(mins => 1 + get_byte(h, 0) %% 180) AS seen) s,
     LATERAL (SELECT CASE WHEN i %% %(flood_every)s = 0 THEN 'Flood warning for the ' ELSE 'The ' END
                     || v[1 + get_byte(h, 1) %% 32] || ' ' || v[1 + get_byte(h, 2) %% 32] || ' and the '
                     || v[1 + get_byte(h, 3) %% 32] || ' ' || i AS title,
                     'Reporting on the ' || v[1 + get_byte(h, 4) %% 32] || ' and ' || v[1 + get_byte(h, 5) %% 32]
                     || ' of the ' || v[1 + get_byte(h, 6) %% 32] || ' after the ' || v[1 + get_byte(h, 7) %% 32]
                     || ' meeting. ' || repeat(v[1 + get_byte(h, 8) %% 32] || ' ' || v[1 + get_byte(h, 9) %% 32]
                     || ' ' || v[1 + get_byte(h, 10) %% 32] || ' report. ', 4) AS text) w,
     LATERAL (SELECT CASE WHEN s.seen >= %(fetch_start)s AND n < %(runs)s THEN 'bench-' || n END AS id,
                     CASE WHEN s.seen >= %(fetch_start)s AND n < %(runs)s THEN n * %(feeds)s + q.f END AS fetch
              FROM (SELECT floor(extract(epoch FROM s.seen - %(fetch_start)s::timestamptz)
                                 / (3600 * %(run_hours)s))::bigint AS n) r) run
"""

# Secondary indexes of the filled tables, dropped for the fill and built again after.
_INDEXES = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname,
       pg_get_constraintdef(c.oid), i.indrelid::regclass::text
FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE i.indrelid = ANY(%s::regclass[]) AND (c.oid IS NULL OR c.contype = 'u')
"""
_TABLES = ["articles", "fetch_log"]


def today(cur: Any) -> date:
    """The UTC day the views count up to (their "today")."""
    cur.execute("SELECT utc_day(now())")
    return cur.fetchone()[0]


# Each view's typical query: what a dashboard or an analyst asks of it.
QUERIES: dict[str, str] = {
    "stories_per_day: all sources, last 7 days, per day": """
        SELECT day, sum(by_published), sum(by_first_seen) FROM stories_per_day
        WHERE day > %(today)s::date - 7 GROUP BY day ORDER BY day""",
    "stories_per_day: one source, last 90 days": """
        SELECT * FROM stories_per_day WHERE feed_id = 7 AND day > %(today)s::date - 90 ORDER BY day""",
    "search_attention: 'flood', last 90 days": """
        SELECT * FROM search_attention(websearch_to_tsquery('english', 'flooding'),
                                       %(today)s::date - 90, %(today)s::date)""",
    "search: ranked, top 20": """
        SELECT id, title, ts_rank(search, q) AS rank
        FROM articles, websearch_to_tsquery('english', 'flood harbour') AS q
        WHERE search @@ q ORDER BY rank DESC, published_at DESC LIMIT 20""",
    "top_domains: last 7 days, top 20": """
        SELECT domain, sum(articles) AS articles FROM top_domains
        WHERE day > %(today)s::date - 7 GROUP BY domain ORDER BY articles DESC LIMIT 20""",
    "top_domains: yesterday's top 10": """
        SELECT * FROM top_domains WHERE day = %(today)s::date - 1 ORDER BY rank LIMIT 10""",
    "source_health: yesterday, flagged": """
        SELECT * FROM source_health WHERE day = %(today)s::date - 1 AND flagged""",
    "source_health: one source, last 30 days": """
        SELECT * FROM source_health WHERE feed_id = 7 AND day > %(today)s::date - 30""",
    "publication_lag: per source, last 7 days": """
        SELECT feed_id, sum(articles), sum(lag_mean * articles) / sum(articles) AS lag_mean,
               max(lag_max) FROM publication_lag
        WHERE day > %(today)s::date - 7 GROUP BY feed_id ORDER BY lag_mean DESC LIMIT 20""",
    "daily_funnel: yesterday, all sources": """
        SELECT stage, outcome, sum(count) FROM daily_funnel
        WHERE day = %(today)s::date - 1 GROUP BY stage, outcome ORDER BY stage, outcome""",
    "daily_funnel: one source, last 7 days": """
        SELECT * FROM daily_funnel WHERE feed_id = 7 AND day > %(today)s::date - 7""",
    "run_history: last 20 runs": """
        SELECT * FROM run_history ORDER BY started_at DESC LIMIT 20""",
    "article_lineage: one article": """
        SELECT * FROM article_lineage WHERE article_id = (SELECT max(id) - 200 FROM articles)""",
}


def runs(fetch_days: int) -> int:
    """The runs of a fill: one every RUN_HOURS over `fetch_days`, named bench-0, bench-1, ..."""
    return fetch_days * 24 // RUN_HOURS


def fill(url: str, articles: int, feeds: int, days: int, fetch_days: int, workers: int = 2) -> dict[str, float]:
    """Fill the (migrated, empty) database; seconds per step. The articles (their search
    vectors are most of the time) and the index builds are shared out among `workers`
    connections, each step committed: a fill cut short leaves a partial database (the
    bench's `prepare` fills it again)."""
    steps: dict[str, float] = {}
    last = time.perf_counter()

    def step(name: str) -> None:
        nonlocal last
        steps[name] = round(time.perf_counter() - last, 1)
        last = time.perf_counter()

    with _session(url) as cur:
        cur.execute("SELECT date_trunc('hour', now())")
        end: datetime = cur.fetchone()[0]
        params = {"feeds": feeds, "articles": articles, "span": days * 86400, "end": end,
                  "start": end.replace(year=end.year - 2), "run_hours": RUN_HOURS, "runs": runs(fetch_days),
                  "words": _WORDS, "silent_every": SILENT_EVERY, "wires": WIRES, "flood_every": FLOOD_EVERY}
        cur.execute("SELECT %(end)s::timestamptz - make_interval(days => %(d)s), utc_day_start(utc_day(now()) - 2)",
                    {"end": end, "d": fetch_days})
        params["fetch_start"], params["silent_from"] = cur.fetchone()
        partitions.create_partitions(cur, "fetch_log", _month(params["fetch_start"]), _month(end))
        cur.execute(_INDEXES, (_TABLES,))
        indexes = cur.fetchall()
        for index, _, constraint, _, table in indexes:
            cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}" if constraint else f"DROP INDEX {index}")
        cur.execute(_FEEDS, params)
        cur.execute(_RUNS, params)
    chunk = 120  # runs
    _share(url, workers, [(_FETCHES, {**params, "from": start, "to": min(start + chunk, params["runs"]) - 1})
                          for start in range(0, params["runs"], chunk)])
    with _session(url) as cur:
        cur.execute("SELECT setval('fetch_log_id_seq', (SELECT max(id) FROM fetch_log))")
        cur.execute(_BODIES, params)
    step("feeds_runs_fetches")
    chunk = 125_000  # articles
    _share(url, workers, [(_ARTICLES, {**params, "from": start, "to": min(start + chunk - 1, articles)})
                          for start in range(1, articles + 1, chunk)])
    with _session(url) as cur:
        cur.execute("SELECT setval('articles_id_seq', %s)", (articles,))
    step("articles")
    # Each index built on its own (CREATE INDEX takes a SHARE lock: builds on one table run
    # side by side), the longest first; a unique constraint then adopts its index.
    builds = sorted(indexes, key=lambda i: "USING gin" not in i[1])
    _share(url, workers, [(definition, None) for _, definition, _, _, _ in builds])
    with _session(url) as cur:
        for index, _, constraint, _, table in indexes:
            if constraint:
                cur.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} UNIQUE USING INDEX {index}")
    step("indexes")
    conn = psycopg2.connect(url, application_name="bench-analytics-scale")
    try:
        conn.autocommit = True  # VACUUM runs outside a transaction
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE feeds, ingest_runs, fetch_log, raw_bodies, articles")
    finally:
        conn.close()
    step("vacuum_analyze")
    return steps


@contextmanager
def _session(url: str) -> Iterator[Any]:
    """A cursor in one transaction, set for bulk work: no wait for the WAL flush at commit,
    memory for an index build in one pass, no parallel workers of its own (the fill's
    connections share the cores out)."""
    with database.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cur.execute("SET LOCAL max_parallel_maintenance_workers = 0")
        yield cur


def _share(url: str, workers: int, statements: list[tuple[str, dict[str, Any] | None]]) -> None:
    """Run the statements on `workers` connections, each in its own transaction."""
    def run(statement: str, params: dict[str, Any] | None) -> None:
        with _session(url) as cur:
            cur.execute(statement, params)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for future in [pool.submit(run, statement, params) for statement, params in statements]:
            future.result()


def _month(at: datetime) -> date:
    """The first day of `at`'s UTC month (the partitions' month)."""
    return at.astimezone(UTC).date().replace(day=1)


def prepare(settings: Settings, articles: int, feeds: int, days: int, fetch_days: int,
            refill: bool) -> tuple[str, dict[str, Any]]:
    """The scratch database with the fill asked for: reused when it holds it already."""
    url = database.sibling_url(database.resolve_database_url(settings), DATABASE)
    wanted = {"articles": articles, "feeds": feeds, "days": days, "fetch_days": fetch_days, "generator": GENERATOR}
    with database.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT obj_description('public'::regnamespace)")
        held = cur.fetchone()[0]
    if not refill and held == json.dumps(wanted, sort_keys=True):
        database.migrate(url)
        return url, {"reused": True}
    with database.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    database.migrate(url)
    started = time.perf_counter()
    steps = fill(url, articles, feeds, days, fetch_days)
    with database.connect(url) as conn, conn.cursor() as cur:
        cur.execute("COMMENT ON SCHEMA public IS %s", (json.dumps(wanted, sort_keys=True),))
    return url, {"fill_seconds": round(time.perf_counter() - started, 1), "steps": steps}


@dataclass(frozen=True)
class Timing:
    """A typical query's fastest time of the repeats, and its answer."""

    ms: float
    rows: list[tuple[Any, ...]]


def measure(url: str, repeats: int) -> dict[str, Timing]:
    """Each typical query of `QUERIES`, `repeats` times: the fastest time and the answer."""
    results = {}
    with database.connect(url) as conn, conn.cursor() as cur:
        params = {"today": today(cur)}
        for name, statement in QUERIES.items():
            best = float("inf")
            rows: list[tuple[Any, ...]] = []
            for _ in range(repeats):
                started = time.perf_counter()
                cur.execute(statement, params)
                rows = cur.fetchall()
                best = min(best, time.perf_counter() - started)
            results[name] = Timing(round(1000 * best, 1), rows)
    return results


def table(results: dict[str, Timing]) -> str:
    """The timings as printed: one line per query, its time and row count."""
    width = max(len(name) for name in results)
    return "\n".join(f"{name:<{width}}  {t.ms:>8.1f} ms  {len(t.rows):>6} rows" for name, t in results.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=ARTICLES)
    parser.add_argument("--feeds", type=int, default=FEEDS)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--fetch-days", type=int, default=FETCH_DAYS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--refill", action="store_true")
    args = parser.parse_args()
    url, filled = prepare(Settings.from_env(), args.articles, args.feeds, args.days, args.fetch_days, args.refill)
    print(json.dumps({"database": DATABASE, "articles": args.articles, "feeds": args.feeds, **filled}))
    print(table(measure(url, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
