"""Storage: every SQL statement of the pipeline but the load's (pipeline.load), by concern.

Functions take an open cursor and run parameterized SQL; the caller owns the
transaction. `storage.<function>` reaches each; the modules say where it lives.
"""

from pipeline.storage.feeds import (
    feed_health,
    feeds_needing_attention,
    plan_feeds,
    remove_feed,
    shard_feeds,
    subscribed_feeds,
    upsert_feeds,
)
from pipeline.storage.fetches import (
    archive_bodies,
    archived_fetches,
    latest_archived,
    possible_gaps,
    prune_archive,
    record_archived,
    record_fetches,
    shard_archived_bodies,
)
from pipeline.storage.plan import (
    batch_duplicates_of,
    change_identity_rules,
    feed_entry_counts,
    identity_rule_changes,
    identity_rules,
    open_plan,
    plan_decided,
    set_articles,
    set_decisions,
    set_quarantined,
    staged_articles,
    stored_guids_by_link,
    stored_keys,
)
from pipeline.storage.quarantine import quarantined_entries, quarantined_entry
from pipeline.storage.runs import (
    STALE_STAGING,
    article_count,
    assign_run_feeds,
    create_run,
    finish_run,
    prune_stale_staging,
    release_counts,
    run_feed_outcomes,
    run_state,
    run_summary,
)
from pipeline.storage.staging import CLAIM_TIMEOUT, claim_held, has_staged_entries, stage_batches
from pipeline.storage.transactions import PAGE, dict_rows, is_connection_error, savepoint
from pipeline.storage.validation import mark_validated, record_validation

__all__ = [
    "CLAIM_TIMEOUT",
    "PAGE",
    "STALE_STAGING",
    "archive_bodies",
    "possible_gaps",
    "latest_archived",
    "shard_archived_bodies",
    "archived_fetches",
    "article_count",
    "assign_run_feeds",
    "batch_duplicates_of",
    "change_identity_rules",
    "claim_held",
    "create_run",
    "dict_rows",
    "feed_entry_counts",
    "feed_health",
    "feeds_needing_attention",
    "has_staged_entries",
    "finish_run",
    "identity_rule_changes",
    "identity_rules",
    "is_connection_error",
    "mark_validated",
    "open_plan",
    "plan_decided",
    "plan_feeds",
    "prune_archive",
    "prune_stale_staging",
    "quarantined_entries",
    "quarantined_entry",
    "record_archived",
    "record_fetches",
    "record_validation",
    "release_counts",
    "remove_feed",
    "run_feed_outcomes",
    "run_state",
    "run_summary",
    "savepoint",
    "set_articles",
    "set_decisions",
    "set_quarantined",
    "shard_feeds",
    "stage_batches",
    "staged_articles",
    "stored_guids_by_link",
    "stored_keys",
    "subscribed_feeds",
    "upsert_feeds",
]
