-- Analytics views. Re-applied on every migrate (CREATE OR REPLACE), unlike migrations.

-- Articles per feed per day, by published time (UTC).
CREATE OR REPLACE VIEW articles_per_day AS
SELECT f.id AS feed_id,
       coalesce(f.title, f.url) AS feed,
       date_trunc('day', a.published_at AT TIME ZONE 'UTC')::date AS day,
       count(*) AS articles
FROM articles a
JOIN feeds f ON f.id = a.feed_id
GROUP BY 1, 2, 3;

DROP VIEW IF EXISTS feed_status;  -- replaced by feed_health

-- Run history: one row per run with its counts.
CREATE OR REPLACE VIEW run_history AS
SELECT run_id, started_at, finished_at, status,
       (counts ->> 'feeds')::int        AS feeds,
       (counts ->> 'entries')::int      AS entries,
       (counts ->> 'new')::int          AS new,
       (counts ->> 'updated')::int      AS updated,
       (counts ->> 'duplicates')::int   AS duplicates,
       (counts ->> 'quarantined')::int  AS quarantined,
       (counts ->> 'feeds_fetched')::int      AS feeds_fetched,       -- 200 with a body
       (counts ->> 'feeds_not_modified')::int AS feeds_not_modified,  -- 304, or the same body
       (counts ->> 'feeds_failed')::int       AS feeds_failed,
       (counts ->> 'feeds_disabled')::int     AS feeds_disabled,
       lane, deferred                                                 -- adaptive polling (014)
FROM ingest_runs;

-- Feed health: is each subscribed feed working, and if not, since when and why.
CREATE OR REPLACE VIEW feed_health AS
SELECT f.id AS feed_id,
       f.url,
       f.title,
       f.source,
       CASE WHEN NOT f.enabled THEN 'disabled'
            WHEN f.consecutive_errors > 0 THEN 'failing'
            WHEN f.last_success_at IS NULL THEN 'never_fetched'
            ELSE 'ok' END AS status,
       f.last_success_at,
       f.last_fetched_at,
       f.consecutive_errors AS error_streak,
       f.next_check_at,
       coalesce(f.disabled_reason, f.last_error) AS reason,
       f.last_error_kind,
       f.redirect_url AS pending_redirect,
       f.redirect_count AS pending_redirect_count,
       (SELECT count(*) FROM articles a WHERE a.feed_id = f.id) AS articles,
       (SELECT count(*) FROM quarantine q WHERE q.feed_id = f.id AND q.released_at IS NULL) AS quarantined,
       f.identity_rule,          -- guid, or the fallback for broken GUIDs (link, link_date, title_hash)
       f.identity_rule_reason,
       -- Adaptive polling (pipeline.polling_policy): the publication rate, the interval it
       -- asks for, whether the hot lane polls the feed, and possible gaps (fetches that
       -- shared no entry with what was stored: stories may have been missed).
       round(f.publish_rate::numeric, 3) AS publish_rate_per_hour,
       f.window_size,
       make_interval(secs => f.poll_interval_s) AS poll_interval,
       f.hot,
       f.gaps,
       (SELECT count(*) FROM fetch_log g WHERE g.feed_id = f.id AND g.possible_gap
          AND g.fetched_at > now() - interval '7 days') AS gaps_7d
FROM feeds f
WHERE f.removed_at IS NULL;

-- Feed quality over the last 30 days: shares of quarantined entries, undated articles and
-- failed fetches, and a score (100 = perfect) that multiplies them.
CREATE OR REPLACE VIEW feed_quality AS
WITH recent AS (
    SELECT feed_id, sum(entries) AS entries, sum(quarantined) AS quarantined, count(*) AS fetches,
           count(*) FILTER (WHERE outcome = 'error') AS errors
    FROM fetch_log WHERE fetched_at > now() - interval '30 days' GROUP BY feed_id
), stored AS (
    SELECT feed_id, count(*) AS articles, count(*) FILTER (WHERE published_source = 'fetched') AS undated
    FROM articles GROUP BY feed_id
), shares AS (
    SELECT f.id AS feed_id, f.url, coalesce(r.entries, 0) AS entries_30d,
           coalesce(r.quarantined, 0) AS quarantined_30d, coalesce(s.articles, 0) AS articles,
           coalesce(r.quarantined::numeric / nullif(r.entries, 0), 0) AS quarantine_share,
           coalesce(s.undated::numeric / nullif(s.articles, 0), 0) AS undated_share,
           coalesce(r.errors::numeric / nullif(r.fetches, 0), 0) AS fetch_error_share
    FROM feeds f
    LEFT JOIN recent r ON r.feed_id = f.id
    LEFT JOIN stored s ON s.feed_id = f.id
    WHERE f.removed_at IS NULL
)
SELECT feed_id, url, entries_30d, quarantined_30d, articles,
       round(quarantine_share, 4) AS quarantine_share,
       round(undated_share, 4) AS undated_share,
       round(fetch_error_share, 4) AS fetch_error_share,
       round(100 * (1 - quarantine_share) * (1 - 0.5 * undated_share) * (1 - fetch_error_share), 1) AS score
FROM shares;

-- Quality over time: each suite run with its share of successful expectations.
CREATE OR REPLACE VIEW validation_history AS
SELECT v.evaluated_at, v.run_id, v.suite, v.success, v.element_count,
       (v.statistics ->> 'success_percent')::numeric AS success_percent,
       (SELECT array_agg(r.expectation || coalesce(':' || r.column_name, '') ORDER BY r.expectation)
        FROM validation_results r WHERE r.validation_id = v.id AND NOT r.success) AS failed
FROM validation_runs v;

-- One story told by several outlets: each near-duplicate cluster with its articles,
-- outlets, first and last seen, and size.
CREATE OR REPLACE VIEW story_clusters AS
SELECT c.cluster_id,
       count(*) AS size,
       (array_agg(a.title ORDER BY a.first_seen_at, a.id))[1] AS title,
       array_agg(a.id ORDER BY a.first_seen_at, a.id) AS article_ids,
       array_agg(DISTINCT coalesce(f.title, f.url)) AS outlets,
       min(a.first_seen_at) AS first_seen,
       max(a.first_seen_at) AS last_seen
FROM article_clusters c
JOIN articles a ON a.id = c.article_id
JOIN feeds f ON f.id = a.feed_id
GROUP BY c.cluster_id;
