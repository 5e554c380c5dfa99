"""The DAG's tasks, one function each: the imperative shell around the pure stages.

A run is `prepare_run` (plan the shards), `ingest_shard` per shard (fetch, parse and
normalize in one pass, in memory; stage the entries once), `load_batch` (decide new /
update / duplicate / quarantined for the whole batch, validate it, load it) and
`report_run`. Each reads its input from the database by run id, writes its output,
commits, and returns a small typed summary. The Airflow DAG calls them as tasks; the
CLI's runner (pipeline.local_runner) calls the same functions. Each is safe to retry.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any
from urllib.parse import urlsplit

from pipeline import fetch, load, plan_decider, polling_policy, storage, validate
from pipeline.config import Settings
from pipeline.database import connect, require_schema
from pipeline.errors import EveryFeedFailed, RunNotLoadable, SystemicFetchFailure, ValidationThresholdExceeded
from pipeline.records import (
    DedupSummary,
    FeedSource,
    FeedState,
    FetchOutcome,
    FetchResult,
    LoadCounts,
    ValidationSummary,
)
from pipeline.shard_pass import FeedBatch, PassCounts, normalize_staged, parse_and_normalize
from pipeline.summary import build_summary

log = logging.getLogger(__name__)

# Failures of a feed's content, not of the network: they never make a run systemic.
CONTENT_ERRORS = frozenset({"parse_error", "not_a_feed", "normalize_error", "internal_error"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def shard_count(feeds: int, settings: Settings, parallel: int = 1) -> int:
    """Enough shards for `shard_size` feeds each; for `parallel` processes (the CLI's pool,
    which hands a shard to a worker as it frees up), at least `SHARDS_PER_WORKER` each, in
    a multiple of `parallel` (unless the feeds or the cap are fewer): shards are equal in
    feeds, not in work (a feed of a few MB beside feeds of a few kB), and a worker that
    draws a heavy shard is caught up with by the others' next ones. Never more than the
    feeds nor `max_shards` (<= 1024). (A DAG maps a task per shard, each paying Airflow's
    start-up: it asks for `shard_size` only.)"""
    wanted, cap = math.ceil(feeds / settings.shard_size), settings.max_shards
    if parallel > 1:
        wanted = math.ceil(max(wanted, SHARDS_PER_WORKER * parallel) / parallel) * parallel
        cap = cap // parallel * parallel or cap  # the cap too, where it allows a multiple
    return max(1, min(wanted, feeds, cap))


# Shards per CLI worker at least: with 250-feed shards, 1,000 feeds of ../shared's
# bench-feeds (225 MB, a few feeds of MBs) took the CLI's shards 63 s in 4 shards and 48 s
# in 10 (bench.scale, 2026-12-07); the news-feeds bench took 8.1 s either way.
SHARDS_PER_WORKER = 5


LANES = ("all", "hot")


def prepare_run(
    db_url: str,
    settings: Settings,
    run_id: str,
    sources: Sequence[FeedSource],
    now: datetime,
    force: bool = False,
    lane: str = "all",
    parallel: int = 1,
) -> list[int]:
    """Register the feed list and plan the run: the subscribed feeds that are due (all of
    them with `force`; in the "hot" lane, only hot feeds), in shards (`shard_count`: a
    multiple of `parallel`, the CLI's worker processes). When more are due than
    `run_max_feeds`, the most urgent go first, fairly across hosts, and the rest are
    deferred to the next run. Returns the shard numbers to fetch."""
    if lane not in LANES:
        raise ValueError(f"lane must be one of {LANES}, got {lane!r}")
    with connect(db_url) as conn, conn.cursor() as cur:
        require_schema(cur)
        list_ids = storage.upsert_feeds(cur, sources)
        candidates, not_due = storage.plan_feeds(cur, list_ids, now, force, hot_only=lane == "hot")
        taken, deferred = polling_policy.rank_due(
            [polling_policy.DueFeed(c.id, urlsplit(c.url).hostname or c.url, polling_policy.urgency(
                now, c.last_fetched_at,
                timedelta(seconds=c.poll_interval_s) if c.poll_interval_s else None))
             for c in candidates if c.enabled], settings.run_max_feeds)
        feed_ids = [c.id for c in candidates if not c.enabled] + taken
        shards = storage.create_run(
            cur, run_id, now, feed_ids, shard_count(len(feed_ids), settings, parallel), not_due,
            lane=lane, deferred=len(deferred))
        storage.prune_stale_staging(cur, now)
        pruned = storage.prune_archive(cur, now, settings.archive_retention_days)
    log.info("run %s (%s lane): %d feeds due in %d shards, %d deferred, %d not due yet; "
             "%d archived bodies pruned", run_id, lane, len(feed_ids), shards, len(deferred),
             not_due, pruned)
    return list(range(shards))


def _disabled(feed: FeedState, now: datetime) -> FetchResult:
    return FetchResult(
        feed_id=feed.id, url=feed.url, outcome=FetchOutcome.DISABLED, fetched_at=now,
        duration_ms=0, error_kind="disabled", error=feed.disabled_reason or "disabled",
    )


@dataclass(frozen=True)
class ShardSummary:
    """What one shard's pass did."""

    shard: int
    feeds: int
    fetched: dict[str, int]  # by outcome: ok, not_modified, error, disabled
    unchanged_bodies: int
    bytes: int
    entries: int
    articles: int
    failed_entries: int
    failed_feeds: int
    not_feeds: int
    malformed_feeds_kept: int
    entries_over_cap: int
    nuls_removed: int
    parsers: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest_shard(
    db_url: str,
    settings: Settings,
    run_id: str,
    shard: int,
    now: datetime,
    on_result: Callable[[FetchResult], None] | None = None,
) -> ShardSummary:
    """Fetch a shard's feeds and, as the bodies arrive, parse and normalize them in memory
    and stage the entries once, a group of bodies at a time (`_arrival_groups`) while the
    next group is fetched. Each fetch's outcome (and the feed's politeness: errors,
    backoff, Retry-After, 410) is recorded, with its group, before the group is parsed, so
    it holds whatever happens to the rest of the pass; the bodies are archived with it, so
    a parse can be redone from the archive. A body or an entry that breaks a step is its feed's error
    or its entry's quarantine reason; the other feeds go on."""
    with connect(db_url) as conn, conn.cursor() as cur:
        state = storage.run_state(cur, run_id)
        if state["loaded_at"] is not None:  # a cleared shard of a loaded run: nothing would load it
            raise RunNotLoadable(f"run {run_id} was loaded already: its shard {shard} stages nothing; "
                                 "the next run fetches what it lost")
        if state["kind"] == "replay":  # a past interval: from the archive
            archived = storage.shard_archived_bodies(cur, run_id, shard)
        else:
            archived = None
            feeds = storage.shard_feeds(cur, run_id, shard)
    if archived is not None:
        archived_feeds, archived_bytes = len(archived), sum(len(b) for _, _, b, _, _ in archived)
        counts = stage_bodies(db_url, settings, run_id, archived)  # empties `archived`
        return ShardSummary(shard=shard, feeds=archived_feeds, fetched={"archived": archived_feeds},
                            unchanged_bodies=0, bytes=archived_bytes,
                            **{**asdict(counts), "parsers": dict(counts.parsers)})
    fetched: Counter[str] = Counter()
    unchanged = size = 0
    counts = PassCounts()
    # closed however the pass ends: a failure here stops the fetch (no thread goes on)
    with closing(fetch.fetch_each([f for f in feeds if f.enabled], settings, now, db_url=db_url)) as fetching, \
            connect(db_url) as conn, conn.cursor() as cur:
        arriving = chain((_disabled(f, now) for f in feeds if not f.enabled), fetching)
        for group in _arrival_groups(arriving, on_result):
            storage.record_fetches(cur, run_id, group)
            conn.commit()  # each outcome (and politeness) holds whatever happens to the rest
            for result in group:
                fetched[result.outcome.value] += 1
                unchanged += result.unchanged
                size += len(result.body or b"")
                if result.outcome is FetchOutcome.ERROR:
                    log.warning("feed_url=%s error_kind=%s error=%s", result.url, result.error_kind,
                                result.error)
            bodies = [(r.feed_id, r.final_url or r.url, r.body, r.content_type, r.fetched_at)
                      for r in group if r.outcome is FetchOutcome.OK and r.body is not None]
            group.clear()  # each body is now held by `bodies` alone, which staging empties:
            del result  # not by the group, nor by the loop's last result
            _stage_groups(cur, run_id, _parsed_groups(bodies, settings), settings, counts)
            conn.commit()
    summary = ShardSummary(
        shard=shard, feeds=len(feeds), fetched=dict(fetched), unchanged_bodies=unchanged, bytes=size,
        **{**asdict(counts), "parsers": dict(counts.parsers)})
    log.info("shard %s: %s", shard, summary)
    return summary


def _arrival_groups(results: Iterable[FetchResult], on_result: Callable[[FetchResult], None] | None,
                    ) -> Iterator[list[FetchResult]]:
    """The results as they arrive, in groups of about `STAGE_GROUP_BYTES` of bodies: each
    group is recorded and staged while the next is fetched, so a shard holds one group's
    bodies (and the few the fetch hands over meanwhile), whatever it fetches in all."""
    group: list[FetchResult] = []
    size = 0
    for result in results:
        if on_result is not None:
            on_result(result)
        group.append(result)
        size += len(result.body or b"")
        del result  # the group alone holds it: the caller empties the group to free the bodies
        if size >= STAGE_GROUP_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


# Body bytes parsed and normalized before their entries are staged: a shard's memory is
# that of one group's entries (several times its bytes, as Python objects), whatever the
# shard holds. Also the size of the groups of arriving results a shard records at once.
STAGE_GROUP_BYTES = 8 << 20
# Entries parsed and normalized before they are staged: a group's memory follows its
# entries (their texts and HTML) more than its bytes, and 8 MB of a feed of short items
# holds thousands. A body's entries (at most `FETCH_MAX_ENTRIES`) are never split.
STAGE_GROUP_ENTRIES = 2_000


def stage_bodies(db_url: str, settings: Settings, run_id: str,
                 bodies: list[tuple[int, str, bytes, str | None, datetime]]) -> PassCounts:
    """Parse and normalize bodies (feed_id, url to resolve against, body, content type,
    fetched_at) in memory and stage what they gave, in one transaction: in groups
    (`_parsed_groups`), each staged before the next is parsed. Takes the
    bodies out of `bodies` as it goes (the list is empty afterwards), so a body the
    caller no longer holds is freed once parsed."""
    return _stage(db_url, settings, run_id, _parsed_groups(bodies, settings))


def _parsed_groups(bodies: list[tuple[int, str, bytes, str | None, datetime]],
                   settings: Settings) -> Iterator[list[FeedBatch]]:
    """The bodies, taken from the list in the order given, parsed and normalized in groups
    of about `STAGE_GROUP_BYTES` of bodies and at most about `STAGE_GROUP_ENTRIES` entries
    (a larger body is a group of its own)."""
    tolerance = timedelta(hours=settings.future_tolerance_hours)
    bodies.reverse()  # popped from the end: in the order given
    while bodies:
        group: list[FeedBatch] = []
        size = entries = 0
        while bodies and (not group or (size + len(bodies[-1][2]) <= STAGE_GROUP_BYTES
                                        and entries < STAGE_GROUP_ENTRIES)):
            fid, url, body, ctype, at = bodies.pop()
            size += len(body)
            group.append(parse_and_normalize(fid, url, body, ctype, at, settings.max_entries_per_feed,
                                             settings.feed_parser, tolerance))
            entries += len(group[-1].entries)
        del body  # the group's last body is not held while the group is staged
        yield group


def stage_entries(db_url: str, settings: Settings, run_id: str, entries: Sequence[Any]) -> PassCounts:
    """Normalize already parsed entries (a release's held rows) and stage them."""
    tolerance = timedelta(hours=settings.future_tolerance_hours)
    by_feed: dict[int, list[Any]] = {}
    for entry in entries:
        by_feed.setdefault(entry.feed_id, []).append(normalize_staged(entry, tolerance))
    return _stage(db_url, settings, run_id, [[FeedBatch(fid, tuple(staged)) for fid, staged in by_feed.items()]])


def _stage(db_url: str, settings: Settings, run_id: str, groups: Iterable[list[FeedBatch]]) -> PassCounts:
    """Stage each group of batches as it comes, all in one transaction; return what was staged."""
    counts = PassCounts()
    with connect(db_url) as conn, conn.cursor() as cur:
        _stage_groups(cur, run_id, groups, settings, counts)
    return counts


def _stage_groups(cur: Any, run_id: str, groups: Iterable[list[FeedBatch]], settings: Settings,
                  counts: PassCounts) -> None:
    """Stage each group of batches as it comes (`_parsed_groups` parses one when asked),
    adding what was staged to `counts`."""
    for group in groups:
        for batch in storage.stage_batches(cur, run_id, group, settings.max_interval_s):
            counts.add(batch)
            _log_failures(run_id, batch)


def _log_failures(run_id: str, batch: FeedBatch) -> None:
    if batch.error_kind:
        log.warning("feed_id=%s run_id=%s error_kind=%s error=%s", batch.feed_id, run_id,
                    batch.error_kind, batch.error)
    for staged in batch.entries:
        if staged.article is None and staged.reasons:
            log.warning("run_id=%s feed_id=%s entry=%s quarantined: %s", run_id, batch.feed_id,
                        staged.entry.seq, staged.reasons[0].get("observed"))


def end_validation(settings: Settings) -> None:
    """End the validation child process a load started (`validate.warm_up`). A task calls
    it when its load is done; the child also exits by itself when its parent ends."""
    validate.close(settings.data_dir / "gx")


def _lost_to_a_task(feed: dict[str, Any]) -> bool:
    """A feed of the run that its shard's failure took, not its own fetch or content: never
    fetched, or fetched but not staged (`load.UNSTAGED_ERROR`)."""
    return feed["outcome"] == "error" and feed["error"] in (storage.NOT_FETCHED, load.UNSTAGED_ERROR)


def _task_order(task: str) -> list[Any]:
    """`ingest_shard_2` before `ingest_shard_10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", task)]


def report_run(db_url: str, run_id: str, now: datetime, failed_tasks: Sequence[str] = ()) -> dict[str, Any]:
    """Summarize the run from what was recorded, and record its status; raise when every
    feed failed (systemic). `failed_tasks` are the run's tasks that failed (a shard, say):
    a run that loaded the rest is then `tasks_failed`, not `ok`, and names them; so is one
    whose feeds a failed task took (`_lost_to_a_task`), whoever reports it. Those feeds
    are left out of the feed verdicts: a failed shard is not every feed failing, nor a
    network down."""
    with connect(db_url) as conn, conn.cursor() as cur:
        state = storage.run_state(cur, run_id)
        loaded_at, validation_error = state["loaded_at"], state["validation_error"]
        summary = build_summary(storage.run_feed_outcomes(cur, run_id), state["started_at"], now)
        summary["totals"]["not_due"] = state["not_due"]
        summary["totals"]["deferred"] = state["deferred"]
        summary["lane"] = state["lane"]
        gaps = storage.possible_gaps(cur, run_id)
        summary["totals"]["possible_gaps"] = len(gaps)
        summary["possible_gaps"] = gaps
        summary["polling_warning"] = _polling_warning(gaps, state["deferred"])
        summary["attention"] = storage.feeds_needing_attention(cur)
        summary["identity_rule_changes"] = storage.identity_rule_changes(cur, run_id)
        totals = summary["totals"]
        own = [f for f in summary["feeds"] if not _lost_to_a_task(f)]  # judged by their own outcome
        lost = totals["lost_to_tasks"] = len(summary["feeds"]) - len(own)
        judged = totals["feeds"] - totals["disabled"] - lost
        fetch_failures = sum(f["outcome"] == "error" and f["error_kind"] not in CONTENT_ERRORS for f in own)
        systemic = state["kind"] == "fetch" and judged > 0 and fetch_failures == judged
        every_feed_failed = state["kind"] == "fetch" and judged > 0 and totals["failed"] - lost == judged
        if systemic:
            status = "systemic_failure"
        elif every_feed_failed:
            status = "every_feed_failed"
        elif validation_error:
            status = "validation_failed"
        elif not loaded_at:
            status = "failed"
        else:
            status = "tasks_failed" if failed_tasks or lost else "ok"
        summary["status"] = status
        summary["failed_tasks"] = sorted(failed_tasks, key=_task_order)
        summary["run_id"] = run_id
        summary["validation_error"] = validation_error
        summary["validation_warning"] = state["validation_warning"]
        summary["data_docs"] = state["data_docs"]
        storage.finish_run(cur, run_id, now, status, summary)
    log.info("run %s: %s", run_id, totals)
    if systemic:
        raise SystemicFetchFailure(
            f"all {totals['failed']} feeds failed to fetch: a systemic fault (network, DNS or "
            f"proxy down?), not a feed problem; first error: {summary['feeds'][0]['error']}"
        )
    if every_feed_failed:
        raise EveryFeedFailed(
            f"all {totals['failed']} feeds failed (at fetch or in their content), so nothing was "
            f"loaded; first error: {summary['feeds'][0]['error_kind']}: {summary['feeds'][0]['error']}")
    return summary


def _polling_warning(gaps: list[str], deferred: int) -> str | None:
    """What the run's polling may have missed: feeds whose fetch shared no entry with what
    was stored (their intervals are shortened), and due feeds left to the next run."""
    parts = []
    if gaps:
        shown = ", ".join(gaps[:5]) + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
        parts.append(f"{len(gaps)} feeds may have missed entries (every entry fetched was new; "
                     f"polled sooner from now): {shown}")
    if deferred:
        parts.append(f"{deferred} due feeds deferred to the next run (RUN_MAX_FEEDS)")
    return "; ".join(parts) or None


@dataclass(frozen=True)
class LoadSummary:
    """What the load task decided and wrote (a retried load of a loaded run: its counts only)."""

    load: LoadCounts
    dedup: DedupSummary = field(default_factory=DedupSummary)
    validate: ValidationSummary = field(default_factory=ValidationSummary)
    data_docs: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_batch(db_url: str, settings: Settings, run_id: str, clock: Callable[[], datetime] = utcnow,
               validation_child: bool = False) -> LoadSummary:
    """The run's one decider and writer, in one transaction under the load lock: the
    staged entries are copied into the plan; identity rules and dedup decide new / update
    / duplicate; the suites quarantine what fails them; stale updates become duplicates, new
    articles get their ids and cluster links; the plan is applied. Past the
    validation fail level the good and quarantined rows still land, and then it raises
    `ValidationThresholdExceeded` (terminal). A retried load of a loaded run is a no-op."""
    gx_dir = settings.data_dir / "gx"
    # A batch to validate: Great Expectations starts up while the decider works. With
    # `validation_child` (a DAG's load task and the CLI, which call `end_validation` when
    # done) in a child process, forked while this process has no connection open, so that
    # it holds no part of a session; else in a thread.
    with connect(db_url) as conn, conn.cursor() as cur:
        to_validate = storage.has_staged_entries(cur, run_id)
    if to_validate:
        validate.warm_up(gx_dir, in_child=validation_child)
    with connect(db_url) as conn, conn.cursor() as cur:
        done = load.begin(cur, run_id)
        if done is not None:
            return LoadSummary(done)
        storage.open_plan(cur, run_id)
        checks = plan_decider.RowChecks(settings, run_id, clock())
        decided = plan_decider.decide(cur, run_id, clock(), checks)
        validated, fail, pages = plan_decider.validate_plan(cur, settings, run_id, clock(), checks)
        storage.plan_decided(cur)
        with validate.docs_built_meanwhile(gx_dir, pages, settings.data_docs_keep):
            plan_decider.complete_plan(cur, run_id)
            loaded = load.apply_plan(cur, run_id, clock(), fetch.polling_rules(settings),
                                     settings.redirect_confirmations, settings.versions_per_feed_per_run)
    log.info("load: %s", loaded)
    if fail:
        raise ValidationThresholdExceeded(fail)
    return LoadSummary(loaded, decided, validated, validated.data_docs)
