"""Dedup cost per article as the archive grows: the same kind of batch against 10,000 and
against 200,000 stored articles.

The archive is filled in SQL: one feed of stored articles, each with its identity, URL and
content hash (the exact-duplicate keys) and a MinHash signature with its 16 band keys
(the near-duplicate keys), random like those of unrelated stories. Each measurement then
ingests a fresh batch of real feeds (distinct replicas, so every entry is new) and reads
the run's own stage timings: `dedup` (stored-key lookups and the decision) and `load`
(inserts, band lookups and cluster linking, in one transaction). Each size is measured
`repeats` times; the fastest run counts, as usual for timings on a shared machine.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from bench.corpus import replicate, shared_feeds
from pipeline import database, local_runner, neardup
from pipeline.config import Settings
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource

_FILL = """
INSERT INTO articles (feed_id, guid, identity_key, canonical_url, title, text, published_at,
                      published_source, content_hash, word_count)
SELECT %(feed)s, 'archive-' || i, 'v1:guid:archive-' || i, 'https://archive.example/story/' || i,
       'Archived story ' || i, 'Stored text of archived story number ' || i,
       now() - make_interval(mins => i), 'published', 'v1:' || md5(i::text), 7
FROM generate_series(%(start)s, %(stop)s) AS i
"""
_SIGN = """
INSERT INTO article_signatures (article_id, signature)
SELECT id, decode(repeat(md5(id::text), %(chunks)s), 'hex') FROM articles
WHERE feed_id = %(feed)s AND id NOT IN (SELECT article_id FROM article_signatures)
"""
_BAND = """
INSERT INTO article_bands (band, bucket, article_id)
SELECT band, (hashtextextended(s.article_id::text || ':' || band, 0)), s.article_id
FROM article_signatures s JOIN articles a ON a.id = s.article_id AND a.feed_id = %(feed)s
CROSS JOIN generate_series(0, %(bands)s - 1) AS band
WHERE s.article_id > %(after)s
ON CONFLICT DO NOTHING
"""


def fill_archive(db_url: str, size: int) -> float:
    """Grow the archive feed to `size` stored articles (with signatures and bands); seconds."""
    started = time.perf_counter()
    with database.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO feeds (url, title, removed_at)  -- unsubscribed: never fetched
                       VALUES ('https://archive.example/feed', 'Archive', now())
                       ON CONFLICT (url) DO UPDATE SET title = EXCLUDED.title RETURNING id""")
        feed = cur.fetchone()[0]
        cur.execute("SELECT count(*), coalesce(max(id), 0) FROM articles WHERE feed_id = %s", (feed,))
        stored, last_id = cur.fetchone()
        if stored < size:
            cur.execute(_FILL, {"feed": feed, "start": stored + 1, "stop": size})
            cur.execute(_SIGN, {"feed": feed, "chunks": neardup.NUM_PERM * 4 // 16})
            cur.execute(_BAND, {"feed": feed, "bands": neardup.BANDS, "after": last_id})
            cur.execute("ANALYZE articles, article_bands, article_signatures")
    return time.perf_counter() - started


def _ingest_batch(db_url: str, settings: Settings, bodies: list[bytes]) -> dict[str, Any]:
    routes = {f"/feed{i:04d}.xml": Route(body) for i, body in enumerate(bodies)}
    with FeedServer(routes) as server:
        sources = [FeedSource(server.url(path)) for path in routes]
        return local_runner.ingest(db_url, settings, sources, f"cost-{uuid.uuid4().hex[:8]}", force=True)


def measure(db_url: str, settings: Settings, shared: Path, sizes: tuple[int, ...] = (10_000, 200_000),
            replicas: int = 2, repeats: int = 2) -> dict[str, Any]:
    base = shared_feeds(shared)
    results: dict[str, Any] = {}
    batch_number = 1_000  # replica numbers no other bench run uses: every entry is new
    for size in sizes:
        fill_seconds = fill_archive(db_url, size)
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
        results[f"stored_{size}"]["fill_seconds"] = round(fill_seconds, 1)
    small, large = (results[f"stored_{s}"]["total_ms"] for s in (sizes[0], sizes[-1]))
    results["ratio_largest_to_smallest"] = round(large / small, 3)
    return results
