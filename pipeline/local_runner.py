"""The CLI's runner: one run through the same tasks as the DAG, in this process and a pool.

`prepare_run`, then `ingest_shard` for every shard on `settings.workers` forked
processes (the DAG maps them as tasks instead), then `load_batch` and `report_run`.
For the CLI (`validation_child`), Great Expectations starts where the DAG's load task
starts it: in a child process the load forks when it has a batch to validate (a run of
304s never pays for it), which imports it on the core the load's SQL leaves idle while the
batch is decided (during the shards every core is busy already), and ended with the load.
A process that runs many ingests (a test session) builds it once, in a thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from pipeline.config import Settings
from pipeline.containment import describe
from pipeline.errors import PipelineError, ShardsFailed, ValidationThresholdExceeded
from pipeline.free_memory import bounded_heap, release_free_memory
from pipeline.records import FeedSource
from pipeline.tasks import (
    ShardSummary,
    end_validation,
    ingest_shard,
    load_batch,
    prepare_run,
    report_run,
    utcnow,
)

log = logging.getLogger(__name__)


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


def run_shards(db_url: str, settings: Settings, run_id: str, shards: Sequence[int],
               clock: Callable[[], datetime] = utcnow,
               on_shard: Callable[[ShardSummary], None] | None = None,
               ) -> tuple[list[ShardSummary], dict[int, str]]:
    """Run `ingest_shard` for every shard, on `settings.workers` processes when more than one;
    return the shards' summaries and the failed shards' errors. A shard that fails (its pass
    keeps a feed's or an entry's failure as data; this is the rest: a lost database, say)
    is logged and the other shards go on, as the DAG's mapped shard tasks do.

    A worker that dies (killed, out of memory) breaks its pool: the shards it and the other
    workers were running are each run once more, alone in a pool of their own, and the
    shards not yet started go on in a new pool. So a shard that kills its worker every time
    fails alone, and one that was only beside it, or whose worker was killed from outside,
    lands. Every shard runs at most twice.

    The workers are forked before this process starts any thread, so they inherit no lock
    held by a thread."""
    workers = min(settings.workers, len(shards))
    summaries: list[ShardSummary] = []
    failed: dict[int, str] = {}

    def done(shard: int, outcome: Callable[[], ShardSummary]) -> None:
        try:
            summaries.append(outcome())
        except Exception as exc:  # noqa: BLE001 - that shard's failure; the others go on
            log.error("shard %s failed: %s", shard, describe(exc), exc_info=exc)
            failed[shard] = describe(exc)
            return
        if on_shard:
            on_shard(summaries[-1])

    if workers <= 1:
        for shard in shards:
            done(shard, partial(ingest_shard, db_url, settings, run_id, shard, clock()))
        return summaries, failed
    waiting = deque(shards)
    stalls = 0
    while waiting:  # each pass starts a shard, or stalls (at most STALLED_POOLS times)
        in_pool_when_it_broke, started = _pool_pass(workers, waiting, done, db_url, settings, run_id, clock)
        stalls = 0 if started else stalls + 1
        if stalls >= STALLED_POOLS:
            for shard in waiting:
                log.error("shard %s failed: %s", shard, POOL_DIED)
                failed[shard] = POOL_DIED
            waiting.clear()
        for shard in in_pool_when_it_broke:
            log.warning("shard %s: its pool's worker died while it ran: running it again, alone", shard)
            alone = deque([shard])
            broke, _ = _pool_pass(1, alone, done, db_url, settings, run_id, clock)
            if broke or alone:  # its worker died again, or before it could start
                log.error("shard %s failed: %s", shard, WORKER_DIED)
                failed[shard] = WORKER_DIED
    return sorted(summaries, key=lambda s: s.shard), failed


WORKER_DIED = ("its worker process died while running it, twice (killed, or out of memory: "
               "see the system log); its feeds are fetched again next run")
POOL_DIED = ("the worker processes died before it could start, in two pools in a row; "
             "its feeds are fetched again next run")
STALLED_POOLS = 2  # pools in a row whose workers died before running any shard: the rest fail


def _pool_pass(workers: int, waiting: deque[int], done: Callable[[int, Callable[[], ShardSummary]], None],
               db_url: str, settings: Settings, run_id: str, clock: Callable[[], datetime],
               ) -> tuple[list[int], bool]:
    """Run the `waiting` shards on a pool of `workers`, at most `workers` handed over at a
    time, until none is left or a worker dies. Returns the shards the pool was running when
    it broke (none: every shard handed over ran; each other one went to `done`) and whether
    any shard was handed over. The shards not handed over stay in `waiting`."""
    running: dict[Future[ShardSummary], int] = {}
    broken: list[int] = []
    started = pool_broke = False
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        try:
            for _ in range(workers):  # fork every worker now, while no thread runs
                pool.submit(int).result()
        except BrokenProcessPool:
            return [], False
        try:
            while True:
                while waiting and not (broken or pool_broke) and len(running) < workers:
                    try:
                        future = pool.submit(_shard_in_worker, db_url, settings, run_id, waiting[0], clock())
                    except BrokenProcessPool:  # broke since the last wait: the shard stays waiting
                        pool_broke = True
                        break
                    running[future] = waiting.popleft()
                    started = True
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:  # each with its result, its failure, or the pool's break
                    shard = running.pop(future)
                    if isinstance(future.exception(), BrokenProcessPool):
                        broken.append(shard)
                    else:
                        done(shard, future.result)
        except BaseException:
            for future in running:
                future.cancel()
            raise
    return sorted(broken), started


def _shard_in_worker(db_url: str, settings: Settings, run_id: str, shard: int, now: datetime) -> ShardSummary:
    """`ingest_shard` in a pool worker, which then gives what the shard freed back to the
    operating system (pipeline.free_memory): a worker runs many shards."""
    try:
        return ingest_shard(db_url, settings, run_id, shard, now)
    finally:
        release_free_memory()


def ingest(
    db_url: str,
    settings: Settings,
    sources: Sequence[FeedSource],
    run_id: str,
    clock: Callable[[], datetime] = utcnow,
    on_shard: Callable[[ShardSummary], None] | None = None,
    force: bool = False,
    lane: str = "all",
    validation_child: bool = False,
) -> dict[str, Any]:
    """Run every task once, in the DAG's order, and return the run summary. `clock` is the
    run's time (a replay or a simulation passes its own); `lane` "hot" covers hot feeds only.
    With `validation_child` (the CLI: one run, then it exits) Great Expectations starts in
    a child process the load forks, ended when the load is done; without, in a thread of
    this process, and it stays built here for later runs (a process that runs many, e.g. a
    test session's).

    The summary's `stage_seconds` says where the time went. A failed shard does not stop
    the others, nor the load; the run then raises `ShardsFailed` after its report."""
    timed = StageClock()
    bounded_heap()  # before the workers fork: they inherit it
    with timed("prepare"):
        shards = prepare_run(db_url, settings, run_id, sources, clock(), force, lane, parallel=settings.workers)
    with timed("fetch_parse_normalize"):
        _, failed = run_shards(db_url, settings, run_id, shards, clock, on_shard)
    try:
        summary = finish(db_url, settings, run_id, clock, timed, validation_child,
                         failed_tasks=[shard_task(shard) for shard in failed])
    except PipelineError as exc:  # the run's own verdict, after the shards' failure
        if failed:
            raise ShardsFailed(failed, also=exc) from exc
        raise
    summary["stage_seconds"] = timed.seconds
    if failed:  # after the load and the report: the other shards' entries landed
        raise ShardsFailed(failed)
    return summary


def shard_task(shard: int) -> str:
    """A shard's name in a run's `failed_tasks`, as Airflow names its mapped task."""
    return f"ingest_shard_{shard}"


def finish(db_url: str, settings: Settings, run_id: str, clock: Callable[[], datetime],
           timed: StageClock | None = None, validation_child: bool = False,
           failed_tasks: Sequence[str] = ()) -> dict[str, Any]:
    """The load task, then the report: the run summary. A validation breach is raised after
    the report, so the run is recorded as failed first."""
    timed = timed or StageClock()
    breach: ValidationThresholdExceeded | None = None
    with timed("decide_validate_load"):
        try:
            load_batch(db_url, settings, run_id, clock, validation_child=validation_child)
        except ValidationThresholdExceeded as exc:
            breach = exc
        finally:
            if validation_child:
                end_validation(settings)
    summary = report_run(db_url, run_id, clock(), failed_tasks)
    if breach is not None:
        raise breach
    return summary
