"""Staging a shard's entries: an entry that cannot be written costs that entry, not its feed
nor the shard."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from pipeline import normalize
from pipeline.database import connect
from pipeline.records import ParsedEntry
from pipeline.shard_pass import FeedBatch, StagedEntry
from pipeline.storage import staging
from tests.helpers import query

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _staged(feed_id: int, seq: int, title: str) -> StagedEntry:
    entry = ParsedEntry(feed_id, seq, {"title": "Story", "link": f"https://stage.example/{feed_id}/{seq}",
                                       "summary": "Words of the story."}, NOW, None, "https://stage.example/")
    return StagedEntry(entry, article=dataclasses.replace(normalize.normalize_entry(entry), title=title))


def test_an_article_no_json_can_carry_is_quarantined_and_the_rest_of_the_shard_stages(db_url):
    """A lone surrogate in an article (no step before staging should let one through, but
    the staging does not count on it): that entry is staged quarantined with the reason,
    its siblings and the other feed's entries with their articles."""
    run_id = f"staging-{uuid.uuid4().hex[:8]}"
    batches = [FeedBatch(9_000_001, (_staged(9_000_001, 0, "Fine"), _staged(9_000_001, 1, "Bad \ud800 title"),
                                     _staged(9_000_001, 2, "Fine too"))),
               FeedBatch(9_000_002, (_staged(9_000_002, 0, "Other feed"),))]
    try:
        with connect(db_url) as conn, conn.cursor() as cur:
            staged = staging.stage_batches(cur, run_id, batches, 3600)
        assert [b.error_kind for b in staged] == [None, None]
        rows = query(db_url, """SELECT feed_id, seq, article->>'title', decision, reasons FROM staged_entries
                                WHERE run_id = %s ORDER BY feed_id, seq""", (run_id,))
        assert [r[:4] for r in rows] == [
            (9_000_001, 0, "Fine", None), (9_000_001, 1, None, "quarantined"), (9_000_001, 2, "Fine too", None),
            (9_000_002, 0, "Other feed", None)]
        [reason] = rows[1][4]
        assert reason["column"] == "staging" and "UnicodeEncodeError" in reason["observed"]
    finally:
        with connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM staged_entries WHERE run_id = %s", (run_id,))
