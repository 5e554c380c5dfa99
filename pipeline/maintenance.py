"""Maintenance flows: replay archived bodies, release quarantined entries, check the
stored tables. Each makes its own run and drives it through the same tasks as an ingest
(pipeline.tasks), with no network. And the history tables' month partitions: created
ahead, dropped past their retention (the news_maintenance DAG)."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipeline import storage, validate
from pipeline.config import Settings
from pipeline.database import connect, require_schema
from pipeline.local_runner import finish
from pipeline.storage import partitions
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
    batch = f"replay__{clock():%Y%m%dT%H%M%S}__{uuid.uuid4().hex[:6]}"
    summaries = _replay_in_order(db_url, settings, archived, batch, clock, feeds_per_run)
    totals: Counter[str] = Counter()
    for summary in summaries:
        totals.update({k: v for k, v in summary["totals"].items() if isinstance(v, int)})
    return {"runs": len(summaries), "bodies": len(archived), "totals": dict(totals),
            "run_ids": [s["run_id"] for s in summaries]}


def _replay_in_order(db_url: str, settings: Settings, archived: Sequence[tuple[int, str, str, datetime]],
                     batch: str, clock: Callable[[], datetime], feeds_per_run: int) -> list[dict[str, Any]]:
    """Replay `archived` bodies (oldest first): a feed's successive bodies in successive
    runs (`<batch>__<generation>_<n>`), so updates apply in order. Run ids are derived from
    `batch`: replaying again under the same batch loads nothing twice."""
    generations: list[list[tuple[int, str, str, datetime]]] = []
    seen_per_feed: Counter[int] = Counter()
    for item in archived:
        nth = seen_per_feed[item[0]]
        seen_per_feed[item[0]] += 1
        if nth == len(generations):
            generations.append([])
        generations[nth].append(item)
    summaries = []
    for g, generation in enumerate(generations):
        for start in range(0, len(generation), feeds_per_run):
            items = generation[start:start + feeds_per_run]
            run_id = f"{batch}__{g}_{start // feeds_per_run}"
            with connect(db_url) as conn, conn.cursor() as cur:
                _, bodies = _record_replay_run(cur, settings, run_id, items, clock())
            stage_bodies(db_url, settings, run_id, bodies)
            summaries.append(finish(db_url, settings, run_id, clock))
    return summaries


def replay_interval(db_url: str, settings: Settings, run_id: str, start: datetime, end: datetime,
                    clock: Callable[[], datetime] = utcnow) -> list[int]:
    """Plan a DAG run for a past interval [start, end) (a backfill): every body archived from
    a real fetch in it goes through today's stages, in fetch order, with no network. Each
    feed's earlier bodies of the interval are replayed first, now, in runs of their own
    (`<run_id>__earlier__...`); its latest is the DAG run's own, in shards. Idempotent (a
    retried prepare replays the same runs, which load nothing twice). Returns the shards."""
    with connect(db_url) as conn, conn.cursor() as cur:
        require_schema(cur)
        archived = storage.archived_fetches(cur, start, end)
    latest = storage.latest_archived(archived)
    earlier = [item for item in archived if item not in set(latest)]
    if earlier:
        done = _replay_in_order(db_url, settings, earlier, f"{run_id}__earlier", clock, 200)
        log.info("run %s: %d earlier bodies of the interval replayed in %d runs", run_id, len(earlier), len(done))
    with connect(db_url) as conn, conn.cursor() as cur:
        shards, _ = _record_replay_run(cur, settings, run_id, latest, clock())
    log.info("run %s replays %d archived bodies fetched in [%s, %s) in %d shards",
             run_id, len(latest), start.isoformat(), end.isoformat(), shards)
    return list(range(shards))


def _record_replay_run(cur: Any, settings: Settings, run_id: str,
                       items: Sequence[tuple[int, str, str, datetime]], now: datetime
                       ) -> tuple[int, list[tuple[int, str, bytes, str | None, datetime]]]:
    """A replay run of archived `items`: its row, its feeds in shards, their bodies recorded
    as its fetches. Returns (shards, the bodies: feed_id, url, body, content type, fetched_at)."""
    feed_ids = [fid for fid, _, _, _ in items]
    shards = storage.create_run(cur, run_id, now, feed_ids, shard_count(len(feed_ids), settings), kind="replay")
    return shards, storage.record_archived(cur, run_id, items)


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
    checker.build_docs(outcomes)
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


# Partition DDL waits this long for its table's lock, then fails (the task retries) rather
# than hold up the writers queued behind it (a load, a shard recording its fetches).
LOCK_TIMEOUT = "10s"


def retention_days(settings: Settings) -> dict[str, int]:
    """Days of history kept, per partitioned table."""
    return {
        "fetch_log": settings.fetch_log_retention_days,
        "validation_results": settings.validation_retention_days,
        "duplicates": settings.duplicates_retention_days,
        "article_versions": settings.versions_retention_days,
    }


def month_of(at: datetime) -> date:
    """The first day of `at`'s UTC month."""
    return at.astimezone(UTC).date().replace(day=1)


def months_after(month: date, months: int) -> date:
    """The first day of the month `months` after `month`'s."""
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def create_partitions(db_url: str, settings: Settings, now: datetime) -> dict[str, list[str]]:
    """Create each partitioned table's partitions for `now`'s UTC month and the next
    `partition_months_ahead` (PARTITION_MONTHS_AHEAD), and for every month its DEFAULT
    partition holds rows of (moved into them, in the same transaction). Idempotent; one
    transaction per table. Returns the partitions created, by table."""
    first = month_of(now)
    last = months_after(first, settings.partition_months_ahead)
    created = {}
    for table in partitions.PARTITIONED:
        with connect(db_url) as conn, conn.cursor() as cur:
            require_schema(cur)
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
            created[table] = partitions.create_partitions(cur, table, first, last)
    log.info("partitions through %s: created %s", last, {t: names for t, names in created.items() if names})
    return created


def drop_expired_partitions(db_url: str, settings: Settings, now: datetime) -> dict[str, Any]:
    """Retention: drop each partitioned table's partitions wholly older than its retention
    (their range ends at or before `now` minus the table's days), with their rows. A month
    that still holds a row within the retention is kept whole, and the DEFAULT partition
    is never dropped (`create_partitions` moves its rows into their months' partitions,
    which this then drops when expired). Suite runs (`validation_runs`, a plain table) are
    deleted with their results' months. One transaction per table. Returns what went."""
    dropped: dict[str, Any] = {}
    for table, days in retention_days(settings).items():
        cutoff = now - timedelta(days=days)
        with connect(db_url) as conn, conn.cursor() as cur:
            require_schema(cur)
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
            dropped[table] = partitions.drop_partitions_before(cur, table, cutoff)
            if table == "validation_results":  # before the oldest month kept
                kept_from = datetime.combine(month_of(cutoff), datetime.min.time(), UTC)
                dropped["validation_runs_deleted"] = partitions.prune_validation_runs(cur, kept_from)
    log.info("retention at %s: dropped %s", now.isoformat(), dropped)
    return dropped
