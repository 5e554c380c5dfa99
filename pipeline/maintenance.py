"""Maintenance flows: replay archived bodies, release quarantined entries, check the
stored tables. Each makes its own run and drives it through the same tasks as an ingest
(pipeline.tasks), with no network."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pipeline import storage, validate
from pipeline.config import Settings
from pipeline.database import connect
from pipeline.local_runner import finish
from pipeline.tasks import shard_count, stage_bodies, stage_entries, utcnow

log = logging.getLogger(__name__)


def replay(
    db_url: str,
    settings: Settings,
    since: datetime,
    clock: Callable[[], datetime] = utcnow,
    feeds_per_run: int = 200,
) -> dict[str, Any]:
    """Push archived bodies fetched since `since` through today's parse, normalize, dedup,
    validate and load, with no network. Idempotent: replaying twice adds nothing the first
    replay did not. A feed's successive bodies go to successive runs, oldest first, so
    updates apply in order. Feed fetch state is left alone."""
    with connect(db_url) as conn, conn.cursor() as cur:
        archived = storage.archived_fetches(cur, since)
    generations: list[list[tuple[int, str, str, datetime]]] = []
    seen_per_feed: Counter[int] = Counter()
    for item in archived:
        nth = seen_per_feed[item[0]]
        seen_per_feed[item[0]] += 1
        if nth == len(generations):
            generations.append([])
        generations[nth].append(item)
    batch = f"replay__{clock():%Y%m%dT%H%M%S}__{uuid.uuid4().hex[:6]}"
    summaries = []
    for g, generation in enumerate(generations):
        for start in range(0, len(generation), feeds_per_run):
            items = generation[start:start + feeds_per_run]
            run_id = f"{batch}__{g}_{start // feeds_per_run}"
            now = clock()
            with connect(db_url) as conn, conn.cursor() as cur:
                feed_ids = [fid for fid, _, _, _ in items]
                storage.create_run(cur, run_id, now, feed_ids, shard_count(len(feed_ids), settings),
                                   kind="replay")
                bodies = storage.record_archived(cur, run_id, items)
            stage_bodies(db_url, settings, run_id, bodies)
            summaries.append(finish(db_url, settings, run_id, clock))
    totals: Counter[str] = Counter()
    for summary in summaries:
        totals.update({k: v for k, v in summary["totals"].items() if isinstance(v, int)})
    return {"runs": len(summaries), "bodies": len(archived), "totals": dict(totals),
            "run_ids": [s["run_id"] for s in summaries]}


def release_quarantined(
    db_url: str,
    settings: Settings,
    ids: Sequence[int] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> dict[str, Any]:
    """Re-run today's normalize, dedup, validate and load on held quarantined entries (all
    of them, or `ids`). Those that now pass leave the quarantine and load exactly once;
    the rest stay held with fresh reasons."""
    now = clock()
    run_id = f"release__{now:%Y%m%dT%H%M%S}__{uuid.uuid4().hex[:6]}"
    with connect(db_url) as conn, conn.cursor() as cur:
        storage.create_run(cur, run_id, now, [], 1, kind="release")
        held = storage.claim_held(cur, run_id, now, ids)
        storage.assign_run_feeds(cur, run_id, sorted({e.feed_id for e in held}))
    if not held:
        return {"run_id": run_id, "held": 0, "released": 0, "still_held": 0, "totals": {}}
    stage_entries(db_url, settings, run_id, held)
    summary = finish(db_url, settings, run_id, clock)
    with connect(db_url) as conn, conn.cursor() as cur:
        released, still_held = storage.release_counts(cur, run_id)
    return {"run_id": run_id, "held": released + still_held, "released": released,
            "still_held": still_held, "totals": summary["totals"]}


def check_table(db_url: str, settings: Settings, run_id: str, now: datetime) -> dict[str, Any]:
    """Validate the stored tables (not a batch) and record the results like any suite run."""
    checker = validate.validator(settings.data_dir / "gx")
    checker.prepare_table_checks(db_url)
    parameters = {"latest_published": (now + timedelta(hours=settings.future_tolerance_hours)).timestamp()}
    outcomes = [checker.run(suite, run_id, parameters, index="id") for suite in validate.TABLE_SUITES]
    with connect(db_url) as conn, conn.cursor() as cur:
        for outcome in outcomes:
            storage.record_validation(cur, run_id, outcome, now)
    checker.prune_docs(settings.data_docs_keep)
    result = {
        "success": all(o.success for o in outcomes),
        "failed": [f"{o.suite}: {e.expectation} on {e.column} ({e.unexpected_count} rows)"
                   for o in outcomes for e in o.expectations if not e.success],
        "articles": outcomes[0].element_count,
        "data_docs": outcomes[0].data_docs,
    }
    log.info("table checks: %s", result)
    return result
