-- 017: the history tables partitioned by month (README, "Retention and partitioning").
--
-- fetch_log (by fetched_at), validation_results (by evaluated_at, new here: its suite
-- run's time), duplicates (by last_seen_at) and article_versions (by replaced_at) grow
-- with every run and are only ever pruned by age. Partitioned by UTC month (native
-- declarative partitioning), retention drops a month's partition (`DROP TABLE`: no
-- DELETE, no bloat, no vacuum debt) instead of deleting rows. Each table has a DEFAULT
-- partition, so a row whose month has no partition yet (maintenance late, a clock far
-- off) is still stored; the maintenance DAG (dags/news_maintenance.py) creates the
-- coming months' partitions ahead and moves such rows into their month's partition.
--
-- What partitioning costs, and how each writer was changed for it:
-- * A unique constraint (primary key included) must contain the partition key. The
--   primary keys become (id, <key>); lookups by id alone still use them (id leads).
-- * fetch_log's UNIQUE (run_id, feed_id) cannot hold: a retried shard re-records the same
--   (run_id, feed_id) with a new fetched_at. Writers now update the run's row or insert
--   it (pipeline/storage/fetches.py, staging.py) under a lock that serializes writers of
--   the same run and feed: the run's run_feeds rows (a shard's fetches) or the run's own
--   new ingest_runs row (a replay, a release). (run_id, feed_id) is a plain index.
-- * duplicates' UNIQUE (dup_key) and article_versions' UNIQUE (article_id, version) go
--   the same way: their one writer is the load, under the load lock (pipeline/load.py),
--   which updates or inserts instead of ON CONFLICT.
-- * A foreign key *to* a partitioned table must name its partition key. None pointed at
--   these tables (the lineage columns of 015, articles.first_fetch_id and
--   content_fetch_id, name fetch_log ids without a foreign key, on purpose: pruning
--   history must not touch the articles). validation_results keeps its foreign key to
--   validation_runs, which stays a plain table (a few rows per run; pruned by DELETE
--   with its results' partitions, see pipeline/maintenance.py).
-- * Views name tables by identity: the views over these tables are dropped here and
--   created again, those of sql/views/ by the migrator right after this migration (it
--   re-creates them after every migrate), those of 016 below. The SQL functions that
--   read them (feed_error_streak, fetch_of_entry, fetch_days) name them by text and
--   need nothing.
--
-- Existing rows are copied into the new tables (one transaction, like every migration:
-- on a large fetch_log, plan for the copy's time and disk).

-- The first instant of a UTC month, given any day in it.
CREATE FUNCTION utc_month_start(day date) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT utc_day_start(date_trunc('month', day)::date) $$;

-- The partition of `parent` for the UTC month of `month`, named <table>_pYYYYMM, created
-- unless it exists; rows the DEFAULT partition holds for that month move into it, in the
-- caller's transaction (so nothing is lost: the move commits with the partition or not at
-- all). Returns the partition's name when it created one, else NULL.
CREATE FUNCTION create_month_partition(parent regclass, month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := utc_month_start(month);
    hi timestamptz := utc_month_start((date_trunc('month', month) + interval '1 month')::date);
    schema_name name;
    table_name name;
    key name;
    default_part regclass;
    part_name text;
    part text;
    moving boolean := false;
BEGIN
    SELECT n.nspname, c.relname, a.attname, nullif(p.partdefid, 0)::regclass
    INTO schema_name, table_name, key, default_part
    FROM pg_partitioned_table p
    JOIN pg_class c ON c.oid = p.partrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
    WHERE p.partrelid = parent;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a partitioned table', parent;
    END IF;
    part_name := table_name || '_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMM');
    part := format('%I.%I', schema_name, part_name);
    IF to_regclass(part) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF default_part IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= $1 AND %I < $2)', default_part, key, key)
        INTO moving USING lo, hi;
    END IF;
    IF moving THEN  -- PostgreSQL refuses a partition whose rows the DEFAULT partition holds
        EXECUTE format('CREATE TEMP TABLE partition_rows (LIKE %s)', parent);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= $1 AND %I < $2 RETURNING *)
                        INSERT INTO pg_temp.partition_rows SELECT * FROM moved', default_part, key, key)
        USING lo, hi;
    END IF;
    EXECUTE format('CREATE TABLE %s PARTITION OF %s FOR VALUES FROM (%L) TO (%L)', part, parent, lo, hi);
    IF moving THEN
        EXECUTE format('INSERT INTO %s SELECT * FROM pg_temp.partition_rows', parent);
        DROP TABLE pg_temp.partition_rows;
    END IF;
    RETURN part_name;
END
$$;

-- The partitions of `parent` for every UTC month from `first_month` to `last_month`, and
-- for every month the DEFAULT partition holds rows of (moved into them). Returns the
-- partitions created.
CREATE FUNCTION ensure_month_partitions(parent regclass, first_month date, last_month date)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    key name;
    default_part regclass;
    month date;
    created text;
    stray date[] := '{}';
BEGIN
    SELECT a.attname, nullif(p.partdefid, 0)::regclass INTO key, default_part
    FROM pg_partitioned_table p
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
    WHERE p.partrelid = parent;
    IF default_part IS NOT NULL THEN
        EXECUTE format('SELECT coalesce(array_agg(DISTINCT date_trunc(''month'', %I AT TIME ZONE ''UTC'')::date), ''{}'')
                        FROM %s WHERE isfinite(%I)', key, default_part, key)
        INTO stray;
    END IF;
    FOR month IN
        SELECT g.m::date FROM generate_series(date_trunc('month', first_month), date_trunc('month', last_month),
                                              interval '1 month') AS g(m)
        UNION SELECT unnest(stray)
        ORDER BY 1
    LOOP
        created := create_month_partition(parent, month);
        IF created IS NOT NULL THEN
            RETURN NEXT created;
        END IF;
    END LOOP;
END
$$;

-- Drop the partitions of `parent` whose range ends at or before `cutoff`: every row they
-- can hold is older than the cutoff (their bound says so, not a scan). The DEFAULT
-- partition has no range and is never dropped, nor is a partition with no upper bound.
-- Returns the partitions dropped, oldest first.
CREATE FUNCTION drop_partitions_before(parent regclass, cutoff timestamptz)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    part regclass;
    part_name text;
BEGIN
    FOR part, part_name IN
        SELECT c.oid::regclass, c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL (
            SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM $re$ TO \('([^']+)'\)$re$)::timestamptz AS upper
        ) b
        WHERE i.inhparent = parent AND b.upper <= cutoff
        ORDER BY b.upper
    LOOP
        EXECUTE format('DROP TABLE %s', part);
        RETURN NEXT part_name;
    END LOOP;
END
$$;

-- The views over the tables replaced: created again below (016's) and by the migrator
-- (sql/views/analytics.sql: feed_health, feed_quality, validation_history; absent while a
-- new database is migrated: the migrator creates them after the last migration).
DROP VIEW IF EXISTS article_lineage, daily_funnel, feed_health, feed_quality, validation_history;

-- Each table: the old one renamed, the new one with the same columns in the same order
-- (LIKE: defaults, NOT NULL and CHECK constraints; positional INSERTs keep working),
-- partitions for the months of the rows it holds and the next 3 months (the maintenance
-- DAG keeps PARTITION_MONTHS_AHEAD ahead from then on) and DEFAULT, the rows copied, the
-- old table dropped (its sequence kept: ids go on), then keys, indexes, foreign keys.

-- fetch_log, by fetched_at.
ALTER TABLE fetch_log RENAME TO fetch_log_unpartitioned;
CREATE TABLE fetch_log (LIKE fetch_log_unpartitioned INCLUDING ALL EXCLUDING INDEXES)
    PARTITION BY RANGE (fetched_at);
CREATE TABLE fetch_log_default PARTITION OF fetch_log DEFAULT;
SELECT count(*) FROM (
    SELECT create_month_partition('fetch_log', m)
    FROM (SELECT DISTINCT date_trunc('month', fetched_at AT TIME ZONE 'UTC')::date AS m
          FROM fetch_log_unpartitioned WHERE isfinite(fetched_at)
          UNION SELECT g::date FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                                     date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months',
                                                     interval '1 month') AS g
          ORDER BY 1) months) created;
INSERT INTO fetch_log SELECT * FROM fetch_log_unpartitioned;
ALTER SEQUENCE fetch_log_id_seq OWNED BY fetch_log.id;
DROP TABLE fetch_log_unpartitioned;
ALTER TABLE fetch_log
    ADD PRIMARY KEY (id, fetched_at),
    ADD FOREIGN KEY (feed_id) REFERENCES feeds ON DELETE CASCADE;
CREATE INDEX fetch_log_run_feed ON fetch_log (run_id, feed_id);  -- was UNIQUE: see above
CREATE INDEX fetch_log_feed_time ON fetch_log (feed_id, fetched_at DESC);
CREATE INDEX fetch_log_archived ON fetch_log (fetched_at) WHERE body_hash IS NOT NULL;
CREATE INDEX fetch_log_gaps ON fetch_log (feed_id, fetched_at) WHERE possible_gap;
CREATE INDEX fetch_log_fetched_at ON fetch_log (fetched_at);

-- validation_results, by evaluated_at: its suite run's time, copied from validation_runs
-- (record_validation writes it; a writer that does not gets the time of writing).
ALTER TABLE validation_results RENAME TO validation_results_unpartitioned;
ALTER TABLE validation_results_unpartitioned ADD COLUMN evaluated_at timestamptz NOT NULL DEFAULT now();
UPDATE validation_results_unpartitioned r SET evaluated_at = v.evaluated_at
FROM validation_runs v WHERE v.id = r.validation_id;
CREATE TABLE validation_results (LIKE validation_results_unpartitioned INCLUDING ALL EXCLUDING INDEXES)
    PARTITION BY RANGE (evaluated_at);
CREATE TABLE validation_results_default PARTITION OF validation_results DEFAULT;
SELECT count(*) FROM (
    SELECT create_month_partition('validation_results', m)
    FROM (SELECT DISTINCT date_trunc('month', evaluated_at AT TIME ZONE 'UTC')::date AS m
          FROM validation_results_unpartitioned WHERE isfinite(evaluated_at)
          UNION SELECT g::date FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                                     date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months',
                                                     interval '1 month') AS g
          ORDER BY 1) months) created;
INSERT INTO validation_results SELECT * FROM validation_results_unpartitioned;
DROP TABLE validation_results_unpartitioned;
ALTER TABLE validation_results
    ADD PRIMARY KEY (validation_id, expectation, column_name, evaluated_at),
    ADD FOREIGN KEY (validation_id) REFERENCES validation_runs ON DELETE CASCADE;
-- validation_runs is pruned by evaluated_at with its results' partitions.
CREATE INDEX validation_runs_evaluated_at ON validation_runs (evaluated_at);

-- duplicates, by last_seen_at: a duplicate still served stays (each sighting moves it to
-- the current month), one not seen for the retention goes with its month.
ALTER TABLE duplicates RENAME TO duplicates_unpartitioned;
CREATE TABLE duplicates (LIKE duplicates_unpartitioned INCLUDING ALL EXCLUDING INDEXES)
    PARTITION BY RANGE (last_seen_at);
CREATE TABLE duplicates_default PARTITION OF duplicates DEFAULT;
SELECT count(*) FROM (
    SELECT create_month_partition('duplicates', m)
    FROM (SELECT DISTINCT date_trunc('month', last_seen_at AT TIME ZONE 'UTC')::date AS m
          FROM duplicates_unpartitioned WHERE isfinite(last_seen_at)
          UNION SELECT g::date FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                                     date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months',
                                                     interval '1 month') AS g
          ORDER BY 1) months) created;
INSERT INTO duplicates SELECT * FROM duplicates_unpartitioned;
ALTER SEQUENCE duplicates_id_seq OWNED BY duplicates.id;
DROP TABLE duplicates_unpartitioned;
ALTER TABLE duplicates
    ADD PRIMARY KEY (id, last_seen_at),
    ADD FOREIGN KEY (feed_id) REFERENCES feeds ON DELETE CASCADE,
    ADD FOREIGN KEY (matched_article_id) REFERENCES articles ON DELETE SET NULL;
CREATE INDEX duplicates_dup_key ON duplicates (dup_key);  -- was UNIQUE: see above
CREATE INDEX duplicates_matched ON duplicates (matched_article_id);

-- article_versions, by replaced_at.
ALTER TABLE article_versions RENAME TO article_versions_unpartitioned;
CREATE TABLE article_versions (LIKE article_versions_unpartitioned INCLUDING ALL EXCLUDING INDEXES)
    PARTITION BY RANGE (replaced_at);
CREATE TABLE article_versions_default PARTITION OF article_versions DEFAULT;
SELECT count(*) FROM (
    SELECT create_month_partition('article_versions', m)
    FROM (SELECT DISTINCT date_trunc('month', replaced_at AT TIME ZONE 'UTC')::date AS m
          FROM article_versions_unpartitioned WHERE isfinite(replaced_at)
          UNION SELECT g::date FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                                     date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months',
                                                     interval '1 month') AS g
          ORDER BY 1) months) created;
INSERT INTO article_versions SELECT * FROM article_versions_unpartitioned;
ALTER SEQUENCE article_versions_id_seq OWNED BY article_versions.id;
DROP TABLE article_versions_unpartitioned;
ALTER TABLE article_versions
    ADD PRIMARY KEY (id, replaced_at),
    ADD FOREIGN KEY (article_id) REFERENCES articles ON DELETE CASCADE;
CREATE INDEX article_versions_article_version ON article_versions (article_id, version);  -- was UNIQUE

-- 016's views over these tables, as 016 made them.
CREATE VIEW daily_funnel AS
SELECT d.day, x.feed_id, coalesce(f.title, f.url) AS feed, x.stage, x.outcome, x.count
FROM fetch_days() AS d(day)
CROSS JOIN LATERAL (
    SELECT l.feed_id, s.stage, s.outcome, sum(s.n)::bigint AS count
    FROM fetch_log l
    LEFT JOIN ingest_runs r ON r.run_id = l.run_id
    CROSS JOIN LATERAL (VALUES
        ('fetch', l.outcome, CASE WHEN coalesce(r.kind, 'fetch') = 'fetch' THEN 1 END),
        ('parse', 'entries', l.entries), ('parse', 'over_cap', l.entries_dropped),
        ('load', 'new', l.new), ('load', 'updated', l.updated),
        ('load', 'duplicate', l.duplicates), ('load', 'quarantined', l.quarantined)
    ) AS s(stage, outcome, n)
    WHERE l.fetched_at >= utc_day_start(d.day) AND l.fetched_at < utc_day_start(d.day + 1)
    GROUP BY 1, 2, 3
    HAVING count(s.n) > 0) x
JOIN feeds f ON f.id = x.feed_id;

CREATE VIEW article_lineage AS
SELECT v.article_id, v.version, v.current, v.title, v.content_hash,
       v.run_id, r.kind AS run_kind, r.started_at AS run_started_at, r.status AS run_status,
       v.fetch_id, l.run_id AS fetch_run_id, l.feed_id, l.url AS fetch_url, l.fetched_at,
       l.outcome AS fetch_outcome, l.status AS http_status, l.body_hash,
       b.body_hash IS NOT NULL AS body_archived, b.size AS body_size, b.content_type AS body_content_type
FROM (SELECT id AS article_id, version, true AS current, title, content_hash,
             content_run_id AS run_id, content_fetch_id AS fetch_id
      FROM articles
      UNION ALL
      SELECT article_id, version, false, title, content_hash, content_run_id, content_fetch_id
      FROM article_versions) v
LEFT JOIN ingest_runs r ON r.run_id = v.run_id
LEFT JOIN fetch_log l ON l.id = v.fetch_id
LEFT JOIN raw_bodies b ON b.body_hash = l.body_hash;
