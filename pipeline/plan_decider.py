"""The load's one decider: identity rules, dedup and the row contract over the staged batch,
into the load plan (pipeline.storage.plan), in the load's transaction.

One pass over the plan, in chunks of whole feeds (`CHUNK_ENTRIES` articles or so), so
that the load's memory is a bounded few chunks' (one decided, up to `RowChecks.IN_FLIGHT`
awaiting their verdicts), not the batch's, then the verdicts:

1. `decide`: each feed's identity rule (re-chosen from this fetch), then new / update /
   duplicate for each article against the stored articles' keys and the keys of the
   batch's earlier chunks (kept in the plan's transaction, `storage.decided_keys`); each
   chunk's articles planned new or updated then go to the row contract (`RowChecks`: one
   suite run per chunk, in the validation child while the next chunk is decided);
2. `validate_plan`: the chunks' results merged into the run's one result
   (`validate.merged`); rows that fail are quarantined, and so are the batch's duplicates
   of them. Then the batch-level suite per feed, and the run's verdict against the warn
   and fail levels;
3. `complete_plan`: updates from an older fetch than the stored article's content become
   duplicates; with the decisions final, each new article's id, then the new and updated
   articles' signatures and bands and each new article's cluster link with its score
   (pipeline.clusters).

The load (pipeline.load) then applies the plan.

A batch of one chunk (up to about 10,000 entries: a scheduled run of a few hundred feeds)
is decided and validated as a whole; a larger one gets the same decisions and verdicts,
and a Data Docs page per failing chunk.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pipeline import clusters, dedup, feed_identity, storage, validate
from pipeline.config import Settings
from pipeline.containment import describe, exception_reason
from pipeline.expectations import FEEDS_SUITE, ROWS_SUITE
from pipeline.free_memory import release_free_memory
from pipeline.identity import IdentityRule
from pipeline.records import Article, Decision, DedupSummary, PlannedRow, ValidationSummary

log = logging.getLogger(__name__)

CHUNK_ENTRIES = 10_000  # articles decided (and validated) at a time, in whole feeds

Reasons = dict[tuple[int, int], list[dict[str, Any]]]


class RowChecks:
    """The row contract over each chunk of the plan as soon as the decider has decided it:
    the chunk's articles planned new or updated go to the validator (`run_soon`: in the
    validation child, which checks a chunk while the decider works on the next). Up to
    `IN_FLIGHT` chunks are handed over and not yet judged at a time, so the decider goes on
    while the child is still starting Great Expectations (seconds, in a cold load task)
    and the load's memory holds a bounded few chunks' rows (a few MB each). With one, the
    decider of the 1,000-feed bench (3 chunks) waited for the child at its second chunk:
    its load took 8.25 and 7.90 s against 6.72 and 7.56 s with three (alternating runs).
    The rows go as they are, the validator builds their frame: in the child,
    so pandas never loads in the load's process (the CLI's peak 208 MB with it, 176 MB
    without, at the 1,000-feed bench). `judged` waits for the rest."""

    IN_FLIGHT = 3

    def __init__(self, settings: Settings, run_id: str, now: datetime):
        self.gx_dir = settings.data_dir / "gx"  # the context is built only for a batch to check
        self.run_id = run_id
        self.parameters = {
            "latest_published": (now + timedelta(hours=settings.future_tolerance_hours)).timestamp(),
            "max_title_chars": settings.max_title_chars,
            "max_entries": settings.max_entries_per_feed,
            "max_undated_share": settings.max_undated_share,
            "feed_fail_ratio": settings.feed_quarantine_fail_ratio,
        }
        self._pending: deque[tuple[list[tuple[int, int]], Callable[[], validate.SuiteOutcome]]] = deque()
        self.chunks: list[validate.SuiteOutcome] = []  # each chunk's outcome, without its failures
        self.reasons: Reasons = {}  # the failing rows' reasons
        self.validated = 0

    def check(self, read_rows: Callable[[], list[PlannedRow]]) -> None:
        """Hand over the rows `read_rows` gives, once there is room (read only then: the
        process never holds more than `IN_FLIGHT` chunks' rows)."""
        self.judged(keep=self.IN_FLIGHT - 1)
        planned = read_rows()
        if not planned:
            return
        keys = [(row.feed_id, row.seq) for row in planned]  # what a verdict is told by
        self._pending.append((keys, validate.validator(self.gx_dir).run_soon(
            ROWS_SUITE, self.run_id, self.parameters, planned)))

    def judged(self, keep: int = 0) -> RowChecks:
        """The chunks in flight judged, oldest first, until `keep` are left: their
        verdicts in `reasons` and `chunks` (in the order they were handed over)."""
        while len(self._pending) > keep:
            keys, outcome = self._pending.popleft()
            result = outcome()
            self.validated += len(keys)
            self.reasons.update({keys[i]: [f.to_json() for f in found] for i, found in result.failures.items()})
            self.chunks.append(dataclasses.replace(result, failures={}))
        return self


def decide(cur: Any, run_id: str, now: datetime, checks: RowChecks) -> DedupSummary:
    """Apply each feed's identity rule (re-chosen from this fetch, except for release runs,
    which hold only some of a feed's entries), then decide new / update / duplicate, into
    the load plan. An entry whose identity cannot be computed is quarantined with the
    exception. Each chunk decided goes to `checks` (the row contract), whose verdicts
    `validate_plan` applies. Returns the summary."""
    rechoose = storage.run_state(cur, run_id)["kind"] != "release"
    verdicts: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    decided = changes = failed = 0
    pending: list[tuple[int, int, str | None, str]] = []  # the last chunk's keys, for the next one
    storage.open_decided_keys(cur)
    with closing(storage.staged_article_chunks(cur, run_id, CHUNK_ENTRIES)) as chunks:
        for chunk_number, chunk in enumerate(chunks):
            if pending:
                storage.add_decided_keys(cur, pending)
            keyed, failures, changed = _apply_identity_rules(cur, run_id, chunk, rechoose, now)
            storage.set_quarantined(cur, run_id, failures)
            # `feed_identity.apply` returns the article itself when its rule changes nothing
            refused = storage.set_articles(cur, run_id, [new for old, new in keyed if new is not old])
            storage.set_quarantined(cur, run_id, refused)
            articles = [new for _, new in keyed if (new.feed_id, new.seq) not in refused]
            index = dedup.StoredIndex.of(storage.stored_keys(cur, articles))
            earlier = storage.decided_keys(cur, articles) if chunk_number else None
            chunk_verdicts = dedup.decide(articles, index, earlier)
            storage.set_decisions(cur, run_id, articles, chunk_verdicts)
            feed_ids = sorted({a.feed_id for a in chunk})
            pending = [(a.feed_id, a.seq, a.canonical_url, a.content_hash)
                       for a, v in zip(articles, chunk_verdicts, strict=True)
                       if v.decision in (Decision.NEW, Decision.UPDATE)]
            decided += len(articles)
            changes += changed
            failed += len(failures) + len(refused)
            verdicts.update(v.decision.value for v in chunk_verdicts)
            rules.update(v.rule.value for v in chunk_verdicts if v.decision is Decision.DUPLICATE and v.rule)
            del chunk, keyed, articles, index, earlier, chunk_verdicts  # before the next chunk is read
            release_free_memory()  # what the chunk freed goes back: a long load stays flat
            # the chunk's decisions are final (later chunks never change them): to the contract
            checks.check(partial(storage.planned_rows, cur, run_id, feed_ids))
    summary = DedupSummary(decided, verdicts[Decision.NEW.value], verdicts[Decision.UPDATE.value],
                           verdicts[Decision.DUPLICATE.value], dict(rules), changes, failed)
    log.info("dedup: %s", summary)
    return summary


def _apply_identity_rules(
    cur: Any, run_id: str, articles: list[Article], rechoose: bool, now: datetime,
) -> tuple[list[tuple[Article, Article]], Reasons, int]:
    """(each article before and after its feed's rule, the entries that failed, rule changes)."""
    by_feed: dict[int, list[Article]] = {}
    for article in articles:
        by_feed.setdefault(article.feed_id, []).append(article)
    current = storage.identity_rules(cur, list(by_feed))
    changes = {}
    if rechoose:
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
        storage.change_identity_rules(cur, run_id, changes, now)
    keyed, failures = [], {}
    for article in articles:
        try:
            keyed.append((article, feed_identity.apply(article, current[article.feed_id])))
        except Exception as exc:  # noqa: BLE001 - the boundary: this entry's failure is its data
            failures[(article.feed_id, article.seq)] = [exception_reason(exc, "identity")]
    _rekey_stored(cur, {feed_id: new for feed_id, (_, new, _) in changes.items()},
                  [new for _, new in keyed if new.feed_id in changes])
    return keyed, failures, len(changes)


def _rekey_stored(cur: Any, rules: dict[int, IdentityRule], entries: list[Article]) -> None:
    """The stored articles of feeds whose rule changed that this batch's `entries` (keyed
    under the new rule) are, re-keyed under it (`feed_identity.rekeyed`), before the
    feeds' entries are decided. Only those: a rule change does not rewrite a feed's history."""
    if not rules or not entries:
        return
    stored = storage.stored_identities(cur, list(rules), entries)
    claims: dict[int, dict[str, str | None]] = {}
    for entry in entries:
        claims.setdefault(entry.feed_id, {}).setdefault(entry.identity_key, entry.link)
    keys: dict[int, str] = {}
    for feed_id, rule in rules.items():
        try:
            keys.update(feed_identity.rekeyed(stored.get(feed_id, []), rule, claims.get(feed_id, {})))
        except Exception as exc:  # noqa: BLE001 - its articles keep their keys; the run goes on
            log.warning("feed_id=%s: stored articles not re-keyed: %s", feed_id, describe(exc))
    storage.set_identity_keys(cur, keys)
    if keys:
        log.info("identity rules: %d stored articles re-keyed under their feed's new rule", len(keys))


def validate_plan(cur: Any, settings: Settings, run_id: str, now: datetime, checks: RowChecks,
                  ) -> tuple[ValidationSummary, str | None, list[validate.SuiteOutcome]]:
    """Apply the row contract's verdicts (`checks`, run as the plan was decided): quarantine
    every row that fails it (and the batch's duplicates of it), check the batch per feed,
    record results in SQL, and judge the quarantined shares against the warn and fail
    levels. Returns the summary, the failure (past the fail level), which the load task
    raises once the batch is loaded, and the results whose Data Docs pages the summary
    names (`validate.docs_built_meanwhile` writes them while the plan is applied)."""
    gx_dir, parameters = checks.gx_dir, checks.parameters
    checks.judged()
    chunks, reasons, validated = checks.chunks, dict(checks.reasons), checks.validated
    rows = validate.merged(chunks) if chunks else None
    failed_rows = len(reasons)
    for feed_id, seq, url in storage.batch_duplicates_of(cur, run_id, list(reasons)):
        reasons.setdefault((feed_id, seq), [{"expectation": "duplicate_of_quarantined_entry",
                                             "column": "canonical_url", "observed": url}])
    storage.set_quarantined(cur, run_id, reasons)
    per_feed = storage.feed_entry_counts(cur, run_id)
    feeds = None
    if per_feed:
        feeds = validate.validator(gx_dir).run_rows(FEEDS_SUITE, run_id, parameters, [
            {"feed_id": fid, "entries": n, "undated_share": undated / n, "quarantined_share": bad / n}
            for fid, _, n, undated, bad in per_feed])
    by_expectation = Counter(r["expectation"] for rs in reasons.values() for r in rs)
    entries = sum(n for _, _, n, _, _ in per_feed)
    fail, warn = validate.judge(
        entries, len(reasons), {url: (n, bad) for _, url, n, _, bad in per_feed},
        by_expectation, _levels(settings))
    feed_problems = [f"{o.expectation}:{o.column}" for o in (feeds.expectations if feeds else ()) if not o.success]
    if feed_problems and not fail:
        warn = "; ".join(filter(None, [warn, "batch checks failed: " + ", ".join(feed_problems)]))
    ran = [outcome for outcome in (rows, feeds) if outcome is not None]
    with_docs = bool(ran) and (settings.data_docs == "always" or not all(o.success for o in ran))
    docs = ran[0].data_docs if with_docs else None
    for outcome in ran:
        storage.record_validation(cur, run_id, outcome, now)
    storage.mark_validated(cur, run_id, now, fail, warn, docs)
    pages: list[validate.SuiteOutcome] = []
    if with_docs:  # a page for each failing chunk (each chunk's with DATA_DOCS=always) and the feeds'
        pages = [c for c in chunks if settings.data_docs == "always" or not c.success]
        pages += [feeds] if feeds else []
    summary = ValidationSummary(entries, validated, validated - failed_rows, len(reasons),
                                dict(by_expectation), docs)
    log.info("validate: %s", summary)
    if warn:
        log.warning("validation warning: %s", warn)
    if docs:
        log.info("data docs: %s", docs)
    return summary, fail, pages


def complete_plan(cur: Any, run_id: str) -> None:
    """After `validate_plan`: updates the stored articles have made stale become duplicates
    (their content is from an older fetch), so the decisions are final; then each article
    planned new gets its id, and the new and updated articles their signatures and bands
    and the new ones their cluster links (pipeline.clusters), all in the plan."""
    stale = storage.relabel_stale_updates(cur, run_id)
    assigned = storage.assign_article_ids(cur, run_id)
    planned = clusters.plan_clusters(cur, run_id)
    log.info("plan: %d stale updates, %d new article ids, %d articles signed, %d cluster links",
             stale, assigned, planned["signed"], planned["linked"])


def _levels(settings: Settings) -> validate.Levels:
    return validate.Levels(settings.quarantine_warn_ratio, settings.quarantine_fail_ratio,
                           settings.feed_quarantine_warn_ratio, settings.feed_quarantine_fail_ratio,
                           settings.quarantine_min_entries)
