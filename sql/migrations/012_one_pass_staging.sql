-- One pass per shard (issue: one pass per shard, one decider, one writer): a shard's task
-- fetches, parses and normalizes in memory and stages its entries once. The fetched body
-- no longer waits in staged_fetches for a parse task (it is archived in raw_bodies, from
-- which a replay parses it again), so that table goes.
--
-- `staged` marks a fetch whose entries were staged (with `entries` their count). The load
-- refuses a run with an 'ok' fetch that is not staged, or whose staged rows are fewer
-- than `entries` (a task that died between recording its fetches and staging their
-- entries, or staging pruned as abandoned): loading would advance the feed's validators
-- past entries that were never stored.
ALTER TABLE fetch_log ADD COLUMN staged boolean NOT NULL DEFAULT false;
DROP TABLE IF EXISTS staged_fetches;
