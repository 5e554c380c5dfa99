"""The ingest DAG's run state is honest: a run that failed ends failed in Airflow, with the
reason in the failing task's log; a run with only a validation warning stays green and
says so.

Each case is one `dag.test()` run on real Airflow and PostgreSQL, with feeds served on
loopback: a clean run, validation past the fail level, a load the database refuses, a
shard task that fails for good (the others' entries still land), every feed failing, and
a warning-level run.
"""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from pipeline.feedserver import FeedServer, Route
from tests.helpers import item, query, rss, scalar, staging_that_loses_the_connection_for

pytestmark = pytest.mark.dag

GOOD = [item(n) for n in range(10)]
# Every entry of BAD fails the row contract (a javascript: link).
BAD = [item(n, link=f"javascript:void({n})") for n in range(100, 104)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One data dir for the module: Great Expectations' context is built once per process."""
    return tmp_path_factory.mktemp("news-data")


@pytest.fixture
def ingest(airflow_db, db_url, data_dir, tmp_path, monkeypatch, dagbag):
    """`ingest(urls, **env)`: one dag.test() run of news_ingest on those feeds and settings."""
    dag = dagbag.dags["news_ingest"]

    def run(urls: list[str], **env: str):
        feeds = tmp_path / "feeds.txt"
        feeds.write_text("".join(url + "\n" for url in urls))
        settings = {"FEEDS_FILE": str(feeds), "DATABASE_URL": db_url,
                    "NEWS_DATA_DIR": str(data_dir),
                    "FETCH_ALLOWED_NETWORKS": "127.0.0.0/8", "FETCH_CONNECT_TIMEOUT": "2",
                    "FETCH_TOTAL_TIMEOUT": "5", "QUARANTINE_MIN_ENTRIES": "3", **env}
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        return dag.test()

    return run


@pytest.fixture
def serve():
    """`serve({path: entries})`: RSS feeds on loopback; returns their URLs."""
    servers = []

    def start(feeds: dict[str, list[dict]]) -> list[str]:
        server = FeedServer({path: Route(rss(entries)) for path, entries in feeds.items()}).start()
        servers.append(server)
        return [server.url(path) for path in feeds]

    yield start
    for server in servers:
        server.stop()


def task_states(dr) -> dict[str, str]:
    return {ti.task_id if ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}": ti.state
            for ti in dr.get_task_instances()}


def report_return(dr) -> dict:
    return dr.get_task_instance("report").xcom_pull(task_ids="report")


def recorded(db_url: str, dr) -> tuple:
    return query(db_url, "SELECT status, validation_error, validation_warning FROM ingest_runs "
                         "WHERE run_id = %s", (dr.run_id,))[0]


def articles(db_url: str) -> int:
    return scalar(db_url, "SELECT count(*) FROM articles")


def test_a_clean_run_is_green(ingest, serve, db_url):
    dr = ingest(serve({"/fine.xml": GOOD}))
    assert dr.state == "success"
    assert set(task_states(dr).values()) == {"success"}
    assert recorded(db_url, dr) == ("ok", None, None)
    assert articles(db_url) == 10


def test_validation_past_the_fail_level_fails_the_run_and_still_loads(ingest, serve, db_url, capfd):
    broken, fine = serve({"/broken.xml": BAD, "/fine.xml": GOOD})
    dr = ingest([broken, fine])
    assert dr.state == "failed"
    states = task_states(dr)
    assert (states["load"], states["report"]) == ("failed", "failed")
    status, error, _ = recorded(db_url, dr)
    assert status == "validation_failed" and "past the fail level" in error and broken in error
    # Terminal: the load failed on its first try (after landing the rows), not after its retries.
    assert dr.get_task_instance("load").try_number == 1
    assert f"AirflowFailException: validation failed: {error}" in capfd.readouterr().out
    assert articles(db_url) == 10  # the good rows landed...
    assert scalar(db_url, "SELECT count(*) FROM quarantine") == 4  # ...and the bad ones are held


def test_a_load_the_database_refuses_fails_the_run(ingest, serve, db_url, dagbag, monkeypatch,
                                                   capfd):
    query(db_url, """
        CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'articles are read-only during maintenance'; END $$;
        CREATE TRIGGER refuse_writes BEFORE INSERT ON articles
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_writes();
        SELECT 1""")
    # The load keeps its retries (a refusal may be transient), a second apart here, not 20 s.
    monkeypatch.setattr(dagbag.dags["news_ingest"].get_task("load"), "retry_delay", timedelta(0))
    dr = ingest(serve({"/fine.xml": GOOD}))
    assert dr.state == "failed"
    states = task_states(dr)
    assert (states["load"], states["report"]) == ("failed", "failed")
    assert recorded(db_url, dr)[0] == "failed"
    out = capfd.readouterr().out
    assert "articles are read-only during maintenance" in out  # the load's own log
    assert "AirflowFailException: run failed: the batch was not loaded; failed tasks: load" in out
    assert articles(db_url) == 0


def test_a_failed_shard_task_fails_the_run_and_the_other_shards_entries_land(ingest, serve, db_url, dagbag,
                                                                               monkeypatch, capfd):
    """One shard task fails for good (its staging raises as a lost connection does, on every
    try): the load still runs and lands the other shard's entries, the lost feed is its
    error in the run, and the run is red, naming the failed task."""
    from pipeline import load, storage

    fine, lost = serve({"/fine.xml": GOOD, "/lost.xml": [item(n) for n in range(20, 23)]})
    monkeypatch.setattr(storage, "stage_batches", staging_that_loses_the_connection_for(lost))
    monkeypatch.setattr(dagbag.dags["news_ingest"].get_task("ingest_shard"), "retry_delay", timedelta(0))
    dr = ingest([fine, lost], FEEDS_PER_SHARD="1")
    assert dr.state == "failed"
    states = task_states(dr)
    assert sorted(states[t] for t in states if t.startswith("ingest_shard")) == ["failed", "success"]
    assert (states["load"], states["report"]) == ("success", "failed")
    assert articles(db_url) == 10  # the other shard's entries landed
    assert query(db_url, """SELECT l.error_kind, l.error FROM fetch_log l JOIN feeds f ON f.id = l.feed_id
                            WHERE l.run_id = %s AND f.url = %s""", (dr.run_id, lost)) == [
        ("internal_error", load.UNSTAGED_ERROR)]
    failed_shard = next(t for t, state in states.items() if t.startswith("ingest_shard") and state == "failed")
    out = capfd.readouterr().out
    assert f"AirflowFailException: failed tasks: {failed_shard}" in out
    assert "not loaded" not in out  # it was
    assert recorded(db_url, dr)[0] == "tasks_failed"  # the runs table says so too


def test_a_run_of_one_failed_shard_is_red_naming_the_task_not_a_network_fault(ingest, serve, db_url, dagbag,
                                                                              monkeypatch, capfd):
    """The run's only shard task fails for good (a small list, the hot lane): its feed did
    not fail at fetch, so the run is neither "every feed failed" nor a systemic fault; it
    is red naming the task, and recorded `tasks_failed`."""
    from pipeline import storage

    (lost,) = serve({"/lost.xml": GOOD})
    monkeypatch.setattr(storage, "stage_batches", staging_that_loses_the_connection_for(lost))
    monkeypatch.setattr(dagbag.dags["news_ingest"].get_task("ingest_shard"), "retry_delay", timedelta(0))
    dr = ingest([lost])
    assert dr.state == "failed"
    states = task_states(dr)
    assert (states["ingest_shard_0"], states["load"], states["report"]) == ("failed", "success", "failed")
    out = capfd.readouterr().out
    assert "AirflowFailException: failed tasks: ingest_shard_0" in out
    assert "systemic" not in out and "nothing was loaded" not in out
    assert recorded(db_url, dr)[0] == "tasks_failed"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_feed_failing_fails_the_run(ingest, db_url, capfd):
    port = closed_port()
    dr = ingest([f"http://127.0.0.1:{port}/a.xml", f"http://127.0.0.1:{port}/b.xml"])
    assert dr.state == "failed"
    states = task_states(dr)
    assert states.pop("report") == "failed"
    assert set(states.values()) == {"success"}  # each feed's failure is data; the report judges
    assert recorded(db_url, dr)[0] == "systemic_failure"
    out = capfd.readouterr().out
    assert "AirflowFailException: all 2 feeds failed to fetch: a systemic fault" in out


def test_every_feed_serving_a_broken_body_fails_the_run(ingest, db_url, capfd):
    """Not a network fault, but nothing to load either: the run is red, not a green no-op."""
    server = FeedServer({"/page.html": Route(b"<html><body>not a feed</body></html>", "text/html"),
                         "/cut.xml": Route(b'<?xml version="1.0"?><rss version="2.0"><chan')}).start()
    try:
        dr = ingest([server.url("/page.html"), server.url("/cut.xml")])
    finally:
        server.stop()
    assert dr.state == "failed"
    assert task_states(dr)["report"] == "failed"
    assert recorded(db_url, dr)[0] == "every_feed_failed"
    assert "AirflowFailException: all 2 feeds failed (at fetch or in their content)" in capfd.readouterr().out


def test_a_warning_level_run_is_green_and_says_so(ingest, serve, db_url, capfd):
    one_bad = GOOD + [item(99, link="javascript:x()")]  # 1 of 11: past 5 %, not past 50 %
    dr = ingest(serve({"/f.xml": one_bad}), QUARANTINE_WARN_RATIO="0.05")
    assert dr.state == "success"
    status, error, warning = recorded(db_url, dr)
    assert (status, error) == ("ok", None) and "past the warn level" in warning
    assert report_return(dr)["validation_warning"] == warning
    assert f"validation warning: {warning}" in capfd.readouterr().out
    assert articles(db_url) == 10
