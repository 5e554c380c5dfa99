"""Validate stage: run the Great Expectations suites and keep their results.

GX is imported lazily (it costs seconds and hundreds of MB), and its context, a
file-backed one under `<data_dir>/gx`, is built once per process: in a child process
when a load warms it up (`warm_up`, `ValidatorProcess`; `close` ends it), else here. Each suite runs
through a checkpoint; the Data Docs site is then built once for all of a run's
suites (`build_docs`: rendering is most of GX's cost for a small batch), so every
run has a page; old pages are pruned. Results come back as plain records (for SQL) and,
for the row suite, as the failed expectations of each failing row: rows are
never dropped here, the caller quarantines them.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from pipeline.expectations import (
    CLUSTERS_QUERY,
    DUPLICATES_QUERY,
    FEEDS_SUITE,
    ROW_ID,
    ROWS_SUITE,
    TABLE_QUERY,
    TABLE_SUITE,
    cluster_expectations,
    duplicate_expectations,
    feed_expectations,
    row_expectations,
    table_expectations,
)
from pipeline.records import PlannedRow

DUPLICATES_SUITE = "duplicates_table"
CLUSTERS_SUITE = "clusters_table"
TABLE_SUITES = (TABLE_SUITE, DUPLICATES_SUITE, CLUSTERS_SUITE)
log = logging.getLogger(__name__)

_FRESHNESS_ATTEMPTS = 4  # runs of a checkpoint whose project another process keeps saving
_DB_URL_VARIABLE = "NEWS_GX_DATABASE_URL"  # the SQL data source reads it: no secret on disk


@dataclass(frozen=True)
class Failure:
    expectation: str
    column: str | None
    observed: Any

    def to_json(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "column": self.column, "observed": self.observed}


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    observed: Any
    missing_count: int | None = None  # rows the expectation skipped (nulls): not in the percentage


@dataclass(frozen=True)
class SuiteOutcome:
    suite: str
    success: bool
    statistics: dict[str, Any]
    expectations: tuple[ExpectationOutcome, ...]
    element_count: int | None
    data_docs: str | None  # the page `build_docs` writes for this result
    failures: dict[int, list[Failure]]  # per row, when the suite has a row id
    result_key: Any = None  # GX's identifier of the stored result, for `build_docs`


def _plain(value: Any) -> Any:
    """numpy scalars -> Python, NaN -> None, long strings shortened for the record."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, str) and len(value) > 300:
        return value[:300] + f"... ({len(value)} chars)"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value[:20]]
    return value


# Imported by Great Expectations' own package for expectations this project does not use
# (the distribution tests: KL divergence, KS tests), and about a third of its import time
# (`python -X importtime`: scipy.stats 0.85 of 2.6-3.1 s); its import is deferred to its
# first use, which the row and batch suites never make.
_UNUSED_AT_IMPORT = ("scipy.stats",)


def _defer_import(names: Sequence[str]) -> None:
    """Register each module not imported yet as a lazy one (`importlib.util.LazyLoader`):
    `import` binds it at once, its code runs at the first attribute read."""
    import importlib.util
    import sys

    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:  # its package is missing: GX's own import reports it
            continue
        if spec is None or spec.loader is None:
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)  # `from scipy import stats` finds it


class Validator:
    """The GX context and checkpoints of one process, for one project directory."""

    def __init__(self, project_dir: Path):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        _defer_import(_UNUSED_AT_IMPORT)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        for name in ("great_expectations", "great_expectations.data_context.types.base"):
            logging.getLogger(name).setLevel(logging.WARNING)  # GX sets INFO on import
        project_dir.mkdir(parents=True, exist_ok=True)
        self.gx = gx
        self.root = project_dir / "gx"
        self.context = gx.get_context(mode="file", project_root_dir=str(project_dir))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        pandas = self.context.data_sources.add_or_update_pandas("news_batches")
        self._builders: dict[str, Any] = {
            ROWS_SUITE: lambda: self._checkpoint(pandas, ROWS_SUITE, row_expectations(gx), ROW_ID, frame=True),
            FEEDS_SUITE: lambda: self._checkpoint(pandas, FEEDS_SUITE, feed_expectations(gx), "feed_id", frame=True),
        }
        self.checkpoints = {name: build() for name, build in self._builders.items()}
        self._table_ready = False

    def _checkpoint(self, datasource: Any, name: str, expectations: list[Any], index: str,
                    frame: bool, query: str | None = None) -> Any:
        gx = self.gx
        try:
            asset = datasource.get_asset(name)
        except LookupError:
            asset = (datasource.add_dataframe_asset(name) if frame
                     else datasource.add_query_asset(name, query=query))
        try:
            batch_definition = asset.get_batch_definition("all")
        except KeyError:
            batch_definition = (asset.add_batch_definition_whole_dataframe("all") if frame
                                else asset.add_batch_definition_whole_table("all"))
        suite = self.context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=suite))
        return self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=name, validation_definitions=[definition],
            actions=[],  # Data Docs: built once per run for all its suites (build_docs)
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [index]},
        ))

    def prepare_table_checks(self, db_url: str) -> None:
        os.environ[_DB_URL_VARIABLE] = db_url.replace("postgresql://", "postgresql+psycopg2://", 1)
        if self._table_ready:
            return
        sql = self.context.data_sources.add_or_update_sql(
            "news_db", connection_string="${" + _DB_URL_VARIABLE + "}")
        gx = self.gx
        self._builders.update({
            TABLE_SUITE: lambda: self._checkpoint(
                sql, TABLE_SUITE, table_expectations(gx), "id", frame=False, query=TABLE_QUERY),
            DUPLICATES_SUITE: lambda: self._checkpoint(
                sql, DUPLICATES_SUITE, duplicate_expectations(gx), "id", frame=False, query=DUPLICATES_QUERY),
            CLUSTERS_SUITE: lambda: self._checkpoint(
                sql, CLUSTERS_SUITE, cluster_expectations(gx), "id", frame=False, query=CLUSTERS_QUERY),
        })
        for name in (TABLE_SUITE, DUPLICATES_SUITE, CLUSTERS_SUITE):
            self.checkpoints[name] = self._builders[name]()
        self._table_ready = True

    def run(self, suite: str, run_name: str, parameters: dict[str, Any], frame: Any = None,
            index: str = ROW_ID) -> SuiteOutcome:
        from great_expectations.exceptions.resource_freshness import (
            ResourceFreshnessAggregateError,
            ResourceFreshnessError,
        )

        def run_checkpoint() -> Any:
            return self.checkpoints[suite].run(
                batch_parameters={"dataframe": frame} if frame is not None else None,
                expectation_parameters=parameters,
                run_id=self.gx.RunIdentifier(run_name=run_name),
            )

        for attempt in range(_FRESHNESS_ATTEMPTS):
            try:
                result = run_checkpoint()
                break
            except (ResourceFreshnessAggregateError, ResourceFreshnessError):
                # Another process (a CLI run beside a DAG task, the hot lane's task beside the
                # main one's) saved the same suite, definition or checkpoint into the shared
                # project since this one did: save them again and retry, a bounded number of times.
                if attempt == _FRESHNESS_ATTEMPTS - 1:
                    raise
                log.info("GX project %s changed under this process: suite %s saved again", self.root, suite)
                self.checkpoints[suite] = self._builders[suite]()
        [(key, validation)] = list(result.run_results.items())
        sites = self.context.get_docs_sites_urls(resource_identifier=key, only_if_exists=False)
        docs = unquote(urlsplit(sites[0]["site_url"]).path) if sites and sites[0].get("site_url") else None
        outcomes: list[ExpectationOutcome] = []
        failures: dict[int, list[Failure]] = {}
        for item in validation.results:
            config = item.expectation_config
            column = config.kwargs.get("column") or ",".join(config.kwargs.get("column_list") or []) or None
            if item.exception_info and item.exception_info.get("raised_exception"):
                raise RuntimeError(f"{config.type} on {column} raised: {item.exception_info}")
            res = item.result or {}
            observed = res.get("observed_value", res.get("partial_unexpected_list"))
            outcomes.append(ExpectationOutcome(
                config.type, column, bool(item.success), res.get("element_count"),
                res.get("unexpected_count"), _plain(res.get("unexpected_percent")), _plain(observed),
                res.get("missing_count")))
            if not item.success:
                for hit in res.get("unexpected_index_list") or ():
                    if isinstance(hit, dict) and index in hit:
                        value = {k: _plain(v) for k, v in hit.items() if k != index}
                        if column in value:
                            value = value[column]
                        failures.setdefault(int(_plain(hit[index])), []).append(
                            Failure(config.type, column, _plain(value)))
        element_count = max((o.element_count or 0 for o in outcomes), default=None)
        return SuiteOutcome(suite, bool(validation.success), dict(validation.statistics),
                            tuple(outcomes), element_count, docs, failures, key)

    def run_rows(self, suite: str, run_name: str, parameters: dict[str, Any], rows: Sequence[Any]) -> SuiteOutcome:
        """`run` on the frame of `rows`, built here: the row contract's (`article_frame`,
        of `PlannedRow`s) or, for the feeds suite, the per-feed one (`feed_frame`)."""
        if suite == FEEDS_SUITE:
            return self.run(suite, run_name, parameters, feed_frame(rows), index="feed_id")
        if suite == ROWS_SUITE:
            return self.run(suite, run_name, parameters, article_frame(rows))
        raise ValueError(f"no frame of rows for the suite {suite!r}")

    def run_soon(self, suite: str, run_name: str, parameters: dict[str, Any],
                 rows: Sequence[Any]) -> Callable[[], SuiteOutcome]:
        """`run_rows`, here and now (this process has no other core to hand it to): the
        returned callable gives its outcome."""
        outcome = self.run_rows(suite, run_name, parameters, rows)
        return lambda: outcome

    def build_docs(self, outcomes: Sequence[SuiteOutcome | None]) -> None:
        """Write the Data Docs pages of these results (one run's suites) and the site's index."""
        keys = [o.result_key for o in outcomes if o is not None and o.result_key is not None]
        if keys:
            self.context.build_data_docs(resource_identifiers=keys)

    def prune_docs(self, keep: int) -> None:
        """Keep the Data Docs pages and stored results of the latest `keep` runs per suite."""
        for base in (self.root / "uncommitted" / "validations",
                     self.root / "uncommitted" / "data_docs" / "local_site" / "validations"):
            for suite_dir in (base.iterdir() if base.is_dir() else ()):
                if not suite_dir.is_dir():
                    continue
                runs = sorted((p for p in suite_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
                for old in runs[:-keep] if keep > 0 else runs:
                    shutil.rmtree(old, ignore_errors=True)


class ValidatorProcess:
    """A `Validator` that lives in a child process, forked when this object is created.

    Great Expectations takes seconds of CPU to import and to build its context. In a child
    process that work runs on another core while this process goes on: a DAG's load task
    starts cold and decides its batch meanwhile. A thread would share the interpreter's
    lock with the decider. GX's hundreds of MB are also not this process's. Calls block
    until the child has built the validator. Frames go to the child and outcomes come back
    pickled. An error the validator raises is raised here. If the child process dies, the
    validator is built in this process instead, with a warning."""

    def __init__(self, project_dir: Path):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.project_dir = project_dir
        self._fallback: Validator | None = None
        self._closed = False
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                                         initializer=_child_start)
        try:
            self._pool.submit(_in_child, project_dir, None)  # forks the child, which builds it now
            self._processes = list((self._pool._processes or {}).values())
        except BaseException:
            self._pool.shutdown(wait=False)
            raise

    def _call(self, method: str, *args: Any) -> Any:
        return self._soon(method, *args)()

    def _soon(self, method: str, *args: Any) -> Callable[[], Any]:
        """`method` handed to the child now; the returned callable waits for its result. A
        child that died or hung (or a call cancelled, queued behind one that hung when the
        child was ended for it): the validator is built here and the call runs here."""
        from concurrent.futures import CancelledError
        from concurrent.futures import TimeoutError as CallTimeout
        from concurrent.futures.process import BrokenProcessPool

        if self._closed:
            raise RuntimeError("the validation process was closed")
        if self._fallback is None:
            try:
                future = self._pool.submit(_in_child, self.project_dir, method, *args)
            except BrokenProcessPool as exc:
                self._recover(exc)
            else:
                def result() -> Any:
                    try:
                        return future.result(CALL_TIMEOUT_S)
                    except (BrokenProcessPool, CallTimeout, CancelledError) as exc:
                        self._recover(exc)
                        return self._here(method, *args)

                return result
        return lambda: self._here(method, *args)

    def _here(self, method: str, *args: Any) -> Any:
        """A call on the validator built in this process (`_recover`)."""
        assert self._fallback is not None
        if method == "build_docs":  # results the child kept (numbered) have no page here
            args = ([o for o in args[0] if o is None or not isinstance(o.result_key, int)],)
        return getattr(self._fallback, method)(*args)

    def _recover(self, exc: BaseException) -> None:
        """The child died or hung (`exc`): build the validator in this process instead."""
        if self._closed:  # ended by its owner meanwhile: not a death to recover from
            raise RuntimeError("the validation process was closed") from exc
        if self._fallback is None:
            log.warning("the validation process died or hung (%s): validating in this process",
                        type(exc).__name__)
            self._end_child()
            self._fallback = Validator(self.project_dir)

    def close(self) -> None:
        """End the child process: asked to, then killed after `CLOSE_WAIT_S`. A call after
        this (a Data Docs thread a failed load left) fails: it does not build Great
        Expectations in this process."""
        self._closed = True
        self._end_child()

    def _end_child(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + CLOSE_WAIT_S
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)

    def run(self, suite: str, run_name: str, parameters: dict[str, Any], frame: Any = None,
            index: str = ROW_ID) -> SuiteOutcome:
        return self._call("run", suite, run_name, parameters, frame, index)

    def run_rows(self, suite: str, run_name: str, parameters: dict[str, Any], rows: Sequence[Any]) -> SuiteOutcome:
        """`Validator.run_rows` in the child, which builds the frame: pandas is imported
        there, never in this process."""
        return cast(SuiteOutcome, self._call("run_rows", suite, run_name, parameters, rows))

    def run_soon(self, suite: str, run_name: str, parameters: dict[str, Any],
                 rows: Sequence[Any]) -> Callable[[], SuiteOutcome]:
        """`run_rows`, handed to the child now: it builds the frame (pandas is imported
        there, never in this process) and validates while this process goes on. The
        returned callable waits for the outcome (a child that died or hung meanwhile: as
        `run`, the suite runs again in this process)."""
        return cast(Callable[[], SuiteOutcome], self._soon("run_rows", suite, run_name, parameters, rows))

    def build_docs(self, outcomes: Sequence[SuiteOutcome | None]) -> None:
        self._call("build_docs", list(outcomes))

    def prune_docs(self, keep: int) -> None:
        self._call("prune_docs", keep)

    def prepare_table_checks(self, db_url: str) -> None:
        self._call("prepare_table_checks", db_url)

    def pid(self) -> int:
        """The process that validates."""
        return int(self._call("pid")) if self._fallback is None else os.getpid()


_PR_SET_PDEATHSIG = 1
CALL_TIMEOUT_S = 900  # a call to the child (building GX, a suite over a large batch, Data Docs)
CLOSE_WAIT_S = 10


def _child_start() -> None:
    """In a `ValidatorProcess`'s child: the default signal handlers (not the parent's: an
    Airflow task's SIGTERM handler ignores other processes), and an exit when the parent
    ends, however it ends (an Airflow task process ends with os._exit, which runs no clean-up)."""
    import multiprocessing.connection
    import signal

    from pipeline.free_memory import libc

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_DFL)
    _fresh_standard_streams()
    try:  # Linux: the kernel kills this process when the thread that forked it ends
        libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except AttributeError:
        pass  # elsewhere (no C library loaded, or no prctl): the watcher below
    if os.getppid() == 1:  # the parent ended before the above took effect
        os._exit(0)
    parent = multiprocessing.parent_process()
    if parent is not None:
        sentinel = parent.sentinel

        def exit_with_parent() -> None:
            multiprocessing.connection.wait([sentinel])
            os._exit(0)

        threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()


def _fresh_standard_streams() -> None:
    """New objects for stdout and stderr, and for the log handlers writing to them (matched
    by file descriptor: a progress display may have put a proxy in `sys.stderr`): a lock
    another thread of the parent held at the fork (that display's refresh writing to
    stderr) stays held in the child, and the child's first warning would wait on it for ever."""
    import sys

    fresh = {}
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        try:
            new = open(fd, "w", encoding=getattr(old, "encoding", None) or "utf-8",  # noqa: SIM115
                       errors=getattr(old, "errors", None) or "backslashreplace", closefd=False, buffering=1)
        except OSError:  # no such descriptor
            continue
        fresh[fd] = new
        setattr(sys, name, new)
    handlers = [h for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
                for h in getattr(logger, "handlers", ())]
    for handler in handlers:
        if not isinstance(handler, logging.StreamHandler):
            continue
        try:
            fd = handler.stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
            continue
        if fd in fresh:
            try:
                handler.stream = fresh[fd]  # not setStream: it flushes the old stream first
            except AttributeError:  # a read-only stream (logging's last-resort handler, which
                pass  # Airflow's task logging attaches) is sys.stderr's: fresh already


def _in_child(project_dir: Path, method: str | None, *args: Any) -> Any:
    """A `ValidatorProcess` call, in its child: the child's own validator, built on first use.

    An outcome leaves the child with a number in place of GX's result key, which stays in
    the child: unpickling the key would import all of GX in the parent (seconds)."""
    if method == "pid":
        return os.getpid()
    # built here the first time, with the child's collector paused (no other work shares it)
    with nullcontext() if project_dir in _validators else _collector_paused():
        built = validator(project_dir)
    if method in ("run", "run_rows"):
        outcome = getattr(built, method)(*args)
        token = next(_tokens)
        _child_keys[token] = outcome.result_key
        while len(_child_keys) > _KEYS_KEPT:  # a key serves its run's build_docs: the oldest go
            del _child_keys[next(iter(_child_keys))]
        return dataclasses.replace(outcome, result_key=token)
    if method == "build_docs":
        (outcomes,) = args
        args = ([o if o is None else dataclasses.replace(o, result_key=_child_keys.get(o.result_key))
                 for o in outcomes],)
    return getattr(built, method)(*args) if method else None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while Great Expectations starts, and the objects
    of the process (those inherited at the fork, then those it built) frozen (`gc.freeze`:
    later full collections skip them). Its import and context build allocate about a
    million objects, and the collections that allocation triggers, the full ones above all,
    walk them again and again: a fresh process's `Validator` was ready in 1.84-1.95 s with
    the collector paused, against 2.10-2.73 s (three alternating runs each; in the child,
    forked from the load's process, full collections would walk the inherited heap too).
    Cycles left as garbage by the start-up are frozen with the rest, never collected: the
    child lives for one load. For a process of its own (the setting is the process's): a
    `ValidatorProcess`'s child, the only caller."""
    import gc

    enabled = gc.isenabled()
    gc.freeze()  # the inherited heap: not walked (nor its pages written) by later collections
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


_KEYS_KEPT = 1024  # more than the chunks of any one run (pipeline.plan_decider)
_child_keys: dict[int, Any] = {}  # in a ValidatorProcess's child: GX result keys by number
_tokens = itertools.count()


_validators: dict[Path, Validator | ValidatorProcess] = {}


def validator(project_dir: Path) -> Validator | ValidatorProcess:
    """The process's validator for `project_dir`: the one `warm_up` started in a child
    process, else one built here on first use."""
    building = _building.get(project_dir)
    if building is not None:
        building.join()  # the warm-up thread builds it (or failed to: then it is built here)
        _building.pop(project_dir, None)
    if project_dir not in _validators:
        _validators[project_dir] = Validator(project_dir)
    return _validators[project_dir]


def close(project_dir: Path) -> None:
    """End the child process of the validator for `project_dir`, if it has one (a
    validator built in this process is kept)."""
    built = _validators.get(project_dir)
    if isinstance(built, ValidatorProcess):
        del _validators[project_dir]
        built.close()


@contextmanager
def docs_built_meanwhile(project_dir: Path, outcomes: Sequence[SuiteOutcome], keep: int) -> Iterator[None]:
    """Write the Data Docs pages of `outcomes` (and prune the site to the latest `keep`
    runs per suite) while the block runs, in a thread, which mostly waits on the validation
    child that renders them; the block's end waits for the pages, and a failure to write
    them is raised there, as if they had been written before it. A block that fails (the
    load refused, Ctrl-C) does not wait: the pages of a batch not loaded are not needed.
    The thread, a daemon, then holds neither the failure nor the process's exit, and it
    uses the validator the suites ran on: once the caller closes it (`close`), the thread's
    call fails instead of building Great Expectations anew in this process."""
    if not outcomes:
        yield
        return
    pages: Future[None] = Future()
    target = validator(project_dir)  # the suites' own: built already

    def build() -> None:
        try:
            target.build_docs(outcomes)
            target.prune_docs(keep)
        except BaseException as exc:  # noqa: BLE001 - handed to the block's end
            pages.set_exception(exc)
        else:
            pages.set_result(None)

    threading.Thread(target=build, name="data-docs", daemon=True).start()
    yield  # a block that raises ends here, without waiting
    pages.result()  # a failure to write them, raised here


def warm_up(project_dir: Path, in_child: bool = False) -> None:
    """Start building the validator for `project_dir` so that GX's start-up overlaps this
    process's work: in a thread, or with `in_child` in a child process (`ValidatorProcess`;
    the caller must `close` it before its process exits: a process pool left at exit can
    hang the interpreter's shutdown), falling back to a thread where this process may not
    have children (a Celery worker's pool process is daemonic). Does nothing when this
    process has a validator for it, or is building one, already."""
    if project_dir in _validators or project_dir in _building:
        return
    if in_child:  # the caller ends it (`close`) before its process exits
        try:
            _validators[project_dir] = ValidatorProcess(project_dir)
            return
        except Exception as exc:  # noqa: BLE001 - no child here: build it in this process
            log.info("no validation process (%s: %s): GX starts in a thread", type(exc).__name__, exc)
    thread = threading.Thread(target=_build_here, args=(project_dir,), name="gx-warm-up", daemon=True)
    _building[project_dir] = thread
    thread.start()


_building: dict[Path, threading.Thread] = {}


def _build_here(project_dir: Path) -> None:
    try:
        _validators[project_dir] = Validator(project_dir)
    except Exception:  # noqa: BLE001 - `validator` builds it again, and raises there
        log.exception("GX warm-up failed")


def article_frame(rows: Sequence[PlannedRow]) -> Any:
    """The row contract's frame: one row per article planned new or updated, its text by
    length (the decider does not hold the texts)."""
    import pandas as pd

    return pd.DataFrame(
        {
            ROW_ID: range(len(rows)),
            "feed_id": [r.feed_id for r in rows],
            "identity_key": [r.identity_key for r in rows],
            "canonical_url": [r.canonical_url for r in rows],
            "canonical_url_bytes": [len((r.canonical_url or "").encode()) for r in rows],
            "identity_key_bytes": [len((r.identity_key or "").encode()) for r in rows],
            "title": [r.title for r in rows],
            "text_chars": [r.text_chars for r in rows],
            "content_chars": [len(r.title) + r.text_chars for r in rows],
            "published_epoch": [r.published_at.timestamp() for r in rows],
            "language": [r.language for r in rows],
        }
    )


def merged(chunks: Sequence[SuiteOutcome]) -> SuiteOutcome:
    """One suite's outcomes on the chunks of one batch (`Validator.run` on each), as the
    outcome on the whole: an expectation succeeds when it did on every chunk, counts add
    up, the percentage is of all rows checked, the observed values are the first failing
    chunks' (up to 20), and the Data Docs page is the first failing chunk's. Per-row
    failures are the caller's (each chunk's rows are its own)."""
    if len(chunks) == 1:
        return chunks[0]
    by_expectation = zip(*(c.expectations for c in chunks), strict=True)
    expectations = tuple(_merged_expectation(list(same)) for same in by_expectation)
    passed = sum(e.success for e in expectations)
    statistics = {**chunks[0].statistics, "evaluated_expectations": len(expectations),
                  "successful_expectations": passed, "unsuccessful_expectations": len(expectations) - passed,
                  "success_percent": passed / len(expectations) * 100 if expectations else None}
    failing = [c for c in chunks if not c.success]
    return SuiteOutcome(
        chunks[0].suite, not failing, statistics, expectations,
        sum(c.element_count or 0 for c in chunks), (failing or chunks)[0].data_docs, {},
        (failing or chunks)[0].result_key)


def _merged_expectation(same: list[ExpectationOutcome]) -> ExpectationOutcome:
    first = same[0]
    failing = [e for e in same if not e.success] or same
    elements = sum(e.element_count or 0 for e in same)
    missing = sum(e.missing_count or 0 for e in same)
    unexpected = (sum(e.unexpected_count or 0 for e in same)
                  if any(e.unexpected_count is not None for e in same) else None)
    checked = elements - missing
    percent = 100.0 * unexpected / checked if unexpected is not None and checked > 0 else first.unexpected_percent
    if all(isinstance(e.observed, list) for e in failing):
        observed: Any = [value for e in failing for value in e.observed][:20]
    else:
        observed = failing[0].observed
    return ExpectationOutcome(first.expectation, first.column, all(e.success for e in same), elements,
                              unexpected, percent, observed, missing)


def feed_frame(rows: Sequence[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=["feed_id", "entries", "undated_share", "quarantined_share"])


@dataclass(frozen=True)
class Levels:
    """Warn and fail levels for the quarantined share, per run and per feed."""

    run_warn: float
    run_fail: float
    feed_warn: float
    feed_fail: float
    min_entries: int  # below this many entries a share means nothing


def judge(
    entries: int,
    quarantined: int,
    per_feed: dict[str, tuple[int, int]],
    reasons: Counter[str],
    levels: Levels,
) -> tuple[str | None, str | None]:
    """(fail message, warn message) for a run's quarantined shares; each None when not reached.

    `per_feed` maps feed URL to (entries, quarantined). Messages name the feeds and the
    expectations that failed most."""
    failing, warning = [], []
    for url, (n, bad) in sorted(per_feed.items()):
        if n >= levels.min_entries and n and bad / n > levels.feed_fail:
            failing.append(f"{url} ({bad}/{n})")
        elif n >= levels.min_entries and n and bad / n > levels.feed_warn:
            warning.append(f"{url} ({bad}/{n})")
    share = quarantined / entries if entries else 0.0
    big_enough = entries >= levels.min_entries
    expectations = ", ".join(f"{name} ({count})" for name, count in reasons.most_common(5))
    worst = ", ".join(f"{url} ({bad}/{n})" for url, (n, bad) in
                      sorted(per_feed.items(), key=lambda kv: -kv[1][1])[:5] if bad)

    def message(level: str, feeds: list[str]) -> str:
        head = f"{quarantined} of {entries} entries quarantined ({share:.0%})"
        return f"{head}; past the {level} level for {', '.join(feeds) or 'the run'}; " \
               f"feeds: {worst or 'none'}; expectations: {expectations or 'none'}"

    fail = message("fail", failing) if failing or (big_enough and share > levels.run_fail) else None
    warn = None
    if fail is None and (warning or (big_enough and share > levels.run_warn)):
        warn = message("warn", warning)
    return fail, warn
