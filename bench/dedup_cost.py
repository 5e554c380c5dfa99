"""Dedup cost per article as the archive grows: the same kind of batch against 10,000 and
against 1,000,000 stored articles (`sizes`; the issue's figure: within 1.5x).

The archive is filled in SQL, in bulk (INSERT ... SELECT over generate_series): stored
articles spread over `ARCHIVE_FEEDS` unsubscribed feeds, each with the keys the load
writes and dedup and clustering look up: a GUID identity key (`v1:guid:...`, unique per
feed), a canonical URL (unique), a `v1:`-prefixed SHA-256 content hash, a title and a
few hundred characters of text (so the full-text column and its GIN index hold real
rows), a 256-byte MinHash signature and its 16 band keys (signed 64-bit buckets, random
like those of unrelated stories). A large fill drops the tables' secondary indexes and
the articles' unique keys and the band table's primary key, inserts, and builds them again (same definitions, read
from the catalog), then VACUUM ANALYZE, as autovacuum would have left a grown archive.

Each measurement then ingests a fresh batch of real feeds (distinct replicas, so every
entry is new) with the CLI runner (local_runner.ingest) and splits its load task (decide,
validate, load: one transaction) into the two stages the figure is about: `dedup` (the
decider: identity rules, stored-key lookups and the decision, timed by wrapping it) and
`load` (the rest of the load task but validation: the plan, inserts, band lookups,
cluster linking, the commit). Each size is measured `repeats` times;
the fastest run counts, as usual for timings on a shared machine.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

from bench.corpus import replicate, shared_feeds
from pipeline import database, local_runner, neardup, plan_decider
from pipeline.config import Settings
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource

ARCHIVE_FEEDS = 200
_BULK = 100_000  # fills larger than this drop and rebuild the secondary indexes

_FEEDS = """
INSERT INTO feeds (url, title, removed_at)  -- unsubscribed: never fetched
SELECT 'https://outlet' || f || '.example/feed', 'Archive outlet ' || f, now()
FROM generate_series(1, %(feeds)s) AS f
ON CONFLICT (url) DO UPDATE SET title = EXCLUDED.title
RETURNING id
"""
_FILL = """
INSERT INTO articles (feed_id, guid, identity_key, canonical_url, title, text, published_at,
                      published_source, content_hash, word_count, language, language_source,
                      first_seen_at, updated_at, fetched_at, search)
SELECT f.ids[1 + i %% %(feeds)s], g.guid, 'v1:guid:' || g.guid, g.url, g.title, g.text,
       r.published, 'published', 'v1:' || encode(sha256(convert_to(g.title || chr(31) || g.text, 'UTF8')), 'hex'),
       64, 'en', 'feed', r.published, r.published, r.published,
       article_search('en', g.title, g.text)  -- given: the fill runs without triggers (replica role)
FROM generate_series(%(start)s, %(stop)s) AS i,
     (SELECT %(feed_ids)s::bigint[] AS ids) f,
     LATERAL (SELECT now() - make_interval(secs => i * 7) AS published,
                     md5(i::text) AS h) r,
     LATERAL (SELECT 'https://outlet' || (1 + i %% %(feeds)s) || '.example/?p=' || i AS guid,
                     'https://outlet' || (1 + i %% %(feeds)s) || '.example/'
                         || to_char(r.published, 'YYYY/MM/DD') || '/story-' || substr(r.h, 1, 10) || '-' || i AS url,
                     'Archived story ' || i || ': ' || substr(r.h, 1, 8) || ' council ' || substr(r.h, 9, 8)
                         || ' harbour vote' AS title,
                     'Stored text of archived story number ' || i || '. ' ||
                     repeat('The ' || substr(r.h, 1, 6) || ' report on the ' || substr(r.h, 7, 6)
                            || ' budget said the ' || substr(r.h, 13, 6) || ' council met. ', 5) AS text) g
"""
_SIGN = """
INSERT INTO article_signatures (article_id, signature)
SELECT id, decode(repeat(md5(id::text), %(chunks)s), 'hex') FROM articles
WHERE feed_id = ANY(%(feed_ids)s) AND id > %(after)s
"""
_BAND = """
INSERT INTO article_bands (band, bucket, article_id)
SELECT band, hashtextextended(s.article_id::text || ':' || band, 20261128), s.article_id
FROM article_signatures s CROSS JOIN generate_series(0, %(bands)s - 1) AS band
WHERE s.article_id > %(after)s AND s.article_id IN (SELECT id FROM articles WHERE feed_id = ANY(%(feed_ids)s))
ON CONFLICT DO NOTHING
"""
_TABLES = ("articles", "article_signatures", "article_bands")
# Indexes a bulk fill rebuilds: every plain index of the three tables, the articles' unique
# constraints and the band table's primary key (no constraint refers to them). The articles'
# and signatures' primary keys stay: foreign keys refer to them.
_REBUILT = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname,
       pg_get_constraintdef(c.oid), i.indrelid::regclass::text
FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE i.indrelid = ANY(%s::regclass[])
  AND (c.oid IS NULL OR c.contype = 'u' OR (i.indrelid = 'article_bands'::regclass AND c.contype = 'p'))
"""


def fill_archive(db_url: str, size: int) -> dict[str, float]:
    """Grow the archive to `size` stored articles (with signatures and bands): seconds per step."""
    steps: dict[str, float] = {}
    started = last = time.perf_counter()

    def step(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        steps[name] = round(now - last, 1)
        last = now

    with database.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if cur.fetchone()[0]:  # the rows refer to each other by construction: skip the per-row FK checks
            cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(_FEEDS, {"feeds": ARCHIVE_FEEDS})
        feed_ids = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT count(*) FROM articles WHERE feed_id = ANY(%s)", (feed_ids,))
        stored = cur.fetchone()[0]
        cur.execute("SELECT coalesce(max(id), 0) FROM articles")
        last_id = cur.fetchone()[0]
        if stored >= size:
            return {"seconds": 0.0}
        rebuilt = []
        if size - stored > _BULK:
            cur.execute(_REBUILT, (list(_TABLES),))
            rebuilt = cur.fetchall()
            for index, _, constraint, _, table in rebuilt:
                cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}" if constraint
                            else f"DROP INDEX {index}")
        params = {"feeds": ARCHIVE_FEEDS, "feed_ids": feed_ids, "start": stored + 1, "stop": size,
                  "after": last_id, "chunks": neardup.NUM_PERM * 4 // 16, "bands": neardup.BANDS}
        cur.execute(_FILL, params)
        step("articles")
        cur.execute(_SIGN, params)
        step("signatures")
        cur.execute(_BAND, params)
        step("bands")
        for _, definition, constraint, condef, table in rebuilt:
            cur.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {condef}" if constraint
                        else definition)
        step("indexes")
    step("commit")
    conn = psycopg2.connect(db_url, application_name="bench-dedup-cost")
    try:
        conn.autocommit = True  # VACUUM runs outside a transaction
        with conn.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {', '.join(_TABLES)}")
    finally:
        conn.close()
    step("vacuum_analyze")
    return {"seconds": round(time.perf_counter() - started, 1), **steps}


@contextmanager
def _stage_timers(seconds: dict[str, float]) -> Iterator[None]:
    """Time the decider and the validation inside the load task, by wrapping them where
    tasks.load_batch looks them up (pipeline.plan_decider)."""
    patched = []
    for stage, name in (("dedup", "decide"), ("validate", "validate_plan")):
        original = getattr(plan_decider, name)

        def timed(*args: Any, _original: Any = original, _stage: str = stage, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_stage] = seconds.get(_stage, 0.0) + time.perf_counter() - started

        setattr(plan_decider, name, timed)
        patched.append((name, original))
    try:
        yield
    finally:
        for name, original in patched:
            setattr(plan_decider, name, original)


def _timed_ingest(db_url: str, settings: Settings, sources: list[FeedSource], run_id: str) -> dict[str, Any]:
    """local_runner.ingest (the CLI's run), with its decide/validate/load stage split:
    `dedup` is the decider, `load` the rest of the load task but validation (opening the
    plan, inserts, band lookups, cluster linking, commit)."""
    seconds: dict[str, float] = {}
    with _stage_timers(seconds):
        summary = local_runner.ingest(db_url, settings, sources, run_id, force=True)
    stages = summary["stage_seconds"]
    load_task = sum(v for k, v in stages.items() if k not in ("prepare", "fetch_parse_normalize"))
    summary["stage_seconds"] = dict(stages, dedup=seconds["dedup"],
                                    load=load_task - seconds["dedup"] - seconds.get("validate", 0.0))
    return summary


def _ingest_batch(db_url: str, settings: Settings, bodies: list[bytes]) -> dict[str, Any]:
    routes = {f"/feed{i:04d}.xml": Route(body) for i, body in enumerate(bodies)}
    with FeedServer(routes) as server:
        sources = [FeedSource(server.url(path)) for path in routes]
        return _timed_ingest(db_url, settings, sources, f"cost-{uuid.uuid4().hex[:8]}")


def measure(db_url: str, settings: Settings, shared: Path, sizes: tuple[int, ...] = (10_000, 1_000_000),
            replicas: int = 2, repeats: int = 2) -> dict[str, Any]:
    base = shared_feeds(shared)
    results: dict[str, Any] = {}
    batch_number = 1_000  # replica numbers no other bench run uses: every entry is new
    for size in sizes:
        fill = fill_archive(db_url, size)
        best: dict[str, float] | None = None
        for _ in range(repeats):
            bodies = [replicate(body, batch_number + r) for r in range(replicas) for body in base]
            batch_number += replicas
            summary = _ingest_batch(db_url, settings, bodies)
            articles = summary["totals"]["new"] + summary["totals"]["duplicates"]
            seconds = summary["stage_seconds"]
            costs = {"dedup_ms": 1000 * seconds["dedup"] / articles,
                     "load_ms": 1000 * seconds["load"] / articles}
            costs["total_ms"] = costs["dedup_ms"] + costs["load_ms"]
            if best is None or costs["total_ms"] < best["total_ms"]:
                best = dict(costs, batch_entries=articles)
        assert best is not None
        results[f"stored_{size}"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in best.items()}
        results[f"stored_{size}"]["fill_seconds"] = fill.pop("seconds")
        results[f"stored_{size}"]["fill_steps_seconds"] = fill
    small, large = (results[f"stored_{s}"]["total_ms"] for s in (sizes[0], sizes[-1]))
    results["ratio_largest_to_smallest"] = round(large / small, 3)
    return results


def main() -> int:
    """`python -m bench.dedup_cost [--sizes 10000,1000000]`: the figure alone, into a fresh
    database; prints it and writes .data/bench/dedup_cost.json."""
    import argparse
    import json

    from bench.run import SHARED, fresh_database
    from pipeline.config import PROJECT_ROOT

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    base = Settings.from_env(quarantine_fail_ratio=1.0).allowing("127.0.0.1/32")
    settings = base.replace(per_host_concurrency=base.fetch_concurrency)
    sizes = tuple(int(n) for n in args.sizes.split(","))
    result = measure(fresh_database(settings, "news_bench_cost_standalone"), settings, SHARED, sizes, repeats=args.repeats)
    out = PROJECT_ROOT / ".data" / "bench" / "dedup_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
