"""A shard that fails stops neither the other shards nor the load.

A feed or an entry that breaks a step is data (its error, its quarantine row); what fails a
shard is the rest: here its staging raises as a lost connection does. The other shard's
entries land; the failed shard's fetched feed is its error in the run, saying why, its
validators and body hash unmoved and its next check now; the run says it failed; and the
next run, not forced, fetches that feed again and loads its entries.
"""

from __future__ import annotations

import json
import os
import signal
import time

import psycopg2
import pytest

from pipeline import cli, load, local_runner, storage, tasks
from pipeline.errors import RunNotLoadable, ShardsFailed
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from tests.helpers import item, query, rss, scalar, staging_that_loses_the_connection_for

FEEDS = {"/fine.xml": [1, 2], "/lost.xml": [3, 4]}


def titles(db_url: str) -> set[str]:
    return {title for (title,) in query(db_url, "SELECT title FROM articles")}


def titled(*numbers: int) -> set[str]:
    return {item(n)["title"] for n in numbers}


def served(generation: int) -> dict[str, Route]:
    """Each feed's entries of that generation and the ones before (a feed's window)."""
    return {path: Route(rss([item(n + 10 * g) for g in range(generation + 1) for n in numbers]))
            for path, numbers in FEEDS.items()}


def test_a_failed_shard_stops_neither_the_other_shards_nor_the_load(db_url, settings, monkeypatch):
    one_feed_a_shard = settings.replace(shard_size=1, workers=1)
    with FeedServer(served(0)) as server:
        sources = [FeedSource(server.url(path)) for path in FEEDS]
        lost = server.url("/lost.xml")
        local_runner.ingest(db_url, one_feed_a_shard, sources, "run-0")  # both feeds' next checks: later
        stored = query(db_url, "SELECT etag, last_modified, body_hash FROM feeds WHERE url = %s", (lost,))
        server.routes = served(1)
        monkeypatch.setattr(storage, "stage_batches", staging_that_loses_the_connection_for(lost))
        with pytest.raises(ShardsFailed, match="server closed the connection unexpectedly") as failed:
            local_runner.ingest(db_url, one_feed_a_shard, sources, "run-1", force=True)  # not due: forced
        assert len(failed.value.failed) == 1
        assert titles(db_url) == titled(1, 2, 3, 4, 11, 12)  # the other shard's new entries landed
        assert query(db_url, """SELECT l.outcome, l.error_kind, l.error FROM fetch_log l
                                JOIN feeds f ON f.id = l.feed_id
                                WHERE l.run_id = 'run-1' AND f.url = %s""", (lost,)) == [
            ("error", "internal_error", load.UNSTAGED_ERROR)]
        # nothing of the lost body describes the feed: the next fetch is a full one
        assert query(db_url, "SELECT etag, last_modified, body_hash FROM feeds WHERE url = %s", (lost,)) == stored
        assert scalar(db_url, "SELECT last_error_kind FROM feeds WHERE url = %s", (lost,)) == "internal_error"
        # it loaded, and says which task did not
        [lost_shard] = failed.value.failed
        assert query(db_url, "SELECT status, loaded_at IS NOT NULL, summary->'failed_tasks' FROM ingest_runs "
                             "WHERE run_id = 'run-1'") == [("tasks_failed", True, [f"ingest_shard_{lost_shard}"])]

        # clearing the failed shard of the loaded run stages nothing no load would take
        monkeypatch.undo()
        with pytest.raises(RunNotLoadable, match="loaded already"):
            tasks.ingest_shard(db_url, one_feed_a_shard, "run-1", lost_shard, tasks.utcnow())
        assert scalar(db_url, "SELECT count(*) FROM staged_entries") == 0

        again = local_runner.ingest(db_url, one_feed_a_shard, sources, "run-2")  # due feeds only
    assert titles(db_url) == titled(1, 2, 3, 4, 11, 12, 13, 14)
    assert (again["totals"]["fetched"], again["totals"]["new"]) == (1, 2)  # the lost feed alone


def test_a_run_whose_only_shard_failed_is_tasks_failed_not_every_feed_failed(db_url, settings, monkeypatch):
    """A run of one shard (a small list, the hot lane), lost: its feeds failed because the
    task did, not at fetch nor in their content, so the run says so: `tasks_failed`, not
    `every_feed_failed` nor a systemic fault (network down?)."""
    with FeedServer(served(0)) as server:
        def lose_the_connection(*args):
            raise psycopg2.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(storage, "stage_batches", lose_the_connection)
        with pytest.raises(ShardsFailed, match="connection unexpectedly") as failed:
            local_runner.ingest(db_url, settings.replace(workers=1), [FeedSource(server.url("/lost.xml"))],
                                "run-1", force=True)
    assert "and the run" not in str(failed.value)
    assert scalar(db_url, "SELECT count(*) FROM articles") == 0
    assert query(db_url, "SELECT status, summary->'totals'->'lost_to_tasks', summary->'failed_tasks' "
                         "FROM ingest_runs WHERE run_id = 'run-1'") == [("tasks_failed", 1, ["ingest_shard_0"])]


def test_a_failed_shard_and_the_runs_own_failure_are_both_said(db_url, settings, monkeypatch):
    """When every other feed fails too (here: its body is no feed), the run's own verdict
    (every feed failed) comes with the shards' failure, not instead of it."""
    routes = {"/lost.xml": Route(rss([item(3)])), "/broken.xml": Route(b"<html><p>no feed</p></html>", "text/html")}
    with FeedServer(routes) as server:
        monkeypatch.setattr(storage, "stage_batches", staging_that_loses_the_connection_for(server.url("/lost.xml")))
        with pytest.raises(ShardsFailed, match="connection unexpectedly.*and the run: .*feeds failed"):
            local_runner.ingest(db_url, settings.replace(shard_size=1, workers=1),
                                [FeedSource(server.url(path)) for path in routes], "run-1", force=True)
    assert scalar(db_url, "SELECT count(*) FROM articles") == 0
    assert scalar(db_url, "SELECT status FROM ingest_runs WHERE run_id = 'run-1'") == "every_feed_failed"


def test_the_cli_exits_5_with_the_summary_of_what_landed_naming_the_failed_shard(db_url, settings, monkeypatch,
                                                                                    tmp_path, capsys):
    """`python -m pipeline ingest --json`, one shard lost: exit 5 (not 0, not another
    failure's code), and the summary printed is the run's as stored: its status says a
    task failed, which one, and counts the other shard's entries."""
    with FeedServer(served(0)) as server:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text("".join(server.url(path) + "\n" for path in FEEDS))
        monkeypatch.setattr(storage, "stage_batches", staging_that_loses_the_connection_for(server.url("/lost.xml")))
        code = cli.run_ingest(settings.replace(shard_size=1, database_url=db_url), feeds, as_json=True, run_id="cli-1")
    summary = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_SHARDS == 5
    assert (summary["status"], summary["totals"]["new"], summary["totals"]["failed"]) == ("tasks_failed", 2, 1)
    assert len(summary["failed_tasks"]) == 1 and summary["failed_tasks"][0].startswith("ingest_shard_")
    assert titles(db_url) == titled(1, 2)


def _shard_whose_worker_dies(marker_dir, die_on_every_attempt: bool):
    """`ingest_shard` whose shard 1 kills its own worker process (SIGKILL, as the kernel's
    out-of-memory killer does): on every attempt, or on its first only (a kill from outside)."""
    real = local_runner.ingest_shard

    def ingest_shard(db_url, settings, run_id, shard, now):
        marker = marker_dir / f"shard-{shard}-started"
        if shard == 1 and (die_on_every_attempt or not marker.exists()):
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(db_url, settings, run_id, shard, now)
    return ingest_shard


FOUR_FEEDS = {f"/f{i}.xml": Route(rss([item(10 * i + n) for n in range(2)])) for i in range(4)}


def test_a_worker_killed_while_running_a_shard_fails_that_shard_alone(db_url, settings, monkeypatch, tmp_path):
    """A shard that kills its worker every time (a feed that runs it out of memory) fails
    alone, after one more attempt on its own; the shards beside it in the broken pool and
    the ones not started yet land, and the run says which task failed."""
    monkeypatch.setattr(local_runner, "ingest_shard", _shard_whose_worker_dies(tmp_path, True))
    with FeedServer(FOUR_FEEDS) as server:
        sources = [FeedSource(server.url(path)) for path in FOUR_FEEDS]
        with pytest.raises(ShardsFailed) as failed:
            local_runner.ingest(db_url, settings.replace(shard_size=1, workers=2), sources, "run-killed")
    assert failed.value.failed == {1: local_runner.WORKER_DIED}
    assert scalar(db_url, "SELECT count(*) FROM articles") == 6  # three feeds' two entries each
    assert query(db_url, "SELECT status, summary->'failed_tasks' FROM ingest_runs") == [
        ("tasks_failed", ["ingest_shard_1"])]


def test_a_worker_killed_once_costs_nothing(db_url, settings, monkeypatch, tmp_path):
    """A worker killed from outside while it ran a shard: that shard and the one beside it
    run again, and every entry lands."""
    monkeypatch.setattr(local_runner, "ingest_shard", _shard_whose_worker_dies(tmp_path, False))
    with FeedServer(FOUR_FEEDS) as server:
        sources = [FeedSource(server.url(path)) for path in FOUR_FEEDS]
        summary = local_runner.ingest(db_url, settings.replace(shard_size=1, workers=2), sources, "run-killed")
    assert summary["totals"]["new"] == scalar(db_url, "SELECT count(*) FROM articles") == 8
    assert query(db_url, "SELECT status FROM ingest_runs") == [("ok",)]


def test_a_worker_dying_while_a_finished_shard_is_reported_loses_no_shard(db_url, settings, monkeypatch, tmp_path):
    """The pool breaks while this process is busy with a finished shard (its report): the
    next shard, handed to the broken pool, is not lost; it runs in the next pool."""
    marker = tmp_path / "first-shard-reported"
    real = local_runner.ingest_shard

    def ingest_shard(db_url, settings, run_id, shard, now):
        if shard == 1:  # dies once shard 0 is being reported
            for _ in range(200):
                if marker.exists():
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(0.05)
        return real(db_url, settings, run_id, shard, now)

    def slow_report(summary):
        if summary.shard == 0:
            marker.touch()
            time.sleep(1.5)  # the worker of shard 1 dies meanwhile

    monkeypatch.setattr(local_runner, "ingest_shard", ingest_shard)
    with FeedServer(FOUR_FEEDS) as server:
        sources = [FeedSource(server.url(path)) for path in FOUR_FEEDS]
        with pytest.raises(ShardsFailed) as failed:
            local_runner.ingest(db_url, settings.replace(shard_size=1, workers=2), sources, "run-race",
                                on_shard=slow_report)
    assert failed.value.failed == {1: local_runner.WORKER_DIED}
    assert scalar(db_url, "SELECT count(*) FROM articles") == 6
