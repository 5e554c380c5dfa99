-- 008: the staging tables are logged, so a crash cannot empty them.
--
-- 001 made staged_fetches and staged_entries UNLOGGED, on the idea that a run can always
-- rebuild them. It cannot: PostgreSQL's crash recovery empties every unlogged table, while
-- fetch_log (logged) keeps the run's ETag, Last-Modified and body hash, and ingest_runs
-- keeps validated_at. A task retried after the crash (Airflow retries the failed task, not
-- the run) finds nothing staged, the load lands 0 entries and advances the feeds'
-- validators to bodies whose entries were never stored; the next fetch is a 304 (or an
-- unchanged body), and once the feed moves on those entries are gone for good. Logged, a
-- committed stage's output survives a crash like everything else, so the validators never
-- run ahead of the entries they describe. The WAL this costs is small next to the fetch.
-- (tests/integration/test_crash_safety.py kills the server at every stage boundary.)

ALTER TABLE staged_fetches SET LOGGED;
ALTER TABLE staged_entries SET LOGGED;
