"""The maintenance DAG: shaped as documented (daily; partitions created, then expired ones
dropped), and a run with dag.test() on a real news database does both at the run's time."""

from datetime import UTC, datetime

import pytest

from tests.helpers import query

pytestmark = pytest.mark.dag


def test_maintenance_dag_shape(dagbag):
    assert dagbag.import_errors == {}
    dag = dagbag.dags["news_maintenance"]
    assert type(dag.timetable).__name__ == "CronTriggerTimetable" and dag.timetable.expression == "0 0 * * *"
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert set(dag.task_ids) == {"create_partitions", "drop_expired"}
    # Ahead first: a drop that cannot have its lock today never keeps tomorrow's partition from existing.
    assert dag.get_task("drop_expired").upstream_task_ids == {"create_partitions"}
    assert all(dag.get_task(t).retries >= 1 for t in dag.task_ids)


def test_a_maintenance_run_creates_ahead_and_drops_what_expired(airflow_db, db_url, monkeypatch, dagbag):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("FETCH_LOG_RETENTION_DAYS", "30")
    query(db_url, """WITH f AS (INSERT INTO feeds (url) VALUES ('http://a.example/feed') RETURNING id)
                     INSERT INTO fetch_log (run_id, feed_id, url, fetched_at, outcome)
                     SELECT r, id, 'http://a.example/feed', at::timestamptz, 'ok' FROM f,
                            (VALUES ('old', '2031-01-10 00:00+00'), ('new', '2031-03-10 00:00+00')) v(r, at)
                     RETURNING 1""")
    run = dagbag.dags["news_maintenance"].test(logical_date=datetime(2031, 3, 20, tzinfo=UTC))
    assert run.state == "success"
    names = {n for (n,) in query(db_url, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                         "WHERE i.inhparent = 'fetch_log'::regclass")}
    assert {"fetch_log_p203103", "fetch_log_p203104", "fetch_log_p203105", "fetch_log_p203106"} <= names
    assert "fetch_log_p203101" not in names  # moved out of DEFAULT, then past the 30 days
    assert query(db_url, "SELECT run_id FROM fetch_log") == [("new",)]
