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

-- Each feed's state: is it working, when did it last work, how much has it given.
CREATE OR REPLACE VIEW feed_status AS
SELECT f.id AS feed_id,
       f.url,
       f.title,
       CASE WHEN NOT f.enabled THEN 'disabled'
            WHEN f.consecutive_errors > 0 THEN 'failing'
            WHEN f.last_success_at IS NULL THEN 'never_fetched'
            ELSE 'ok' END AS status,
       f.last_success_at,
       f.consecutive_errors AS error_streak,
       f.last_error_kind,
       f.last_error,
       (SELECT count(*) FROM articles a WHERE a.feed_id = f.id) AS articles,
       (SELECT count(*) FROM quarantine q WHERE q.feed_id = f.id AND q.released_at IS NULL) AS quarantined
FROM feeds f;

-- Run history: one row per run with its counts.
CREATE OR REPLACE VIEW run_history AS
SELECT run_id, started_at, finished_at, status,
       (counts ->> 'feeds')::int        AS feeds,
       (counts ->> 'entries')::int      AS entries,
       (counts ->> 'new')::int          AS new,
       (counts ->> 'updated')::int      AS updated,
       (counts ->> 'duplicates')::int   AS duplicates,
       (counts ->> 'quarantined')::int  AS quarantined
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
       f.redirect_count AS pending_redirect_count
FROM feeds f
WHERE f.removed_at IS NULL;
