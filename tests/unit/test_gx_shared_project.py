"""Two processes on one Great Expectations project (a CLI run beside a DAG task): each
saves the suites when it starts, so the one that started first finds them changed. Its
validation must still run, and still judge rows, instead of failing the load."""

import shutil
import threading
import time
from datetime import UTC, datetime

import pytest

from pipeline import validate
from pipeline.expectations import ROWS_SUITE
from pipeline.records import PlannedRow

PARAMETERS = {"latest_published": time.time() + 86_400, "max_title_chars": 1000, "max_entries": 500,
              "max_undated_share": 0.5, "feed_fail_ratio": 0.9}


def article(seq: int, url: str) -> PlannedRow:
    return PlannedRow(feed_id=1, seq=seq, identity_key=f"v1:guid:{seq}", canonical_url=url,
                      title=f"Title {seq}", published_at=datetime.now(UTC), language=None, text_chars=10)


def test_a_validator_whose_suites_another_process_saved_still_validates(tmp_path):
    first = validate.Validator(tmp_path)
    second = validate.Validator(tmp_path)  # saves the same suites again, as a second process does
    rows = [article(0, "https://news.example/a"), article(1, "javascript:void(0)")]
    frame = validate.article_frame(rows)
    later = second.run(ROWS_SUITE, "run-2", PARAMETERS, frame)
    earlier = first.run(ROWS_SUITE, "run-1", PARAMETERS, frame)
    for outcome in (later, earlier):
        assert outcome.success is False
        assert list(outcome.failures) == [1]  # the javascript: URL, and only it


def test_a_validator_warmed_up_in_a_child_process_judges_rows_as_one_built_here(tmp_path):
    """`warm_up` builds the validator in a child process (GX's start-up runs on another
    core while the load decides): its outcomes are those of a validator built here."""
    import os

    rows = [article(0, "https://news.example/a"), article(1, "javascript:void(0)")]
    frame = validate.article_frame(rows)
    here = validate.Validator(tmp_path / "here").run(ROWS_SUITE, "run-1", PARAMETERS, frame)
    validate.warm_up(tmp_path / "child", in_child=True)
    child = validate.validator(tmp_path / "child")
    try:
        assert isinstance(child, validate.ValidatorProcess) and child.pid() != os.getpid()
        there = child.run(ROWS_SUITE, "run-1", PARAMETERS, frame)
        assert (there.success, list(there.failures), there.failures[1]) == (False, [1], here.failures[1])
        assert [(o.expectation, o.success) for o in there.expectations] == [
            (o.expectation, o.success) for o in here.expectations]
        child.build_docs([there])  # the page the outcome names is written, by the child
        assert there.data_docs and os.path.isfile(there.data_docs)
        pid = child.pid()
    finally:
        validate.close(tmp_path / "child")
    assert not _alive(pid) and not isinstance(validate._validators.get(tmp_path / "child"),
                                              validate.ValidatorProcess)


def _alive(pid, within=10.0):
    import os

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # reap it if it is ours (a zombie still answers kill 0)
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return True


def _warm_up_and_vanish(project_dir, pids):
    import os

    validate.warm_up(project_dir, in_child=True)
    pids.send(validate.validator(project_dir).pid())  # a pipe: sent before the exit
    os._exit(0)  # as an Airflow task process ends: no clean-up runs


def test_the_validation_process_ends_when_its_parent_ends_without_clean_up(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receiver, pids = context.Pipe(duplex=False)
    parent = context.Process(target=_warm_up_and_vanish, args=(tmp_path, pids))
    parent.start()
    assert receiver.poll(120)
    child = receiver.recv()
    parent.join(30)
    assert not _alive(child)


def _warm_up_and_validate(project_dir, results):
    rows = [article(0, "https://news.example/a"), article(1, "javascript:void(0)")]
    validate.warm_up(project_dir, in_child=True)
    built = validate.validator(project_dir)
    outcome = built.run(ROWS_SUITE, "run-1", PARAMETERS, validate.article_frame(rows))
    results.put((type(built).__name__, list(outcome.failures)))


def test_where_no_child_process_is_allowed_the_warm_up_builds_it_in_a_thread(tmp_path):
    """A Celery worker's pool process is daemonic: multiprocessing refuses it children.
    There the warm-up builds the validator in a thread, and validation goes on."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    daemon = context.Process(target=_warm_up_and_validate, args=(tmp_path, results), daemon=True)
    daemon.start()
    try:
        assert results.get(timeout=120) == ("Validator", [1])
    finally:
        daemon.join(30)
        if daemon.is_alive():
            daemon.kill()


def test_data_docs_written_while_the_load_goes_on_are_there_when_it_ends(tmp_path):
    """The load applies its plan while the validation's pages are written (in the child):
    when the block ends they are there, and a page that cannot be written fails the load
    at the block's end, as it did when pages were written before it."""
    import os

    import pytest

    rows = [article(0, "https://news.example/a"), article(1, "javascript:void(0)")]
    validate.warm_up(tmp_path, in_child=True)
    try:
        outcome = validate.validator(tmp_path).run(ROWS_SUITE, "run-1", PARAMETERS, validate.article_frame(rows))
        assert outcome.data_docs and not os.path.isfile(outcome.data_docs)
        with validate.docs_built_meanwhile(tmp_path, [outcome], keep=5):
            pass
        assert os.path.isfile(outcome.data_docs)
        site = tmp_path / "gx" / "uncommitted" / "data_docs"
        shutil.rmtree(site)
        site.write_text("not a folder: no page can be written under it")
        with pytest.raises(Exception), validate.docs_built_meanwhile(tmp_path, [outcome], keep=5):
            pass
        child = validate.validator(tmp_path)
        validate.close(tmp_path)
        # what a failed load's docs thread still asks of it fails: no GX is built in this process
        with pytest.raises(RuntimeError, match="closed"):
            child.build_docs([outcome])
        assert tmp_path not in validate._validators
    finally:
        validate.close(tmp_path)


def test_a_failed_load_does_not_wait_for_its_data_docs(tmp_path):
    """Ctrl-C (or a refused load) while the pages are being written ends the block at once:
    the pages of a batch not loaded are not waited for."""
    release = threading.Event()

    class Slow:
        def build_docs(self, outcomes):
            release.wait(60)

        def prune_docs(self, keep):
            pass

    validate._validators[tmp_path] = Slow()
    try:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt), validate.docs_built_meanwhile(tmp_path, [object()], keep=5):
            raise KeyboardInterrupt
        assert time.monotonic() - started < 5
        pages_written = validate.docs_built_meanwhile(tmp_path, [object()], keep=5)
        with pages_written:  # a block that ends well still waits for its pages
            threading.Timer(0.5, release.set).start()
        assert release.is_set()
    finally:
        release.set()
        del validate._validators[tmp_path]


def test_chunks_handed_to_the_child_are_judged_even_if_it_dies_meanwhile(tmp_path):
    """The decider hands each chunk to the validation child and goes on (`run_soon`); a
    child killed meanwhile costs nothing but time: the verdicts come from a validator built
    here, the same as the child's."""
    import os
    import signal

    rows = [article(0, "https://news.example/a"), article(1, "javascript:void(0)")]
    validate.warm_up(tmp_path, in_child=True)
    try:
        child = validate.validator(tmp_path)
        assert isinstance(child, validate.ValidatorProcess)
        before = child.run_soon(ROWS_SUITE, "run-0", PARAMETERS, rows)()  # built, in the child
        pending = child.run_soon(ROWS_SUITE, "run-1", PARAMETERS, rows)
        os.kill(child._processes[0].pid, signal.SIGKILL)
        later = child.run_soon(ROWS_SUITE, "run-2", PARAMETERS, rows)
        for outcome in (pending(), later()):
            assert (outcome.success, list(outcome.failures)) == (False, [1])
            assert outcome.failures[1] == before.failures[1]
        assert child._fallback is not None  # the run after the death was validated here
    finally:
        validate.close(tmp_path)


def test_the_validation_child_starts_beside_a_handler_whose_stream_is_read_only(tmp_path):
    """An Airflow task's logging has a handler whose stream cannot be set (logging's
    last-resort `_StderrHandler` follows sys.stderr): the child still starts, and validates
    there, not in this process."""
    import logging
    import os

    handler = logging._StderrHandler()  # type: ignore[attr-defined]
    logger = logging.getLogger("airflow.task.like")
    logger.addHandler(handler)
    try:
        validate.warm_up(tmp_path, in_child=True)
        child = validate.validator(tmp_path)
        assert isinstance(child, validate.ValidatorProcess) and child.pid() != os.getpid()
        outcome = child.run(ROWS_SUITE, "run-1", PARAMETERS, validate.article_frame([article(0, "javascript:x")]))
        assert list(outcome.failures) == [0] and child._fallback is None
    finally:
        logger.removeHandler(handler)
        validate.close(tmp_path)


def _hang_at_start():
    time.sleep(120)


def test_chunks_queued_behind_a_hung_child_are_judged_here(tmp_path, monkeypatch):
    """A child that hangs (here before it builds anything): the chunk it holds times out,
    the child is ended, and the chunk queued behind it (cancelled with the child) is judged
    here too, instead of failing the load."""
    monkeypatch.setattr(validate, "CALL_TIMEOUT_S", 3)
    monkeypatch.setattr(validate, "CLOSE_WAIT_S", 1)
    monkeypatch.setattr(validate, "_child_start", _hang_at_start)
    rows = [article(0, "https://news.example/a"), article(1, "javascript:void(0)")]
    validate.warm_up(tmp_path, in_child=True)
    try:
        child = validate.validator(tmp_path)
        assert isinstance(child, validate.ValidatorProcess)
        chunks = [child.run_soon(ROWS_SUITE, f"run-{n}", PARAMETERS, rows) for n in range(3)]
        for chunk in chunks:
            outcome = chunk()
            assert (outcome.success, list(outcome.failures)) == (False, [1])
        assert child._fallback is not None
    finally:
        validate.close(tmp_path)


class _CollectorProbe:
    """Stands in for the validator: what the collector was while it was built, and is now."""

    def __init__(self, project_dir):
        import gc

        self.paused_while_built = not gc.isenabled()

    def state(self):
        import gc

        return self.paused_while_built, gc.isenabled(), gc.get_freeze_count() > 0


def test_the_validation_child_builds_with_its_collector_paused_and_this_process_keeps_its_own(
        tmp_path, monkeypatch):
    """The child builds Great Expectations with the cyclic collector off (its start-up's
    allocations are not walked by collection after collection), then freezes what it holds
    and turns the collector back on for the validation; the process that forked it keeps its
    collector as it was."""
    import gc

    monkeypatch.setattr(validate, "Validator", _CollectorProbe)  # the fork inherits it
    frozen = gc.get_freeze_count()
    child = validate.ValidatorProcess(tmp_path)
    try:
        assert child._call("state") == (True, True, True)
    finally:
        child.close()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
