"""Load stage: the one place that writes articles, duplicates, quarantine, versions,
clusters and the feeds' fetch state (a failed fetch's politeness aside: see below).

One transaction per run's batch, under an advisory lock (`begin`), applying the plan the
load task decided in the same transaction (`load_plan`: the staged entries with their
decisions, new articles' ids and cluster links; no round trip of article data through
Python). The insert's RETURNING says which planned articles it wrote:

* new articles are inserted (`ON CONFLICT DO NOTHING`, and not over a stored copy of the
  same content); a row another writer inserted meanwhile is re-labelled a duplicate, or
  an update when it is the same feed's entry with other content, so the accounting holds;
* updates rewrite the article's content (never its published time), the previous
  content kept in `article_versions` with what changed (capped per feed per run);
* order holds when runs overlap (a CLI ingest and a DAG run, a replay, a release): each
  article keeps the `fetched_at` of the content it holds, and an update from an older
  fetch, or one another run already made, is a duplicate (the decider's, counted in
  `stale_updates`; the update itself applies only over older content); a duplicate from
  a newer fetch moves `fetched_at` forward;
* new articles are linked to their near-duplicate story clusters as planned
  (pipeline.clusters), and the articles written get their planned signatures and bands;
* duplicates and quarantined rows are upserted, bumping `times_seen`;
* the feeds' HTTP validators, body hash and redirect count advance only here, and only
  from a fetch newer than the one they describe, so a run that fails before loading
  re-fetches next time instead of losing entries, and an older run loading late never
  moves them back. Politeness (error streak, backoff, Retry-After, 410) is recorded at
  fetch time already (storage.record_fetches); the load completes it with what only
  parsing knew (a body that is no feed);
* a release run's claims on held quarantine rows end here;
* `ingest_runs.loaded_at` marks the run loaded: a retried load is a no-op;
* a feed whose fetched entries were not all staged (its shard task failed after recording
  the fetch) is its error in the run, none of its entries loaded, its validators and body
  hash unmoved and its next check now, so the next run fetches it again; the other feeds'
  entries load (a replay run with such a body is refused: replayed again, it loads it).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json, execute_values

from pipeline import clusters, polling_policy, storage
from pipeline.errors import RunNotLoadable
from pipeline.records import LoadCounts
from pipeline.storage.array_literal import array_literal

log = logging.getLogger(__name__)

_LOAD_LOCK = 715_002

_INSERT_NEW = """
WITH fetches AS (  -- lineage: the fetch whose body held the entries (fetch_of_entry, 015):
                  -- a fetch run's own archived fetch in one join, any other through the function
    SELECT DISTINCT ON (d.feed_id, d.fetched_at) d.feed_id, d.fetched_at,
           coalesce(own.id, fetch_of_entry(%(run)s, d.feed_id, d.fetched_at)) AS id
    FROM (SELECT DISTINCT feed_id, fetched_at FROM load_plan
          WHERE run_id = %(run)s AND decision = 'new') d
    LEFT JOIN (fetch_log own JOIN ingest_runs r ON r.run_id = own.run_id AND r.kind = 'fetch')
      ON own.run_id = %(run)s AND own.feed_id = d.feed_id AND own.fetched_at = d.fetched_at
     AND own.body_hash IS NOT NULL
    ORDER BY d.feed_id, d.fetched_at, own.id
), inserted AS (
INSERT INTO articles (id, feed_id, guid, identity_key, canonical_url, title, text, html,
                      published_at, published_source, authors, tags, language, content_hash,
                      first_seen_at, updated_at, first_run_id, language_source, word_count,
                      published_raw, date_issue, fetched_at, first_fetch_id, content_run_id,
                      content_fetch_id, search)
SELECT i.article_id, s.feed_id, a.guid, a.identity_key, a.canonical_url, a.title, a.text, a.html,
       a.published_at, a.published_source, coalesce(a.authors, '{}'), coalesce(a.tags, '{}'),
       a.language, a.content_hash, %(now)s, %(now)s, %(run)s, a.language_source,
       coalesce(a.word_count, 0), a.published_raw, a.date_issue, s.fetched_at, x.id, %(run)s, x.id,
       s.search  -- computed when the shard staged it (migration 018)
FROM load_plan s JOIN plan_article_ids i ON i.feed_id = s.feed_id AND i.seq = s.seq  -- its planned id
     LEFT JOIN fetches x ON x.feed_id = s.feed_id AND x.fetched_at = s.fetched_at,
     -- the article's fields read in one pass (each ->> would unpack the whole document again)
     jsonb_to_record(s.article) AS a(guid text, identity_key text, canonical_url text, title text,
                                     text text, html text, published_at timestamptz,
                                     published_source text, authors text[], tags text[],
                                     language text, content_hash text, language_source text,
                                     word_count int, published_raw text, date_issue text)
WHERE s.run_id = %(run)s AND s.decision = 'new'
  -- the decider's content rule, against what other runs loaded since this run's dedup
  AND NOT EXISTS (SELECT 1 FROM articles x WHERE x.content_hash = s.content_hash)
ORDER BY s.feed_id, s.seq
ON CONFLICT DO NOTHING
RETURNING id, feed_id, identity_key
)  -- the new articles the insert wrote, by their plan rows' keys (a planned one another run
   -- loaded meanwhile is not among them): a narrow table of its own
INSERT INTO plan_new_articles (feed_id, identity_key, article_id)
SELECT feed_id, identity_key, id FROM inserted
"""

# A lost race's update re-signs the article it matched: its planned signature and bands
# move from the id planned for it to the article's (the first row, by feed and position,
# as `_UPDATE_CHANGED` applies the first; none when the plan re-signs that article already).
_RESIGN_LOST_RACES = """
WITH moved AS (
    SELECT DISTINCT ON (s.matched_article_id) i.article_id AS planned, s.matched_article_id AS matched
    FROM plan_article_ids i JOIN load_plan s ON s.run_id = %(run)s AND s.feed_id = i.feed_id AND s.seq = i.seq
    WHERE s.decision = 'update'
      AND NOT EXISTS (SELECT 1 FROM plan_signatures q WHERE q.article_id = s.matched_article_id)
    ORDER BY s.matched_article_id, s.feed_id, s.seq
), bands AS (
    UPDATE plan_bands b SET article_id = m.matched FROM moved m WHERE b.article_id = m.planned
)
UPDATE plan_signatures p SET article_id = m.matched FROM moved m WHERE p.article_id = m.planned
"""

# The planned signatures, bands and cluster links (pipeline.clusters) of the articles the
# plan wrote: those inserted and those updated, not a planned one another run loaded
# meanwhile (`_UNWRITTEN` leaves those out of the plan first); a link only when the article
# it names as its cluster is stored too. An updated article's stored signature and bands
# are replaced (a new one has none: its id is new).
_UPDATED_BY_THE_PLAN = """EXISTS (SELECT 1 FROM load_plan s WHERE s.run_id = %(run)s AND s.decision = 'update'
                                                   AND s.matched_article_id = p.article_id)"""
_UNWRITTEN = f"""
DELETE FROM plan_signatures p
WHERE NOT EXISTS (SELECT 1 FROM plan_new_articles n WHERE n.article_id = p.article_id)
  AND NOT {_UPDATED_BY_THE_PLAN}
RETURNING p.article_id
"""
_DROP_RESIGNED = f"""  -- before the inserts: a statement's parts all see the tables as it began
WITH updated AS (  -- the updated articles re-signed (an update whose text is too short to sign keeps its own)
    SELECT p.article_id FROM plan_signatures p WHERE {_UPDATED_BY_THE_PLAN}
), old_bands AS (
    DELETE FROM article_bands o USING updated u WHERE o.article_id = u.article_id
)
DELETE FROM article_signatures o USING updated u WHERE o.article_id = u.article_id
"""
_APPLY_SIGNATURES = """
WITH bands AS (INSERT INTO article_bands (band, bucket, article_id) SELECT band, bucket, article_id FROM plan_bands)
INSERT INTO article_signatures (article_id, signature) SELECT article_id, signature FROM plan_signatures
"""
_APPLY_LINKS = """
WITH links AS (
    SELECT l.* FROM plan_links l
    WHERE l.rule <> %(seed)s AND EXISTS (SELECT 1 FROM articles a WHERE a.id = l.article_id)
      AND EXISTS (SELECT 1 FROM articles a WHERE a.id = l.cluster_id)
), seeds AS (  -- a cluster's first article, when a link written names it
    SELECT l.* FROM plan_links l
    WHERE l.rule = %(seed)s AND EXISTS (SELECT 1 FROM links w WHERE w.cluster_id = l.article_id)
)
INSERT INTO article_clusters (article_id, cluster_id, score, rule, linked_at)
SELECT article_id, cluster_id, score, rule, %(now)s FROM (TABLE links UNION ALL TABLE seeds) w
ORDER BY article_id
ON CONFLICT (article_id) DO NOTHING
RETURNING rule
"""

# Rows planned as new that were not inserted: another run loaded the entry (or a copy of
# its content) after this run's dedup. Each is matched as the decider would have matched
# it (same feed and identity, else canonical URL, else content); the same feed's entry
# with other content becomes an update (a duplicate when the stored article's content is
# from a newer fetch: storage.relabel_stale_updates, as the decider does, then), any other
# a duplicate. Such an update re-signs the article it matched (`_RESIGN_LOST_RACES`).
_RELABEL_LOST_RACES = """
WITH lost AS (
    SELECT DISTINCT ON (t.feed_id, t.seq) t.feed_id, t.seq, a.id, a.canonical_url,
           a.feed_id AS article_feed, a.content_hash,
           CASE WHEN a.feed_id = t.feed_id AND a.identity_key = t.article->>'identity_key'
                THEN 'same_identity_key'
                WHEN a.canonical_url = t.article->>'canonical_url' THEN 'canonical_url'
                ELSE 'content_hash' END AS rule
    FROM load_plan t
    JOIN articles a ON a.first_run_id IS DISTINCT FROM %(run)s
     AND ((a.feed_id = t.feed_id AND a.identity_key = t.article->>'identity_key')
          OR a.canonical_url = t.article->>'canonical_url'
          OR a.content_hash = t.article->>'content_hash')
    WHERE t.run_id = %(run)s AND t.decision = 'new'
    ORDER BY t.feed_id, t.seq,
             (a.feed_id = t.feed_id AND a.identity_key = t.article->>'identity_key') DESC,
             (a.canonical_url = t.article->>'canonical_url') DESC, a.id
)
UPDATE load_plan s
SET decision = CASE WHEN m.rule <> 'content_hash' AND m.article_feed = s.feed_id
                         AND m.content_hash <> s.article->>'content_hash'
                    THEN 'update' ELSE 'duplicate' END,
    rule = m.rule, matched_article_id = m.id, matched_url = m.canonical_url
FROM lost m
WHERE s.run_id = %(run)s AND s.feed_id = m.feed_id AND s.seq = m.seq
"""

# Before an update, keep the previous content with what changed, and the run and fetch
# that produced it; at most %(version_cap)s versions per feed per run, so a feed that
# rewrites every entry on every fetch cannot flood the table (the update itself still applies).
_KEEP_VERSIONS = """
INSERT INTO article_versions (article_id, version, run_id, changed, title, text, html,
                              canonical_url, guid, content_hash, replaced_at, content_run_id,
                              content_fetch_id)
SELECT DISTINCT ON (id) id, version, %(run)s, changed, title, text, html, canonical_url, guid,
       content_hash, %(now)s, content_run_id, content_fetch_id
FROM (
    SELECT a.*, row_number() OVER (PARTITION BY s.feed_id ORDER BY s.seq) AS nth,
           array_remove(ARRAY[
               CASE WHEN a.title <> s.article->>'title' THEN 'title' END,
               CASE WHEN a.text <> s.article->>'text' THEN 'body' END,
               CASE WHEN a.canonical_url <> s.article->>'canonical_url' THEN 'url' END,
               CASE WHEN a.guid IS DISTINCT FROM s.article->>'guid' THEN 'guid' END], NULL) AS changed
    FROM load_plan s JOIN articles a ON a.id = s.matched_article_id
    WHERE s.run_id = %(run)s AND s.decision = 'update' AND a.content_hash <> s.article->>'content_hash'
) v
WHERE nth <= %(version_cap)s  -- (article_id, version) kept once: no unique key to skip on (017)
  AND NOT EXISTS (SELECT 1 FROM article_versions o WHERE o.article_id = v.id AND o.version = v.version)
ORDER BY id, nth
"""

_UPDATE_CHANGED = """
UPDATE articles a
SET title = s.article->>'title', text = s.article->>'text', html = s.article->>'html',
    content_hash = s.article->>'content_hash', guid = s.article->>'guid',
    identity_key = CASE WHEN s.key_rank > 1 OR EXISTS (
                       SELECT 1 FROM articles o WHERE o.feed_id = a.feed_id AND o.id <> a.id
                         AND o.identity_key = s.article->>'identity_key')
                   THEN a.identity_key ELSE s.article->>'identity_key' END,
    canonical_url = CASE WHEN s.url_rank > 1 OR EXISTS (
                        SELECT 1 FROM articles o WHERE o.id <> a.id
                          AND o.canonical_url = s.article->>'canonical_url')
                    THEN a.canonical_url ELSE s.article->>'canonical_url' END,
    authors = ARRAY(SELECT jsonb_array_elements_text(s.article->'authors')),
    tags = ARRAY(SELECT jsonb_array_elements_text(s.article->'tags')),
    language = coalesce(s.article->>'language', a.language),
    language_source = CASE WHEN s.article->>'language' IS NULL THEN a.language_source
                           ELSE s.article->>'language_source' END,
    word_count = coalesce((s.article->>'word_count')::int, a.word_count),
    version = a.version + 1, updated_at = %(now)s, fetched_at = s.fetched_at,
    content_run_id = %(run)s, content_fetch_id = fetch_of_entry(%(run)s, s.feed_id, s.fetched_at),
    -- the staged vector was made with the entry's language; when the stored one is kept
    -- instead (the entry has none), NULL has the trigger make it with the row's (018)
    search = CASE WHEN s.article->>'language' IS NOT NULL OR a.language IS NULL THEN s.search END
-- one update per article (the batch's first, as its kept version); a new URL or identity key
-- that several updates move to goes to the first of them (the EXISTS checks above see the
-- table as the statement found it, not each other's moves): the others keep theirs
FROM (SELECT DISTINCT ON (p.matched_article_id) p.*
      FROM (SELECT u.*,
                   row_number() OVER (PARTITION BY u.article->>'canonical_url' ORDER BY u.feed_id, u.seq) AS url_rank,
                   row_number() OVER (PARTITION BY u.feed_id, u.article->>'identity_key' ORDER BY u.seq) AS key_rank
            FROM load_plan u WHERE u.run_id = %(run)s AND u.decision = 'update') p
      ORDER BY p.matched_article_id, p.feed_id, p.seq) s
WHERE s.run_id = %(run)s AND s.decision = 'update' AND a.id = s.matched_article_id
  AND a.content_hash <> s.article->>'content_hash' AND a.fetched_at <= s.fetched_at
"""

# The same feed serving an article's content unchanged in a newer fetch: the content is
# that fetch's now, so an update from a fetch between the two (a late-loading run) is
# older and does not apply. (Touches no column the search vector reads.)
_CONFIRM_CONTENT = """
UPDATE articles a SET fetched_at = s.fetched_at
FROM load_plan s
WHERE s.run_id = %(run)s AND s.decision = 'duplicate' AND a.id = s.matched_article_id
  AND a.feed_id = s.feed_id AND a.content_hash = s.article->>'content_hash'
  AND a.fetched_at < s.fetched_at
"""

# An upsert by dup_key, as an update then an insert: duplicates is partitioned by
# last_seen_at (migration 017), so dup_key is no unique key; the load lock makes this the
# only writer. A sighting moves the row to the current month's partition.
_UPSERT_DUPLICATES = """
WITH d AS (
    SELECT DISTINCT ON (dup_key) * FROM (
        SELECT md5(concat_ws('|', s.feed_id, s.article->>'identity_key', s.article->>'content_hash',
                             s.rule, m.id)) AS dup_key,
               s.feed_id, s.article->>'guid' AS guid, s.article->>'canonical_url' AS canonical_url,
               s.article->>'content_hash' AS content_hash,
               s.rule, m.id AS matched, %(run)s::text AS first_run, %(run)s::text AS last_run,
               %(now)s::timestamptz AS first_seen, %(now)s::timestamptz AS last_seen
        FROM load_plan s
        -- a batch duplicate's match is its original's id in the plan: inserted (RETURNING),
        -- updated, or relabelled a duplicate of a stored article (a lost race)
        LEFT JOIN load_plan o ON o.run_id = s.run_id AND o.feed_id = s.matched_feed_id
                             AND o.seq = s.matched_seq
        LEFT JOIN plan_new_articles n ON o.decision = 'new' AND n.feed_id = o.feed_id
                                     AND n.identity_key = o.identity_key
        LEFT JOIN articles m ON m.id = coalesce(s.matched_article_id, n.article_id, o.matched_article_id)
        WHERE s.run_id = %(run)s AND s.decision = 'duplicate'
    ) x
), seen AS (
    UPDATE duplicates t SET
        last_run_id = d.last_run, last_seen_at = d.last_seen,
        times_seen = t.times_seen + CASE WHEN t.last_run_id = d.last_run THEN 0 ELSE 1 END
    FROM d WHERE t.dup_key = d.dup_key
    RETURNING t.dup_key
)
INSERT INTO duplicates (dup_key, feed_id, guid, canonical_url, content_hash, rule,
                        matched_article_id, first_run_id, last_run_id, first_seen_at, last_seen_at)
SELECT dup_key, feed_id, guid, canonical_url, content_hash, rule, matched, first_run, last_run,
       first_seen, last_seen
FROM d WHERE d.dup_key NOT IN (SELECT dup_key FROM seen)
"""

_UPSERT_QUARANTINE = """
INSERT INTO quarantine (entry_key, feed_id, run_id, last_run_id, reasons, entry, article,
                        first_seen_at, last_seen_at, feed_language, feed_link, fetched_at)
-- one row per entry: a feed's byte-for-byte repeats of an entry are that entry, held with
-- the reasons of its first occurrence (the repeats are quarantined as its copies)
SELECT DISTINCT ON (entry_key) entry_key, feed_id, first_run, last_run, reasons, raw, article,
       first_seen, last_seen, feed_language, feed_link, fetched_at FROM (
    SELECT md5(s.feed_id::text || ':' || s.raw::text) AS entry_key, s.feed_id, s.seq,
           %(run)s::text AS first_run, %(run)s::text AS last_run, s.reasons, s.raw, s.article,
           %(now)s::timestamptz AS first_seen, %(now)s::timestamptz AS last_seen,
           s.feed_language, s.feed_link, s.fetched_at
    FROM load_plan s
    WHERE s.run_id = %(run)s AND s.decision = 'quarantined'
) q
ORDER BY entry_key, seq
ON CONFLICT (entry_key) DO UPDATE SET
    last_run_id = EXCLUDED.last_run_id, last_seen_at = EXCLUDED.last_seen_at,
    reasons = EXCLUDED.reasons,
    times_seen = quarantine.times_seen
                 + CASE WHEN quarantine.last_run_id = EXCLUDED.last_run_id THEN 0 ELSE 1 END
"""

# A release run re-ran held entries: those that now pass (loaded, or recognized as
# duplicates) leave the quarantine; those that fail again stay, with fresh reasons.
_MARK_RELEASED = """
UPDATE quarantine q SET released_at = %(now)s, released_run_id = %(run)s
FROM load_plan s
JOIN ingest_runs r ON r.run_id = s.run_id AND r.kind = 'release'
WHERE s.run_id = %(run)s AND s.decision <> 'quarantined'
  AND q.id = s.seq AND q.feed_id = s.feed_id AND q.released_at IS NULL
"""

_FEED_COUNTS = """
UPDATE fetch_log l
SET new = c.new, updated = c.updated, duplicates = c.duplicates, quarantined = c.quarantined
FROM (SELECT feed_id,
             count(*) FILTER (WHERE decision = 'new') AS new,
             count(*) FILTER (WHERE decision = 'update') AS updated,
             count(*) FILTER (WHERE decision = 'duplicate') AS duplicates,
             count(*) FILTER (WHERE decision = 'quarantined') AS quarantined
      FROM load_plan WHERE run_id = %(run)s GROUP BY feed_id) c
WHERE l.run_id = %(run)s AND l.feed_id = c.feed_id
"""

# Fetch state completed by the load, for real fetches only (not replays or releases).
# Politeness was recorded at fetch time (storage.record_fetches); what the load adds:
# * the outcome as parsing left it (a body that is no feed is an error), and the error
#   streak re-derived with it, when this run's fetch is the feed's newest (`newest`);
# * validators and the body hash only for feeds whose body was used, and the permanent
#   redirect count, only from a fetch newer than the one the row's validators came from
#   (`advancing`): an older run loading late moves nothing back.
# What the polling policy needs of each of the run's successful fetches that is its feed's
# newest (a real fetch: not a replay or a release): the entries served (none when 304 or
# the body is unchanged), how many were new and how many the feed's stored articles
# already held, their dates, and the feed's state before it.
_POLLING_OBSERVATIONS = """
SELECT l.feed_id, l.fetched_at,
       CASE WHEN l.outcome = 'ok' AND NOT l.unchanged THEN l.entries END,
       f.last_success_at, f.publish_rate, f.window_size,
       coalesce(p.new, 0), coalesce(p.overlap, 0), p.published
FROM fetch_log l
JOIN ingest_runs r ON r.run_id = l.run_id AND r.kind = 'fetch'
JOIN feeds f ON f.id = l.feed_id
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE s.decision = 'new') AS new,
           count(*) FILTER (WHERE s.decision IN ('update', 'duplicate')
                              AND (s.rule = 'same_identity_key' OR a.feed_id = s.feed_id)) AS overlap,
           array_agg((s.article ->> 'published_at')::timestamptz)
               FILTER (WHERE s.article ->> 'published_source' <> 'fetched') AS published
    FROM load_plan s LEFT JOIN articles a ON a.id = s.matched_article_id
    WHERE s.run_id = l.run_id AND s.feed_id = l.feed_id) p ON true
WHERE l.run_id = %(run)s AND l.outcome IN ('ok', 'not_modified')
  AND l.fetched_at >= coalesce(f.last_fetched_at, '-infinity')
"""

_OBSERVATIONS_PAGE = 1_000  # feeds' observations read at a time (`_adapt_polling`)

_RECORD_POLLING = """
UPDATE fetch_log l SET possible_gap = v.gap, publish_rate = v.rate, window_size = v.size,
                       poll_interval_s = v.seconds
FROM (VALUES %s) AS v(run_id, feed_id, gap, rate, size, seconds)
WHERE l.run_id = v.run_id AND l.feed_id = v.feed_id
"""

_LOCK_FEEDS = """
SELECT 1 FROM feeds WHERE id IN (SELECT feed_id FROM fetch_log WHERE run_id = %(run)s)
ORDER BY id FOR NO KEY UPDATE
"""

_FEED_STATE = """
UPDATE feeds f
SET last_fetched_at = greatest(f.last_fetched_at, l.fetched_at),
    last_status = CASE WHEN v.newest THEN l.status ELSE f.last_status END,
    last_error_kind = CASE WHEN NOT v.newest THEN f.last_error_kind
                           WHEN l.outcome = 'error' THEN l.error_kind END,
    last_error = CASE WHEN NOT v.newest THEN f.last_error WHEN l.outcome = 'error' THEN l.error END,
    -- the newest fetch succeeded: no error after it (the streak's count is for the rest)
    consecutive_errors = CASE WHEN v.newest AND l.outcome IN ('ok', 'not_modified') THEN 0
                              ELSE feed_error_streak(f.id) END,
    last_success_at = CASE WHEN l.outcome IN ('ok', 'not_modified')
                           THEN greatest(f.last_success_at, l.fetched_at) ELSE f.last_success_at END,
    -- After a successful fetch: the interval its publication rate asks for, the publisher's
    -- hints (Retry-After, Cache-Control, Expires, <ttl>, in l.next_check_at) as floors.
    next_check_at = CASE WHEN NOT v.newest THEN f.next_check_at
                         WHEN l.poll_interval_s IS NOT NULL
                         THEN greatest(l.next_check_at, l.fetched_at + make_interval(secs => l.poll_interval_s))
                         ELSE coalesce(l.next_check_at, f.next_check_at) END,
    publish_rate = CASE WHEN v.polled THEN l.publish_rate ELSE f.publish_rate END,
    window_size = CASE WHEN v.polled THEN l.window_size ELSE f.window_size END,
    poll_interval_s = CASE WHEN v.polled THEN l.poll_interval_s ELSE f.poll_interval_s END,
    hot = CASE WHEN v.polled THEN l.poll_interval_s < %(hot_interval_s)s ELSE f.hot END,
    gaps = f.gaps + l.possible_gap::int,
    etag = CASE WHEN NOT v.advancing THEN f.etag
                WHEN l.outcome = 'ok' THEN l.etag
                WHEN l.outcome = 'not_modified' THEN coalesce(l.etag, f.etag) ELSE f.etag END,
    last_modified = CASE WHEN NOT v.advancing THEN f.last_modified
                         WHEN l.outcome = 'ok' THEN l.last_modified
                         WHEN l.outcome = 'not_modified' THEN coalesce(l.last_modified, f.last_modified)
                         ELSE f.last_modified END,
    body_hash = CASE WHEN v.advancing AND l.outcome = 'ok' THEN l.body_hash ELSE f.body_hash END,
    redirect_url = CASE WHEN v.advancing THEN l.permanent_redirect ELSE f.redirect_url END,
    redirect_count = CASE WHEN NOT v.advancing THEN f.redirect_count
                          WHEN l.permanent_redirect IS NULL THEN 0
                          WHEN l.permanent_redirect = f.redirect_url THEN f.redirect_count + 1
                          ELSE 1 END,
    loaded_fetched_at = CASE WHEN v.advancing THEN l.fetched_at ELSE f.loaded_fetched_at END,
    updated_at = %(now)s
FROM fetch_log l
JOIN ingest_runs r ON r.run_id = l.run_id AND r.kind = 'fetch'
JOIN feeds g ON g.id = l.feed_id,
LATERAL (SELECT l.fetched_at >= coalesce(g.last_fetched_at, '-infinity') AS newest,
                l.fetched_at >= coalesce(g.loaded_fetched_at, '-infinity') AS advancing,
                l.poll_interval_s IS NOT NULL AS polled) v
WHERE l.run_id = %(run)s AND f.id = l.feed_id AND l.outcome <> 'disabled'
"""

# A release run's claims on the held rows it staged end with its load (released or not).
_END_CLAIMS = """
UPDATE quarantine SET claimed_run_id = NULL, claimed_at = NULL WHERE claimed_run_id = %(run)s
"""

# A permanent redirect seen on enough consecutive fetches moves the feed's URL; the old
# URL is recorded, so a feed list that still names it finds the same feed.
_MOVE_CONFIRMED = """
WITH moving AS (
    SELECT f.id, f.url AS old_url, f.redirect_url AS new_url
    FROM feeds f JOIN fetch_log l ON l.feed_id = f.id AND l.run_id = %(run)s
    WHERE f.redirect_url IS NOT NULL AND f.redirect_count >= %(confirmations)s
      AND NOT EXISTS (SELECT 1 FROM feeds o WHERE o.url = f.redirect_url)
), recorded AS (
    INSERT INTO feed_url_history (old_url, feed_id, new_url, changed_at)
    SELECT old_url, id, new_url, %(now)s FROM moving
    ON CONFLICT (old_url) DO UPDATE SET feed_id = EXCLUDED.feed_id, new_url = EXCLUDED.new_url,
                                        changed_at = EXCLUDED.changed_at
)
UPDATE feeds f SET url = m.new_url, redirect_url = NULL, redirect_count = 0
FROM moving m WHERE f.id = m.id
"""

# The run's fetched bodies whose entries are not all staged (its shard task failed after
# recording the fetch, or the staging was pruned since).
_UNSTAGED = """
SELECT l.feed_id FROM fetch_log l
WHERE l.run_id = %(run)s AND l.outcome = 'ok'
  AND (NOT l.staged OR l.entries <> (SELECT count(*) FROM staged_entries s
                                     WHERE s.run_id = l.run_id AND s.feed_id = l.feed_id))
"""
# In a fetch run, each is its feed's error in the run, its staged rows (if any) left out, so
# the load writes none of its entries and moves none of its validators or body hash; its
# next check is the fetch's time, so the next run fetches it again. The rest of the run
# loads. (The error counts in the feed's error streak.) A replay run with one is refused
# instead, so that clearing its tasks (or a new replay) replays it: the next fetch run
# would get the live feed, not that body.
UNSTAGED_ERROR = ("its entries were not staged (its shard task failed, or the staging was pruned): "
                  "none loaded, and the next run fetches the feed again")
_UNSTAGED_AS_ERRORS = f"""
WITH lost AS ({_UNSTAGED}), left_out AS (
    DELETE FROM staged_entries s USING lost WHERE s.run_id = %(run)s AND s.feed_id = lost.feed_id
)
UPDATE fetch_log l SET outcome = 'error', error_kind = 'internal_error', error = %(error)s,
                       next_check_at = l.fetched_at
FROM lost WHERE l.run_id = %(run)s AND l.feed_id = lost.feed_id
RETURNING l.feed_id
"""

_COUNTS = """
SELECT count(*) AS entries,
       count(*) FILTER (WHERE decision = 'new') AS new,
       count(*) FILTER (WHERE decision = 'update') AS updated,
       count(*) FILTER (WHERE decision = 'duplicate') AS duplicates,
       count(*) FILTER (WHERE decision = 'quarantined') AS quarantined,
       count(*) FILTER (WHERE decision IS NULL) AS undecided,
       count(*) FILTER (WHERE stale) AS stale_updates  -- duplicates now (storage.relabel_stale_updates)
FROM load_plan WHERE run_id = %(run)s
"""


# The plan's temporary tables (its documents, its cluster bands) held in the session's own
# buffers, not written out to temporary files past PostgreSQL's default 8 MB: the 1,000-feed
# bench's plan and bands take tens of MB. The buffers are taken as used, up to this, and
# only for the load's session (the setting can change only before the session's first
# temporary table: a session that had one keeps its own).
_PLAN_BUFFERS = "256MB"
_ROOM_FOR_THE_PLAN = f"""
DO $$ BEGIN
    IF pg_size_bytes(current_setting('temp_buffers')) < pg_size_bytes('{_PLAN_BUFFERS}') THEN
        PERFORM set_config('temp_buffers', '{_PLAN_BUFFERS}', true);
    END IF;
EXCEPTION WHEN invalid_parameter_value OR cant_change_runtime_param THEN NULL;
END $$
"""

# How long a load waits for another run's load to finish before it fails (and its task is
# retried): longer than any load takes, shorter than a run's timeout.
LOAD_LOCK_WAIT_S = 900


def begin(cur: Cursor, run_id: str) -> LoadCounts | None:
    """Start a run's load: take the load lock (one decider and writer at a time) and check
    the run. Returns its counts when it was loaded already (a retried load is a no-op),
    else None. A feed whose fetched entries were not all staged becomes its error in the
    run (`_UNSTAGED_AS_ERRORS`): the other feeds' entries load. Raises RunNotLoadable for
    a replay run that lost staged entries."""
    cur.execute(_ROOM_FOR_THE_PLAN)
    cur.execute("SET LOCAL lock_timeout = %s", (f"{LOAD_LOCK_WAIT_S}s",))  # bounded: then a retry
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOAD_LOCK,))
    cur.execute("SET LOCAL lock_timeout = 0")
    cur.execute("SELECT loaded_at, counts, kind FROM ingest_runs WHERE run_id = %s FOR UPDATE", (run_id,))
    row = cur.fetchone()
    if row is None:
        raise KeyError(f"unknown run {run_id}")
    loaded_at, counts, kind = row
    if loaded_at is not None:
        return LoadCounts.of(counts or {}, already_loaded=True)
    if kind == "replay":
        cur.execute(_UNSTAGED, {"run": run_id})
        if cur.fetchone() is not None:
            raise RunNotLoadable(f"replay run {run_id} lost staged entries: not loaded; replay it again")
    elif kind == "fetch":
        cur.execute(_UNSTAGED_AS_ERRORS, {"run": run_id, "error": UNSTAGED_ERROR})
        if lost := sorted(feed_id for (feed_id,) in cur.fetchall()):
            log.warning("run %s: %d feeds' fetched entries were not staged, recorded as their errors (the "
                        "next run fetches them again); the rest loads: feed ids %s", run_id, len(lost), lost[:50])
    return None


def apply_plan(
    cur: Cursor, run_id: str, now: datetime, polling: polling_policy.Rules,
    redirect_confirmations: int, version_cap: int,
) -> LoadCounts:
    """Apply the decided plan (`load_plan`, in this transaction, after `begin`); return the
    run's counts. The only writer of articles, duplicates, quarantine, versions, clusters
    and the feeds' fetch state."""
    params = {"run": run_id, "now": now, "confirmations": redirect_confirmations,
              "version_cap": version_cap}
    counts = _counts(cur, params)
    if counts.pop("undecided"):
        raise RunNotLoadable(f"run {run_id} has entries without a decision: the plan is incomplete")
    cur.execute(_INSERT_NEW, params)
    inserted = cur.rowcount
    cur.execute("ANALYZE plan_new_articles")  # for the joins that read the ids (a temporary table)
    relabelled = 0
    if inserted != counts["new"]:
        cur.execute(_RELABEL_LOST_RACES, params)
        relabelled = cur.rowcount
    if relabelled:
        storage.relabel_stale_updates(cur, run_id)
        cur.execute(_RESIGN_LOST_RACES, params)
        counts = _counts(cur, params)
        counts.pop("undecided")
    cur.execute(_KEEP_VERSIONS, params)
    counts["versions_kept"] = cur.rowcount
    cur.execute(_UPDATE_CHANGED, params)
    cur.execute(_CONFIRM_CONTENT, params)
    cur.execute(_UNWRITTEN, params)
    if unwritten := [article_id for (article_id,) in cur.fetchall()]:
        cur.execute("DELETE FROM plan_bands WHERE article_id = ANY(%s::bigint[])", (array_literal(unwritten),))
    cur.execute(_DROP_RESIGNED, params)
    cur.execute(_APPLY_SIGNATURES, params)
    cur.execute(_APPLY_LINKS, {**params, "seed": clusters.SEED})
    counts["clustered"] = sum(1 for (rule,) in cur.fetchall() if rule == clusters.RULE)
    cur.execute(_UPSERT_DUPLICATES, params)
    cur.execute(_UPSERT_QUARANTINE, params)
    cur.execute(_MARK_RELEASED, params)
    cur.execute(_END_CLAIMS, params)
    cur.execute(_FEED_COUNTS, params)
    cur.execute(_LOCK_FEEDS, params)
    counts["possible_gaps"] = _adapt_polling(cur, params, polling)
    cur.execute(_FEED_STATE, {**params, "hot_interval_s": polling.hot_interval.total_seconds()})
    cur.execute(_MOVE_CONFIRMED, params)
    loaded = LoadCounts.of(counts)
    cur.execute(
        "UPDATE ingest_runs SET loaded_at = %s, counts = %s WHERE run_id = %s",
        (now, Json(loaded.stored()), run_id),
    )
    cur.execute("DELETE FROM staged_entries WHERE run_id = %s", (run_id,))
    return loaded


def _adapt_polling(cur: Cursor, params: dict[str, Any], rules: polling_policy.Rules) -> int:
    """Each successful fetch's verdict from the polling policy (rate, interval, possible
    gap), recorded on its fetch_log row for `_FEED_STATE`. Returns the possible gaps.
    The observations (each with its entries' publication times) are read a page of feeds
    at a time, so the load's memory does not grow with the run's feeds."""
    verdicts = []
    with cur.connection.cursor(name="polling_observations") as observations:
        observations.itersize = _OBSERVATIONS_PAGE
        observations.execute(_POLLING_OBSERVATIONS, params)
        for (feed_id, fetched_at, entries, last_success, rate, window, new, overlap,
             published) in observations:
            verdict = polling_policy.adapt(polling_policy.Observation(
                fetched_at, last_success, rate, window, entries, new, overlap, published or ()),
                rules.bounds, rules.fill)
            interval = max(polling_policy.spread(verdict.interval, feed_id, first=last_success is None),
                           rules.bounds.min_interval)
            verdicts.append((feed_id, verdict.gap, verdict.rate, verdict.window, round(interval.total_seconds())))
    execute_values(cur, _RECORD_POLLING, [(params["run"], *v) for v in verdicts],
                   template="(%s, %s::bigint, %s::boolean, %s::float8, %s::int, %s::int)", page_size=1000)
    return sum(gap for _, gap, *_ in verdicts)


def _counts(cur: Cursor, params: dict[str, Any]) -> dict[str, Any]:
    cur.execute(_COUNTS, params)
    return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=False))
