"""The ingest DAG: imports cleanly, is shaped as documented, and runs end to end with dag.test()."""

from datetime import timedelta

import pytest

from pipeline.config import PROJECT_ROOT
from pipeline.demo import demo_feed_list, serve_demo
from tests.helpers import query, scalar

pytestmark = pytest.mark.dag


def test_dagbag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "news_ingest" in dagbag.dags


def test_dag_shape(dagbag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.dags["news_ingest"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dagbag.dags["news_table_checks"].task_ids == ["check_tables"]
    assert set(dag.task_ids) == {"prepare", "ingest_shard", "load", "report"}
    assert dag.get_task("load").upstream_task_ids == {"ingest_shard"}  # one pass per shard, then load
    fetch = dag.get_task("ingest_shard")
    assert fetch.pool == "feed_fetch"
    assert fetch.retries >= 1 and fetch.retry_exponential_backoff
    assert fetch.max_retry_delay <= timedelta(minutes=10)
    assert dag.get_task("load").outlets, "load emits the articles asset"


def test_dag_file_parses_cheaply():
    """Heavy libraries are imported inside tasks, never when the DAG file is parsed."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]); "
        "heavy = [m for m in ('great_expectations', 'feedparser', 'pandas', 'nh3') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "dags")}
    out = subprocess.run([sys.executable, "-c", code, str(PROJECT_ROOT / "dags" / "news_ingest.py")],
                         capture_output=True, text=True, timeout=120, check=True, env=env)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), out.stdout


def _schedules_parsed(env: dict[str, str]) -> list[str]:
    """The ingest DAGs' timetables' cron expressions, from the DAG file parsed in a fresh
    process with `env` added to the environment (unset: removed)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from airflow.dag_processing.dagbag import DagBag; "
        "bag = DagBag(dag_folder=sys.argv[1]); "
        "assert not bag.import_errors, bag.import_errors; "
        "print(bag.dags['news_ingest'].timetable._expression, '|', bag.dags['news_ingest_hot'].timetable._expression)"
    )
    full = {k: v for k, v in os.environ.items() if k not in env}
    full.update({k: v for k, v in env.items() if v is not None}, PYTHONPATH=str(PROJECT_ROOT / "dags"))
    out = subprocess.run([sys.executable, "-c", code, str(PROJECT_ROOT / "dags" / "news_ingest.py")],
                         capture_output=True, text=True, timeout=120, env=full)
    assert out.returncode == 0, out.stderr[-2000:]
    return [part.strip() for part in out.stdout.strip().splitlines()[-1].split("|")]


def test_schedules_come_from_the_settings_and_a_bad_other_setting_does_not_break_the_dag_file():
    """INGEST_SCHEDULE and HOT_INGEST_SCHEDULE set the lanes' timetables (defaults: the
    settings' own); a bad value of another setting is the tasks' error, not the DAG file's."""
    assert _schedules_parsed({"INGEST_SCHEDULE": None, "HOT_INGEST_SCHEDULE": None}) == [
        "*/15 * * * *", "*/3 * * * *"]
    assert _schedules_parsed({"INGEST_SCHEDULE": "0 * * * *", "HOT_INGEST_SCHEDULE": "",
                              "FETCH_TOTAL_TIMEOUT": "not a number"}) == ["0 * * * *", "*/3 * * * *"]


def test_dag_runs_end_to_end_and_a_second_run_adds_no_duplicate(airflow_db, db_url, tmp_path, monkeypatch, dagbag):
    server = serve_demo(0)
    feeds = tmp_path / "feeds.txt"
    feeds.write_text(demo_feed_list(server))
    monkeypatch.setenv("FEEDS_FILE", str(feeds))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("FETCH_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("NEWS_DATA_DIR", str(tmp_path))
    dag = dagbag.dags["news_ingest"]
    try:
        first = dag.test()
        assert first.state == "success"
        articles = query(db_url, "SELECT id, canonical_url FROM articles ORDER BY id")
        assert len(articles) == 8
        assert scalar(db_url, "SELECT count(*) FROM quarantine") == 1
        assert scalar(db_url, "SELECT status FROM ingest_runs WHERE run_id = %s", (first.run_id,)) == "ok"
        # The same entries in new bytes: fetched and parsed again, all recorded as duplicates.
        server.routes = {path: type(route)(route.body + b"<!-- served again -->", route.content_type)
                         for path, route in server.routes.items()}
        second = dag.test(run_conf={"force": True})  # not due yet: fetch anyway
        assert second.state == "success"
        assert query(db_url, "SELECT id, canonical_url FROM articles ORDER BY id") == articles
        counts = scalar(db_url, "SELECT counts FROM ingest_runs WHERE run_id = %s", (second.run_id,))
        assert counts["new"] == 0 and counts["entries"] == 11 and counts["duplicates"] == 10
    finally:
        server.stop()


def test_table_checks_run_on_the_asset_the_ingest_emits(airflow_db, db_url, tmp_path, monkeypatch, dagbag):
    ingest, checks = dagbag.dags["news_ingest"], dagbag.dags["news_table_checks"]
    [outlet] = ingest.get_task("load").outlets
    assert outlet.name == "news_articles"
    assert "news_articles" in str(checks.timetable.asset_condition)
    server = serve_demo(0)
    feeds = tmp_path / "feeds.txt"
    feeds.write_text(demo_feed_list(server))
    for name, value in {"FEEDS_FILE": str(feeds), "DATABASE_URL": db_url, "NEWS_DATA_DIR": str(tmp_path),
                        "FETCH_ALLOWED_NETWORKS": "127.0.0.0/8"}.items():
        monkeypatch.setenv(name, value)
    try:
        assert ingest.test().state == "success"
    finally:
        server.stop()
    run = checks.test()
    assert run.state == "success"
    rows = dict(query(db_url, "SELECT suite, success FROM validation_runs WHERE run_id = %s", (run.run_id,)))
    assert rows == {"articles_table": True, "duplicates_table": True, "clusters_table": True}
    assert scalar(db_url, "SELECT element_count FROM validation_runs WHERE suite = 'clusters_table'") == 2
    assert scalar(db_url, "SELECT element_count FROM validation_runs WHERE suite = 'articles_table'") == 8
    # A stored article dated in the future fails the table check, loudly.
    query(db_url, "UPDATE articles SET published_at = now() + interval '30 days' WHERE id = (SELECT min(id) FROM articles) RETURNING 1")
    assert checks.test().state == "failed"
