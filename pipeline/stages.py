"""The ingest run, stage by stage: the imperative shell around the pure stages.

Each function is one stage of one run, named by run id: it reads its input
from the database, calls the pure stage, writes its output back, commits,
and returns a small dict of counts. The Airflow DAG calls them as tasks; the
CLI calls them in the same order (`ingest`). Each is safe to retry.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import dedup, feed_identity, fetch, load, normalize, parse, storage, validate
from pipeline.config import Settings
from pipeline.containment import FAILED_ENTRY, describe, described_reason, exception_reason
from pipeline.database import connect
from pipeline.errors import EveryFeedFailed, SystemicFetchFailure, ValidationThresholdExceeded
from pipeline.expectations import FEEDS_SUITE, ROWS_SUITE
from pipeline.records import (
    Article,
    Decision,
    FeedSource,
    FeedState,
    FetchOutcome,
    FetchResult,
    ParsedEntry,
)
from pipeline.summary import build_summary

log = logging.getLogger(__name__)

# Failures of a feed's content, not of the network: they never make a run systemic.
CONTENT_ERRORS = frozenset({"parse_error", "not_a_feed", "normalize_error", "internal_error"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def shard_count(feeds: int, settings: Settings) -> int:
    """Enough shards for `shard_size` feeds each, never more than `max_shards` (<= 1024)."""
    return max(1, min(math.ceil(feeds / settings.shard_size), settings.max_shards))


def prepare_run(
    db_url: str,
    settings: Settings,
    run_id: str,
    sources: Sequence[FeedSource],
    now: datetime,
    force: bool = False,
) -> list[int]:
    """Register the feed list and plan the run: the subscribed feeds that are due (all of
    them with `force`), in shards. Returns the shard numbers to fetch."""
    with connect(db_url) as conn, conn.cursor() as cur:
        list_ids = storage.upsert_feeds(cur, sources)
        feed_ids, not_due = storage.plan_feeds(cur, list_ids, now, force)
        shards = storage.create_run(
            cur, run_id, now, feed_ids, shard_count(len(feed_ids), settings), not_due
        )
        storage.prune_stale_staging(cur, now)
        pruned = storage.prune_archive(cur, now, settings.archive_retention_days)
    log.info("run %s: %d feeds due in %d shards, %d not due yet; %d archived bodies pruned",
             run_id, len(feed_ids), shards, not_due, pruned)
    return list(range(shards))


def _disabled(feed: FeedState, now: datetime) -> FetchResult:
    return FetchResult(
        feed_id=feed.id, url=feed.url, outcome=FetchOutcome.DISABLED, fetched_at=now,
        duration_ms=0, error_kind="disabled", error=feed.disabled_reason or "disabled",
    )


def fetch_shard(
    db_url: str,
    settings: Settings,
    run_id: str,
    shard: int,
    now: datetime,
    on_result: Callable[[FetchResult], None] | None = None,
) -> dict[str, Any]:
    with connect(db_url) as conn, conn.cursor() as cur:
        feeds = storage.shard_feeds(cur, run_id, shard)
    enabled = [f for f in feeds if f.enabled]
    results = [_disabled(f, now) for f in feeds if not f.enabled]
    results += fetch.fetch_all(enabled, settings, now, on_result)
    with connect(db_url) as conn, conn.cursor() as cur:
        storage.record_fetches(cur, run_id, results)
    counts = Counter(r.outcome.value for r in results)
    for r in results:
        if r.outcome is FetchOutcome.ERROR:
            log.warning("feed_url=%s error_kind=%s error=%s", r.url, r.error_kind, r.error)
    summary = {"shard": shard, "feeds": len(feeds), **counts,
               "unchanged_bodies": sum(r.unchanged for r in results),
               "bytes": sum(len(r.body or b"") for r in results)}
    log.info("fetch shard %s: %s", shard, summary)
    return summary


def parse_shard(db_url: str, settings: Settings, run_id: str, shard: int) -> dict[str, Any]:
    """Parse each fetched body of a shard and stage its entries. A body that breaks the
    parser or the staging is its feed's error (`fetch_log`); the other feeds go on."""
    with connect(db_url) as conn, conn.cursor() as cur:
        bodies = storage.staged_bodies(cur, run_id, shard)
        counts: Counter[str] = Counter()
        for feed_id, url, body, content_type, fetched_at in bodies:
            counts.update(_parse_feed(cur, settings, run_id, feed_id, url, body, content_type, fetched_at))
    summary = {"shard": shard, "feeds": len(bodies), "entries": counts["entries"],
               "malformed_feeds_kept": counts["bozo"], "not_feeds": counts["not_feeds"],
               "failed_feeds": counts["failed"], "entries_over_cap": counts["over_cap"],
               "nuls_removed": counts["nuls_removed"],
               "parsers": {k.removeprefix("parser_"): v for k, v in counts.items() if k.startswith("parser_")}}
    log.info("parse shard %s: %s", shard, summary)
    return summary


def _parse_feed(cur: Any, settings: Settings, run_id: str, feed_id: int, url: str, body: bytes,
                content_type: str | None, fetched_at: datetime) -> Counter[str]:
    try:
        parsed = parse.parse_feed(body, url, content_type, settings.max_entries_per_feed,
                                  settings.feed_parser)
    except Exception as exc:  # noqa: BLE001 - the boundary: a body that breaks the parser is data
        return _feed_failed(cur, run_id, feed_id, url, "parse_error", f"parser raised {describe(exc)}")
    if not parsed.is_feed:
        kind = parsed.failure or "not_a_feed"
        storage.mark_parse_failure(
            cur, run_id, feed_id, kind, f"{kind.replace('_', ' ')}: {parsed.bozo_reason or 'no entries'}")
        return Counter(not_feeds=1)
    staged = [
        ParsedEntry(feed_id, seq, raw, fetched_at, parsed.language, parsed.link or url)
        for seq, raw in enumerate(parsed.entries)
    ]
    if parsed.entries_over_cap:
        log.warning("feed_url=%s: %d entries over the cap of %d counted, not staged",
                    url, parsed.entries_over_cap, settings.max_entries_per_feed)
    try:
        with storage.savepoint(cur):
            storage.stage_entries(cur, run_id, feed_id, staged)
            storage.apply_feed_hints(cur, run_id, feed_id, parsed.ttl_minutes, parsed.entries_over_cap,
                                     settings.max_interval_s, parsed.title, parsed.nuls_removed,
                                     parsed.parser)
    except Exception as exc:  # noqa: BLE001 - a row PostgreSQL refuses fails its feed only
        if storage.is_connection_error(exc):
            raise
        return _feed_failed(cur, run_id, feed_id, url, "internal_error", f"staging failed: {describe(exc)}")
    return Counter({"entries": len(staged), "bozo": parsed.bozo_reason is not None,
                    "over_cap": parsed.entries_over_cap, "nuls_removed": parsed.nuls_removed,
                    f"parser_{parsed.parser}": 1})


def _feed_failed(cur: Any, run_id: str, feed_id: int, url: str, kind: str, message: str) -> Counter[str]:
    log.warning("feed_url=%s run_id=%s error_kind=%s error=%s", url, run_id, kind, message)
    storage.mark_parse_failure(cur, run_id, feed_id, kind, message)
    return Counter(failed=1)


def normalize_shard(db_url: str, settings: Settings, run_id: str, shard: int) -> dict[str, Any]:
    """Normalize a shard's staged entries. An entry that cannot be normalized (or that the
    parser could not read) is quarantined with the exception as its reason."""
    tolerance = timedelta(hours=settings.future_tolerance_hours)
    with connect(db_url) as conn, conn.cursor() as cur:
        entries = storage.staged_raw_entries(cur, run_id, shard)
        articles: list[Article] = []
        failures: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for entry in entries:
            outcome = _normalize_entry(entry, tolerance)
            if isinstance(outcome, Article):
                articles.append(outcome)
            else:
                failures[(entry.feed_id, entry.seq)] = [outcome]
        refused = storage.set_articles(cur, run_id, articles)
        failures.update(refused)
        storage.set_quarantined(cur, run_id, failures)
    for (feed_id, seq), reasons in failures.items():
        log.warning("run_id=%s feed_id=%s entry=%s quarantined: %s", run_id, feed_id, seq,
                    reasons[0]["observed"])
    undated = sum(a.published_source == "fetched" for a in articles)
    summary = {"shard": shard, "articles": len(articles) - len(refused),
               "undated": undated, "failed_entries": len(failures)}
    log.info("normalize shard %s: %s", shard, summary)
    return summary


def _normalize_entry(entry: ParsedEntry, tolerance: timedelta) -> Article | dict[str, Any]:
    """The entry's article, or the quarantine reason why there is none."""
    if FAILED_ENTRY in entry.raw:
        return described_reason(str(entry.raw[FAILED_ENTRY]), "parse")
    try:
        return normalize.normalize_entry(entry, tolerance)
    except Exception as exc:  # noqa: BLE001 - the boundary: one bad entry is that entry's data
        return exception_reason(exc, "normalize")


def dedup_run(db_url: str, run_id: str) -> dict[str, Any]:
    """Apply each feed's identity rule (re-chosen from this fetch, except for release runs,
    which hold only some of a feed's entries), then decide new / update / duplicate. An
    entry whose identity cannot be computed is quarantined with the exception."""
    with connect(db_url) as conn, conn.cursor() as cur:
        articles = storage.staged_articles(cur, run_id)
        keyed, failures, changes = _apply_identity_rules(cur, run_id, articles)
        storage.set_quarantined(cur, run_id, failures)
        refused = storage.set_articles(cur, run_id, [new for old, new in keyed if new != old])
        storage.set_quarantined(cur, run_id, refused)
        articles = [new for _, new in keyed if (new.feed_id, new.seq) not in refused]
        index = dedup.StoredIndex.of(storage.stored_keys(cur, articles))
        verdicts = dedup.decide(articles, index)
        storage.set_decisions(cur, run_id, articles, verdicts)
    counts = Counter(v.decision.value for v in verdicts)
    rules = Counter(v.rule.value for v in verdicts if v.decision is Decision.DUPLICATE and v.rule)
    summary = {"articles": len(articles), **counts, "duplicate_rules": dict(rules),
               "identity_rule_changes": changes, "failed_entries": len(failures) + len(refused)}
    log.info("dedup: %s", summary)
    return summary


def _apply_identity_rules(
    cur: Any, run_id: str, articles: list[Article]
) -> tuple[list[tuple[Article, Article]], dict[tuple[int, int], list[dict[str, Any]]], int]:
    """(each article before and after its feed's rule, the entries that failed, rule changes)."""
    by_feed: dict[int, list[Article]] = {}
    for article in articles:
        by_feed.setdefault(article.feed_id, []).append(article)
    current = storage.identity_rules(cur, list(by_feed))
    changes = {}
    if storage.run_state(cur, run_id)["kind"] != "release":
        stored = storage.stored_guids_by_link(cur, articles)
        for feed_id, batch in by_feed.items():
            try:
                choice = feed_identity.choose(batch, current[feed_id], stored.get(feed_id, {}))
            except Exception as exc:  # noqa: BLE001 - keep the feed's rule; its entries go on
                log.warning("feed_id=%s: identity rule kept, choice failed: %s", feed_id, describe(exc))
                continue
            if choice.rule is not current[feed_id]:
                log.warning("feed_id=%s: identity rule %s -> %s (%s)", feed_id,
                            current[feed_id].value, choice.rule.value, choice.reason)
                changes[feed_id] = (current[feed_id], choice.rule, choice.reason or "")
                current[feed_id] = choice.rule
        storage.change_identity_rules(cur, run_id, changes, utcnow())
    keyed, failures = [], {}
    for article in articles:
        try:
            keyed.append((article, feed_identity.apply(article, current[article.feed_id])))
        except Exception as exc:  # noqa: BLE001 - the boundary: this entry's failure is its data
            failures[(article.feed_id, article.seq)] = [exception_reason(exc, "identity")]
    return keyed, failures, len(changes)


def validate_run(db_url: str, settings: Settings, run_id: str, now: datetime) -> dict[str, Any]:
    """Run the suites: quarantine every row that fails the row contract, check the batch
    per feed, record results in SQL and Data Docs, and judge the quarantined shares
    against the warn and fail levels. Past the fail level it raises, after committing,
    so the load that follows still lands the good rows and the quarantined ones."""
    checker = validate.validator(settings.data_dir / "gx")
    parameters = {
        "latest_published": (now + timedelta(hours=settings.future_tolerance_hours)).timestamp(),
        "max_title_chars": settings.max_title_chars,
        "max_entries": settings.max_entries_per_feed,
        "max_undated_share": settings.max_undated_share,
        "feed_fail_ratio": settings.feed_quarantine_fail_ratio,
    }
    with connect(db_url) as conn, conn.cursor() as cur:
        articles = storage.staged_articles(cur, run_id, ("new", "update"))
        rows = None
        if articles:
            rows = checker.run(ROWS_SUITE, run_id, parameters, validate.article_frame(articles))
        failures = rows.failures if rows else {}
        reasons = {
            (articles[i].feed_id, articles[i].seq): [f.to_json() for f in found]
            for i, found in failures.items()
        }
        bad_urls = [articles[i].canonical_url for i in failures if articles[i].canonical_url]
        for feed_id, seq, url in storage.batch_duplicates_of(cur, run_id, bad_urls):
            reasons.setdefault((feed_id, seq), [{"expectation": "duplicate_of_quarantined_entry",
                                                 "column": "canonical_url", "observed": url}])
        storage.set_quarantined(cur, run_id, reasons)
        per_feed = storage.feed_entry_counts(cur, run_id)
        feeds = None
        if per_feed:
            frame = validate.feed_frame([
                {"feed_id": fid, "entries": n, "undated_share": undated / n, "quarantined_share": bad / n}
                for fid, _, n, undated, bad in per_feed])
            feeds = checker.run(FEEDS_SUITE, run_id, parameters, frame, index="feed_id")
        by_expectation = Counter(r["expectation"] for rs in reasons.values() for r in rs)
        entries = sum(n for _, _, n, _, _ in per_feed)
        fail, warn = validate.judge(
            entries, len(reasons), {url: (n, bad) for _, url, n, _, bad in per_feed},
            by_expectation, _levels(settings))
        feed_problems = [f"{o.expectation}:{o.column}" for o in (feeds.expectations if feeds else ()) if not o.success]
        if feed_problems and not fail:
            warn = "; ".join(filter(None, [warn, "batch checks failed: " + ", ".join(feed_problems)]))
        docs = (rows or feeds).data_docs if (rows or feeds) else None
        for outcome in (rows, feeds):
            if outcome is not None:
                storage.record_validation(cur, run_id, outcome, now)
        storage.mark_validated(cur, run_id, now, fail, warn, docs)
    checker.prune_docs(settings.data_docs_keep)
    summary = {"entries": entries, "validated": len(articles),
               "passed": len(articles) - len(failures), "quarantined": len(reasons),
               "failed_expectations": dict(by_expectation), "data_docs": docs}
    log.info("validate: %s", summary)
    if warn:
        log.warning("validation warning: %s", warn)
    if docs:
        log.info("data docs: %s", docs)
    if fail:
        raise ValidationThresholdExceeded(fail)
    return summary


def _levels(settings: Settings) -> validate.Levels:
    return validate.Levels(settings.quarantine_warn_ratio, settings.quarantine_fail_ratio,
                           settings.feed_quarantine_warn_ratio, settings.feed_quarantine_fail_ratio,
                           settings.quarantine_min_entries)


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


def load_run(db_url: str, settings: Settings, run_id: str, now: datetime) -> dict[str, Any]:
    with connect(db_url) as conn, conn.cursor() as cur:
        counts = load.load_run(cur, run_id, now, settings.redirect_confirmations,
                               settings.versions_per_feed_per_run)
    log.info("load: %s", counts)
    return counts


def report_run(db_url: str, run_id: str, now: datetime) -> dict[str, Any]:
    """Summarize the run from what was recorded; raise when every feed failed (systemic)."""
    with connect(db_url) as conn, conn.cursor() as cur:
        state = storage.run_state(cur, run_id)
        loaded_at, validation_error = state["loaded_at"], state["validation_error"]
        summary = build_summary(storage.run_feed_outcomes(cur, run_id), state["started_at"], now)
        summary["totals"]["not_due"] = state["not_due"]
        summary["attention"] = storage.feeds_needing_attention(cur)
        summary["identity_rule_changes"] = storage.identity_rule_changes(cur, run_id)
        totals = summary["totals"]
        fetch_failures = sum(f["outcome"] == "error" and f["error_kind"] not in CONTENT_ERRORS
                             for f in summary["feeds"])
        systemic = state["kind"] == "fetch" and totals["feeds"] > totals["disabled"] and (
            fetch_failures == totals["feeds"] - totals["disabled"])
        every_feed_failed = state["kind"] == "fetch" and totals["failed"] > 0 and (
            totals["failed"] == totals["feeds"] - totals["disabled"])
        if systemic:
            status = "systemic_failure"
        elif every_feed_failed:
            status = "every_feed_failed"
        elif validation_error:
            status = "validation_failed"
        else:
            status = "ok" if loaded_at else "failed"
        summary["status"] = status
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


def _parse_and_normalize(db_url: str, settings: Settings, run_id: str, shard: int) -> None:
    parse_shard(db_url, settings, run_id, shard)
    normalize_shard(db_url, settings, run_id, shard)


class _ShardProcessor:
    """Parses and normalizes shards as they are handed in, on `settings.workers` processes
    (the DAG maps them as tasks instead). The workers are forked on entry, before this
    process starts any thread; while they work, this process, otherwise idle, imports
    Great Expectations and builds its context for the validate stage."""

    def __init__(self, db_url: str, settings: Settings, run_id: str, shards: int):
        self.args = (db_url, settings, run_id)
        workers = min(settings.workers, shards)
        self.pool = (ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
                     if workers > 1 else None)
        self.futures: list[Future[None]] = []

    def __enter__(self) -> _ShardProcessor:
        if self.pool is not None:
            self.pool.submit(int).result()  # fork every worker now, while no thread runs
        return self

    def submit(self, shard: int) -> None:
        if self.pool is None:
            _parse_and_normalize(*self.args, shard)
        else:
            self.futures.append(self.pool.submit(_parse_and_normalize, *self.args, shard))

    def __exit__(self, *exc: object) -> None:
        warm_up = threading.Thread(target=validate.validator, args=(self.args[1].data_dir / "gx",),
                                   name="gx-warm-up", daemon=True)
        warm_up.start()
        try:
            for future in self.futures:
                future.result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
            warm_up.join()


def ingest(
    db_url: str,
    settings: Settings,
    sources: Sequence[FeedSource],
    run_id: str,
    clock: Callable[[], datetime] = utcnow,
    on_fetched: Callable[[FetchResult], None] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run every stage once, in the DAG's order, and return the run summary.

    The summary's `stage_seconds` says where the time went.
    """
    seconds: dict[str, float] = {}

    @contextmanager
    def timed(stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - started, 3)

    with timed("prepare"):
        shards = prepare_run(db_url, settings, run_id, sources, clock(), force)
    with timed("fetch_parse_normalize"), _ShardProcessor(db_url, settings, run_id, len(shards)) as shard_processor:
        for shard in shards:  # each fetched shard is parsed while the next one is fetched
            with timed("fetch"):
                fetch_shard(db_url, settings, run_id, shard, clock(), on_fetched)
            shard_processor.submit(shard)
    summary = _validate_and_load(db_url, settings, run_id, clock, timed)
    summary["stage_seconds"] = seconds
    return summary


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
        generation = seen_per_feed[item[0]]
        seen_per_feed[item[0]] += 1
        if generation == len(generations):
            generations.append([])
        generations[generation].append(item)
    batch = f"replay__{clock():%Y%m%dT%H%M%S}__{uuid.uuid4().hex[:6]}"
    summaries = []
    for g, generation in enumerate(generations):
        for start in range(0, len(generation), feeds_per_run):
            items = generation[start:start + feeds_per_run]
            run_id = f"{batch}__{g}_{start // feeds_per_run}"
            now = clock()
            with connect(db_url) as conn, conn.cursor() as cur:
                feed_ids = [fid for fid, _, _, _ in items]
                shards = storage.create_run(cur, run_id, now, feed_ids,
                                            shard_count(len(feed_ids), settings), kind="replay")
                storage.stage_archived(cur, run_id, items)
            summaries.append(_process(db_url, settings, run_id, list(range(shards)), clock))
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
        feed_ids = storage.stage_held(cur, run_id, now, ids)
        storage.assign_run_feeds(cur, run_id, feed_ids)
    if not feed_ids:
        return {"run_id": run_id, "held": 0, "released": 0, "still_held": 0, "totals": {}}
    summary = _process(db_url, settings, run_id, [0], clock)
    with connect(db_url) as conn, conn.cursor() as cur:
        released, still_held = storage.release_counts(cur, run_id)
    return {"run_id": run_id, "held": released + still_held, "released": released,
            "still_held": still_held, "totals": summary["totals"]}


@contextmanager
def _untimed(stage: str) -> Iterator[None]:
    yield


def _process(db_url: str, settings: Settings, run_id: str, shards: Sequence[int],
             clock: Callable[[], datetime]) -> dict[str, Any]:
    """Every stage after fetching, for replays and releases."""
    with _ShardProcessor(db_url, settings, run_id, len(shards)) as shard_processor:
        for shard in shards:
            shard_processor.submit(shard)
    return _validate_and_load(db_url, settings, run_id, clock, _untimed)


def _validate_and_load(db_url: str, settings: Settings, run_id: str,
                       clock: Callable[[], datetime], timed: Callable[[str], Any]) -> dict[str, Any]:
    with timed("dedup"):
        dedup_run(db_url, run_id)
    breach: ValidationThresholdExceeded | None = None
    with timed("validate"):
        try:
            validate_run(db_url, settings, run_id, clock())
        except ValidationThresholdExceeded as exc:
            breach = exc  # load still lands good and quarantined rows; the run then fails
    with timed("load"):
        load_run(db_url, settings, run_id, clock())
    summary = report_run(db_url, run_id, clock())
    if breach is not None:
        raise breach
    return summary
