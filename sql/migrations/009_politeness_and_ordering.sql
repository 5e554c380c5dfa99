-- 009: politeness recorded when a feed is fetched; order kept when runs overlap.

-- A feed's error streak, derived from its fetch history (real fetches only: replays and
-- releases fetch nothing): its failed fetches since its last successful one. Derived,
-- not counted, so a fetch shard retried within a run (its fetch_log row replaced) counts
-- once, and runs recording out of order count right. `excluded_run` leaves one run out:
-- the streak a retried shard starts from. Both lookups walk fetch_log_feed_time newest
-- first and stop at the last success, so the cost follows the streak, not the history.
CREATE FUNCTION feed_error_streak(for_feed bigint, excluded_run text DEFAULT NULL)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer
    FROM fetch_log l JOIN ingest_runs r ON r.run_id = l.run_id AND r.kind = 'fetch'
    WHERE l.feed_id = for_feed AND l.outcome = 'error'
      AND l.run_id IS DISTINCT FROM excluded_run
      AND l.fetched_at > coalesce((
          SELECT s.fetched_at
          FROM fetch_log s JOIN ingest_runs sr ON sr.run_id = s.run_id AND sr.kind = 'fetch'
          WHERE s.feed_id = for_feed AND s.outcome IN ('ok', 'not_modified')
            AND s.run_id IS DISTINCT FROM excluded_run
          ORDER BY s.fetched_at DESC LIMIT 1), '-infinity')
$$;

-- The fetch whose load last advanced the feed's HTTP validators, body hash and redirect
-- count: a run whose fetch is older (a CLI ingest overlapping a DAG run) loads without
-- moving them backwards. Until now they were written only by loads, with last_fetched_at.
ALTER TABLE feeds ADD COLUMN loaded_fetched_at timestamptz;
UPDATE feeds SET loaded_fetched_at = last_fetched_at;

-- When the content an article holds was fetched: an update applies only from a fetch at
-- least as new, so a run that loads after a newer one never puts older content back.
-- Existing rows: the last real fetch of the feed before the row was last written, else
-- the time it was written. A writer that does not say (a benchmark's synthetic rows)
-- gets the time of writing: never older than what it wrote.
ALTER TABLE articles ADD COLUMN fetched_at timestamptz;
UPDATE articles a SET fetched_at = coalesce(
    (SELECT max(l.fetched_at)
     FROM fetch_log l JOIN ingest_runs r ON r.run_id = l.run_id AND r.kind = 'fetch'
     WHERE l.feed_id = a.feed_id AND l.outcome = 'ok' AND l.fetched_at <= a.updated_at),
    a.updated_at);
ALTER TABLE articles ALTER COLUMN fetched_at SET DEFAULT now(),
                     ALTER COLUMN fetched_at SET NOT NULL;

-- A release run claims the held entries it stages, so two releases at once never stage
-- the same entry. The claim ends with the claiming run's load; a claim older than the
-- claim timeout (pipeline/storage.py) is taken to be abandoned (the release crashed).
ALTER TABLE quarantine
    ADD COLUMN claimed_run_id text,
    ADD COLUMN claimed_at     timestamptz;
