"""Story clusters, decided in the load plan: each new article linked to its nearest earlier
near-duplicate among a few.

The load's decider plans them once the plan's other decisions are made (dedup, identity,
validation), in the load's transaction under its lock, so runs see each other's articles:
every planned article has its id by then (a new one's is assigned in the plan,
`storage.assign_article_ids`, in the order the insert writes them). For each article planned
new or updated it plans the signature and bands (`plan_signatures`, `plan_bands`) and for
each new one the link to the cluster it joins, with its score, and a seed row for an earlier
article that starts a cluster (`plan_links`). The load applies them (pipeline.load), the one
writer of `article_signatures`, `article_bands` and `article_clusters`.

Only the choice (which candidate, which cluster) is Python, in `pipeline.neardup`;
candidates come from the stored articles' indexed bands and the plan's own (what is
stored, as the plan will leave it: an updated article by its planned bands), a bounded
few per band (`CANDIDATES_PER_BAND`), so an article's cost does not grow with the number
of feeds that carry its story. Below, a *stored* article is one stored, or planned by an
earlier chunk.

A cluster is one story across outlets: candidates from the article's own feed are not
linked. Near-identical entries within one feed are recurring templates (a weekly
calendar, show notes, a market wrap) or the feed's own re-posts, not syndication.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import islice
from typing import Any

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from pipeline import neardup
from pipeline.free_memory import release_free_memory
from pipeline.storage.array_literal import array_literal
from pipeline.storage.copy_rows import copy_lines, copy_rows

RULE = f"minhash_lsh_{neardup.SIGNATURE_VERSION}"
SEED = "seed"  # an earlier article's row as its cluster's first: the cluster is named by its id


# The plan's clustering tables, for the transaction. The stored tables are read as the plan
# will leave them: an article the plan re-signs (an update) by its planned signature and
# bands, not its stored ones (`_earlier_in_bucket`, `_SIGNED`, `_MEMBERS`).
_PLAN_TABLES = """
CREATE TEMP TABLE plan_signatures (article_id bigint PRIMARY KEY, feed_id bigint NOT NULL,
                                   signature bytea NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE plan_bands (band smallint NOT NULL, bucket bigint NOT NULL, article_id bigint NOT NULL,
                              PRIMARY KEY (band, bucket, article_id)) ON COMMIT DROP;
CREATE TEMP TABLE plan_links (article_id bigint PRIMARY KEY, cluster_id bigint NOT NULL, score real NOT NULL,
                              rule text NOT NULL) ON COMMIT DROP;
"""


def _earlier_in_bucket(bound: str, limit: str) -> str:
    """A subquery: the latest `limit` articles older than `bound` in the bucket of `n.band`
    and `n.bucket`, stored (not re-signed by the plan) or planned. Each table's index is
    read backwards to its own limit, then the two merged: a bucket of thousands costs what
    one of a few does."""
    return f"""(SELECT article_id FROM (
        (SELECT b.article_id FROM article_bands b
         WHERE b.band = n.band AND b.bucket = n.bucket AND b.article_id < {bound}
           AND NOT EXISTS (SELECT 1 FROM plan_signatures p WHERE p.article_id = b.article_id)
         ORDER BY b.article_id DESC LIMIT {limit})
        UNION ALL
        (SELECT b.article_id FROM plan_bands b
         WHERE b.band = n.band AND b.bucket = n.bucket AND b.article_id < {bound}
         ORDER BY b.article_id DESC LIMIT {limit})) both_tables
     ORDER BY article_id DESC LIMIT {limit})"""


# Each of the ids `x.id` with its signature and feed: planned, else stored.
_SIGNED = """
LEFT JOIN plan_signatures p ON p.article_id = x.id
LEFT JOIN article_signatures s ON p.article_id IS NULL AND s.article_id = x.id
LEFT JOIN articles a ON p.article_id IS NULL AND a.id = x.id
"""
_SIGNED_WHERE = "coalesce(p.signature, s.signature) IS NOT NULL AND coalesce(p.feed_id, a.feed_id) IS NOT NULL"

# The clusters of the articles in %(ids)s: stored, or planned by an earlier chunk.
_MEMBERS = """
SELECT article_id, cluster_id FROM article_clusters WHERE article_id = ANY(%(ids)s::bigint[])
UNION ALL SELECT article_id, cluster_id FROM plan_links WHERE article_id = ANY(%(ids)s::bigint[])
"""


def _plan_signed(cur: Cursor, signatures: dict[int, tuple[bytes, int]],
                 bands: dict[int, list[tuple[int, int]]]) -> None:
    """Plan the articles' signatures and bands (an update re-signs its article; one planned
    again, as an update matched twice can be, keeps the later)."""
    cur.execute("DELETE FROM plan_signatures WHERE article_id = ANY(%s::bigint[]) RETURNING article_id",
                (array_literal(list(signatures)),))
    if again := [article_id for (article_id,) in cur.fetchall()]:  # nearly always none
        cur.execute("DELETE FROM plan_bands WHERE article_id = ANY(%s::bigint[])", (array_literal(again),))
    copy_rows(cur, "plan_signatures", ("article_id", "signature", "feed_id"),
              ((i, sig, feed_id) for i, (sig, feed_id) in signatures.items()))
    copy_lines(cur, "plan_bands", ("band", "bucket", "article_id"),  # integers: nothing to escape
               (f"{band}\t{bucket}\t{i}\n" for i, keys in bands.items() for band, bucket in keys))


CHUNK = 5_000  # articles signed, banded and clustered at a time: the load's memory stays bounded


def plan_clusters(cur: Cursor, run_id: str) -> dict[str, int]:
    """Plan the signatures and bands of the run's articles planned new or updated, and the
    new ones' cluster links (after `storage.assign_article_ids`, in the load's transaction).
    Returns the articles signed and the links planned.

    In chunks of `CHUNK`, in article id order (the updated articles', then the new ones' in
    the order the insert writes them), streamed from the plan through a server-side cursor:
    a chunk's candidates are articles with smaller ids, stored, or planned (an earlier
    chunk's, or this one's) before its candidate query; the clusters an earlier chunk
    planned are read back from the plan. The outcome is the whole batch's at once, and the
    memory that of one chunk."""
    signed = linked = 0
    cur.execute(_PLAN_TABLES)
    with cur.connection.cursor(name="cluster_plan") as planned:
        planned.itersize = CHUNK
        planned.execute(  # ids: a new article's planned one, an update's the matched one
            """SELECT coalesce(i.article_id, s.matched_article_id), s.article->>'signature', s.decision,
                      s.feed_id
               FROM load_plan s
               LEFT JOIN plan_article_ids i ON s.decision = 'new' AND i.feed_id = s.feed_id AND i.seq = s.seq
               WHERE s.run_id = %s AND s.decision IN ('new', 'update')
                 AND s.article->>'signature' IS NOT NULL
                 AND coalesce(i.article_id, s.matched_article_id) IS NOT NULL
               ORDER BY 1, s.feed_id DESC, s.seq DESC""",  # an article updated twice: the applied (first) kept
            (run_id,),
        )
        while chunk := planned.fetchmany(CHUNK):
            signed += len(chunk)
            linked += _plan_chunk(cur, chunk)
            release_free_memory()  # what the chunk freed goes back: a long load stays flat
    cur.execute("ANALYZE plan_signatures, plan_bands, plan_links")  # for the load's joins
    return {"signed": signed, "linked": linked}


def _plan_chunk(cur: Cursor, chunk: list[tuple[int, str, str, int]]) -> int:
    """Sign, band and cluster one chunk of planned articles; return the links planned.

    Candidates among the chunk's own articles are found here, from the bands just computed;
    only the others (earlier chunks', stored) are looked up, by probes of the stored and
    planned bands made before the chunk's bands are planned (an updated article of the
    chunk found there by its stored bands is dropped: the chunk's own bands judge it)."""
    rows, feed_of = {}, {}
    for article_id, sig, decision, feed_id in chunk:
        rows[article_id] = (bytes.fromhex(sig), decision)
        feed_of[article_id] = feed_id
    band_keys = {i: neardup.bands(sig) for i, (sig, _) in rows.items()}
    new_ids = [i for i, (_, decision) in rows.items() if decision == "new"]
    holders = _band_holders(band_keys)
    updated = [i for i, (_, decision) in rows.items() if decision != "new"]
    cluster_of = _clusters(cur, updated)  # a new article is in no cluster yet
    linked = 0
    for start in range(0, len(new_ids), MATCH_SLICE):
        ids = new_ids[start:start + MATCH_SLICE]
        candidates, cut = _stored_candidates(cur, ids, band_keys, rows)
        for article_id in ids:
            older, truncated = _chunk_candidates(article_id, band_keys, holders)
            candidates.setdefault(article_id, set()).update(older)
            if truncated:
                cut.add(article_id)
        further = partial(_further_back, cur, cut, rows, feed_of, band_keys, holders, updated)
        linked += _link_slice(cur, candidates, rows, feed_of, cluster_of, further)
    _plan_signed(cur, {i: (sig, feed_of[i]) for i, (sig, _) in rows.items()}, band_keys)
    return linked


# New articles matched against their candidates at a time (their candidates' signatures
# are read together).
MATCH_SLICE = 250

# Candidates of a new article per band: the latest earlier articles in its bucket. A story
# syndicated by N feeds puts its N copies in the same buckets, and every copy is in the
# story's cluster: the latest few say which cluster the article joins. Unbounded, each copy
# was compared with all the earlier ones, so the time and memory per article grew with the
# syndication (the 1,000-feed bench replicated to 5,000 feeds, 100 copies of each story:
# clustering took 27 s against 1.0 s at 1,000, and the load's peak memory grew with it).
# An article whose latest candidates are all unusable (of its own feed: a feed's re-posts
# are not syndication; or the chunk's re-signed articles, found by their old bands) looks
# further back for other feeds' (`_further_back`).
CANDIDATES_PER_BAND = 16
# How far back, per band, an article looks past such candidates: a bound, for a feed that
# re-posts one text hundreds of times.
SCAN_PER_BAND = 512


def _stored_candidates(cur: Cursor, new_ids: list[int], band_keys: dict[int, list[tuple[int, int]]],
                       chunk: dict[int, Any]) -> tuple[dict[int, set[int]], set[int]]:
    """For each of these new articles, the stored articles (not of the chunk) sharing a band
    with it and older than it: per band, the latest `CANDIDATES_PER_BAND` (the band index
    read backwards from the article's id). Also the articles with a band cut at that bound."""
    if not new_ids:
        return {}, set()
    with _band_index_read_backwards(cur):
        cur.execute(
            f"""SELECT n.article_id, n.band, b.article_id
               FROM unnest(%(ids)s::bigint[], %(bands)s::smallint[], %(buckets)s::bigint[])
                    AS n(article_id, band, bucket)
               CROSS JOIN LATERAL {_earlier_in_bucket("n.article_id", "%(limit)s")} b""",
            dict(zip(("ids", "bands", "buckets"),
                     map(array_literal, zip(*[(i, band, bucket) for i in new_ids for band, bucket in band_keys[i]],
                                            strict=True)), strict=True), limit=CANDIDATES_PER_BAND),
        )
        found = cur.fetchall()
    candidates: dict[int, set[int]] = {}
    per_band: Counter[tuple[int, int]] = Counter()
    for article_id, band, candidate in found:
        per_band[article_id, band] += 1
        if candidate not in chunk:
            candidates.setdefault(article_id, set()).add(candidate)
    return candidates, {article_id for (article_id, _), n in per_band.items() if n >= CANDIDATES_PER_BAND}


@contextmanager
def _band_index_read_backwards(cur: Cursor) -> Iterator[None]:
    """The bucket probes read `article_bands`' index backwards and stop at their limit: the
    planner, which has no statistics for bands stored in this transaction, would otherwise
    read whole buckets through a bitmap and sort them."""
    cur.execute("SELECT current_setting('enable_bitmapscan')")
    (before,), = cur.fetchall()
    cur.execute("SET LOCAL enable_bitmapscan = off")
    try:
        yield
    finally:
        cur.execute("SELECT set_config('enable_bitmapscan', %s, true)", (before,))


def _further_back(cur: Cursor, cut: set[int], rows: dict[int, tuple[bytes, str]], feed_of: dict[int, int],
                  band_keys: dict[int, list[tuple[int, int]]], holders: dict[tuple[int, int], list[int]],
                  chunk_updated: list[int], article_id: int) -> list[tuple[int, bytes, int | None]]:
    """For an article whose latest candidates were all unusable and cut at the bound
    (`cut`: in the chunk or stored; none otherwise, as for a story no other article
    carries): other feeds' articles further back, per band the latest
    `CANDIDATES_PER_BAND` among the latest `SCAN_PER_BAND`, of the chunk and stored. Each
    with its signature and, for a stored one, its cluster."""
    if article_id not in cut:
        return []
    feed = feed_of[article_id]
    older, _ = _chunk_candidates(article_id, band_keys, holders, lambda c: feed_of[c] != feed)
    found: list[tuple[int, bytes, int | None]] = [(c, rows[c][0], None) for c in older]
    return found + _stored_further_back(cur, article_id, feed, band_keys[article_id], chunk_updated)


def _stored_further_back(cur: Cursor, article_id: int, feed_id: int, band_keys: list[tuple[int, int]],
                         chunk_updated: list[int]) -> list[tuple[int, bytes, int | None]]:
    """Stored articles of other feeds than `feed_id` and not re-signed in the chunk (whose
    own bands judge them), per band the latest `CANDIDATES_PER_BAND` among the latest
    `SCAN_PER_BAND` older than the article; with each, its signature and cluster."""
    bands, buckets = zip(*band_keys, strict=True)
    with _band_index_read_backwards(cur):
        cur.execute(
            f"""SELECT DISTINCT c.id, c.signature
               FROM unnest(%(bands)s::smallint[], %(buckets)s::bigint[]) AS n(band, bucket)
               CROSS JOIN LATERAL (
                   SELECT x.id, coalesce(p.signature, s.signature) AS signature
                   FROM (SELECT article_id AS id FROM {_earlier_in_bucket("%(article)s", "%(scan)s")} b) x
                   {_SIGNED}
                   WHERE {_SIGNED_WHERE} AND coalesce(p.feed_id, a.feed_id) <> %(feed)s
                     AND x.id <> ALL(%(updated)s::bigint[])
                   ORDER BY x.id DESC LIMIT %(candidates)s) c""",
            {"bands": array_literal(bands), "buckets": array_literal(buckets), "article": article_id,
             "scan": SCAN_PER_BAND, "feed": feed_id, "updated": array_literal(chunk_updated),
             "candidates": CANDIDATES_PER_BAND},
        )
        found = [(candidate, bytes(sig)) for candidate, sig in cur.fetchall()]
    clusters = _clusters(cur, [candidate for candidate, _ in found])
    return [(candidate, sig, clusters.get(candidate)) for candidate, sig in found]


def _band_holders(band_keys: dict[int, list[tuple[int, int]]]) -> dict[tuple[int, int], list[int]]:
    """Each (band, bucket) of the chunk, with the chunk's articles in it in id order."""
    holders: dict[tuple[int, int], list[int]] = {}
    for article_id in sorted(band_keys):
        for key in band_keys[article_id]:
            holders.setdefault(key, []).append(article_id)
    return holders


def _chunk_candidates(article_id: int, band_keys: dict[int, list[tuple[int, int]]],
                      holders: dict[tuple[int, int], list[int]],
                      usable: Callable[[int], bool] | None = None) -> tuple[set[int], bool]:
    """The chunk's articles (new or updated) older than this one that share a band with it:
    per band, the latest `CANDIDATES_PER_BAND`; with `usable`, the latest that many it
    accepts among the latest `SCAN_PER_BAND`. And whether a band had more."""
    older: set[int] = set()
    truncated = False
    for key in band_keys[article_id]:
        members = holders[key]  # in id order, this article among them
        at = bisect_left(members, article_id)
        truncated |= at > CANDIDATES_PER_BAND
        if usable is None:
            older.update(members[max(0, at - CANDIDATES_PER_BAND):at])
        else:
            window = reversed(members[max(0, at - SCAN_PER_BAND):at])
            older.update(islice(filter(usable, window), CANDIDATES_PER_BAND))
    return older, truncated


def _clusters(cur: Cursor, article_ids: list[int]) -> dict[int, int]:
    """The stored cluster of each of these articles that is in one."""
    if not article_ids:
        return {}
    cur.execute(_MEMBERS, {"ids": array_literal(article_ids)})
    return dict(cur.fetchall())


def _link_slice(cur: Cursor, candidates: dict[int, set[int]], rows: dict[int, tuple[bytes, str]],
                feed_of: dict[int, int], cluster_of: dict[int, int],
                further: Callable[[int], list[tuple[int, bytes, int | None]]]) -> int:
    """Link these new articles (each with its candidates) to their nearest earlier
    near-duplicates of other feeds (for one with no usable candidate, among those `further`
    finds). `cluster_of` holds the clusters of the chunk's articles so far, and takes the
    links planned here; another candidate's are read. Returns the links planned."""
    stored = sorted({c for cs in candidates.values() for c in cs if c not in rows})
    stored_signature, stored_feed = {}, {}
    if stored:
        cur.execute(f"""SELECT x.id, coalesce(p.signature, s.signature), coalesce(p.feed_id, a.feed_id)
                        FROM unnest(%s::bigint[]) AS x(id) {_SIGNED} WHERE {_SIGNED_WHERE}""",
                    (array_literal(stored),))
        for candidate, sig, feed_id in cur.fetchall():
            stored_signature[candidate] = bytes(sig)
            stored_feed[candidate] = feed_id
        cluster_of.update(_clusters(cur, stored))

    def other_feed(article_id: int, candidate: int) -> bytes | None:
        """The candidate's signature, if it is of another feed than the article's (and signed)."""
        if candidate in rows:
            return rows[candidate][0] if feed_of[candidate] != feed_of[article_id] else None
        if candidate in stored_signature and stored_feed[candidate] != feed_of[article_id]:
            return stored_signature[candidate]
        return None

    links: list[tuple[int, int, float, str]] = []
    for article_id in sorted(candidates):
        usable = [(c, sig) for c in candidates[article_id] if (sig := other_feed(article_id, c)) is not None]
        if not usable:
            for candidate, sig, cluster in further(article_id):
                usable.append((candidate, sig))
                if cluster is not None:
                    cluster_of.setdefault(candidate, cluster)
        match = neardup.best_match(rows[article_id][0], usable)
        if match is None:
            continue
        other, score = match
        if other not in cluster_of:  # the earlier article starts the cluster
            cluster_of[other] = other
            links.append((other, other, 1.0, SEED))
        cluster_of[article_id] = cluster_of[other]
        links.append((article_id, cluster_of[other], score, RULE))
    execute_values(cur, """INSERT INTO plan_links (article_id, cluster_id, score, rule)
                           VALUES %s ON CONFLICT (article_id) DO NOTHING""", links, page_size=1000)
    return sum(1 for link in links if link[3] == RULE)
