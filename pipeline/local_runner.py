"""The CLI's runner: one run through the same tasks as the DAG, in this process and a pool.

`prepare_run`, then `ingest_shard` for every shard on `settings.workers` processes (the
DAG maps them as tasks instead), then `load_batch` and `report_run`. While the shards
run, this process, otherwise idle, builds the Great Expectations validator for the load
in a thread (`validate.warm_up`, once a shard has staged articles: a run of 304s never
pays for it).

Each shard runs in a fresh process, forked from a server process that imported the
stages once (multiprocessing's forkserver), as each DAG task is a process of its own. A
long-lived worker running shard after shard kept what its allocators could not give back
(objects that outlived a shard pin the heap pages around them): its resident memory grew
with the number of shards it had run, by about half from 1,000 to 10,000 feeds, even with
`malloc_trim` after each. A process a shard costs a fork, and its peak is its shard's.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pipeline import validate
from pipeline.config import Settings
from pipeline.errors import ValidationThresholdExceeded
from pipeline.records import FeedSource
from pipeline.tasks import ShardSummary, ingest_shard, load_batch, prepare_run, report_run, utcnow


class StageClock:
    """Wall seconds per stage, summed over calls: the run summary's `stage_seconds`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - started, 3)


# What the shard processes' server imports once, before it forks any of them.
SHARD_MODULES = ["pipeline.tasks"]


def shard_processes() -> multiprocessing.context.ForkServerContext:
    """The context of the shard processes: each forked from one server process, started
    (and its `SHARD_MODULES` imported) once per process of this runner. They inherit
    nothing of this process (no thread, no lock, no connection), and none of what it
    changed in a module after the server started (a test's monkeypatch included)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(SHARD_MODULES)
    return context


def run_shards(db_url: str, settings: Settings, run_id: str, shards: Sequence[int],
               clock: Callable[[], datetime] = utcnow,
               on_shard: Callable[[ShardSummary], None] | None = None) -> list[ShardSummary]:
    """Run `ingest_shard` for every shard, when more than one worker each in a fresh process
    (`shard_processes`), `settings.workers` at a time."""
    workers = min(settings.workers, len(shards))
    summaries: list[ShardSummary] = []
    if workers <= 1:
        for shard in shards:
            summaries.append(ingest_shard(db_url, settings, run_id, shard, clock()))
            if on_shard:
                on_shard(summaries[-1])
        return summaries
    root = logging.getLogger()
    formats = [h.formatter._fmt for h in root.handlers if h.formatter is not None and h.formatter._fmt]
    with ProcessPoolExecutor(max_workers=workers, mp_context=shard_processes(), max_tasks_per_child=1,
                             initializer=_log_like, initargs=(root.level, formats[0] if formats else None)) as pool:
        futures: list[Future[ShardSummary]] = [
            pool.submit(ingest_shard, db_url, settings, run_id, shard, clock()) for shard in shards]
        try:
            for future in as_completed(futures):
                summaries.append(future.result())
                if summaries[-1].articles:  # a batch to validate is coming
                    validate.warm_up(settings.data_dir / "gx")
                if on_shard:
                    on_shard(summaries[-1])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return sorted(summaries, key=lambda s: s.shard)


def _log_like(level: int, fmt: str | None) -> None:
    """A shard process logs as its runner does (its level and format, to stderr)."""
    logging.basicConfig(level=level, format=fmt or logging.BASIC_FORMAT)


def ingest(
    db_url: str,
    settings: Settings,
    sources: Sequence[FeedSource],
    run_id: str,
    clock: Callable[[], datetime] = utcnow,
    on_shard: Callable[[ShardSummary], None] | None = None,
    force: bool = False,
    lane: str = "all",
) -> dict[str, Any]:
    """Run every task once, in the DAG's order, and return the run summary. `clock` is the
    run's time (a replay or a simulation passes its own); `lane` "hot" covers hot feeds only.

    The summary's `stage_seconds` says where the time went."""
    timed = StageClock()
    with timed("prepare"):
        shards = prepare_run(db_url, settings, run_id, sources, clock(), force, lane)
    with timed("fetch_parse_normalize"):
        run_shards(db_url, settings, run_id, shards, clock, on_shard)
    summary = finish(db_url, settings, run_id, clock, timed)
    summary["stage_seconds"] = timed.seconds
    return summary


def finish(db_url: str, settings: Settings, run_id: str, clock: Callable[[], datetime],
           timed: StageClock | None = None) -> dict[str, Any]:
    """The load task, then the report: the run summary. A validation breach is raised after
    the report, so the run is recorded as failed first."""
    timed = timed or StageClock()
    breach: ValidationThresholdExceeded | None = None
    with timed("decide_validate_load"):
        try:
            load_batch(db_url, settings, run_id, clock)
        except ValidationThresholdExceeded as exc:
            breach = exc
    summary = report_run(db_url, run_id, clock())
    if breach is not None:
        raise breach
    return summary
