"""The DAGs' polling: a hot lane on its own schedule, and runs that take their time from
their data interval, not the wall clock (real Airflow, `dag.test()`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from pipeline.feedserver import FeedServer, Route
from tests.helpers import item, query, rss

pytestmark = pytest.mark.dag

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def test_the_hot_lane_is_the_same_run_on_a_shorter_schedule(dagbag):
    main, hot = dagbag.dags["news_ingest"], dagbag.dags["news_ingest_hot"]
    assert hot.task_ids == main.task_ids
    assert hot.params["lane"] == "hot" and main.params["lane"] == "all"
    assert hot.timetable.summary == "*/3 * * * *" and main.timetable.summary == "*/15 * * * *"
    assert hot.max_active_runs == 1 and hot.catchup is False


def test_runs_take_their_time_from_their_data_interval_and_the_hot_lane_takes_hot_feeds(
        airflow_db, db_url, tmp_path, monkeypatch, dagbag):
    fast = [item(n, pubDate=format_datetime(T0 - timedelta(minutes=n))) for n in range(20)]
    quiet = [item(100 + n, pubDate=format_datetime(T0 - timedelta(days=2 * n))) for n in range(20)]
    with FeedServer({"/fast.xml": Route(rss(fast)), "/quiet.xml": Route(rss(quiet))}) as server:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text(f"{server.url('/fast.xml')}\n{server.url('/quiet.xml')}\n")
        for name, value in {"FEEDS_FILE": str(feeds), "DATABASE_URL": db_url,
                            "NEWS_DATA_DIR": str(tmp_path / "data"),
                            "FETCH_ALLOWED_NETWORKS": "127.0.0.0/8"}.items():
            monkeypatch.setenv(name, value)
        first = dagbag.dags["news_ingest"].test(logical_date=T0)
        assert first.state == "success"
        assert first.data_interval_end == T0  # a manual run at a past logical date
        times = {t for (t,) in query(db_url, "SELECT fetched_at FROM fetch_log WHERE run_id = %s",
                                     (first.run_id,))}
        assert times == {first.data_interval_end}  # the run's time, not today's
        assert query(db_url, "SELECT started_at FROM ingest_runs WHERE run_id = %s",
                     (first.run_id,))[0][0] == first.data_interval_end
        hot = dict(query(db_url, "SELECT url, hot FROM feed_health"))
        assert hot == {server.url("/fast.xml"): True, server.url("/quiet.xml"): False}

        later = first.data_interval_end + timedelta(minutes=15)
        second = dagbag.dags["news_ingest_hot"].test(logical_date=later)
        assert second.state == "success"
        fetched = query(db_url, "SELECT url, fetched_at FROM fetch_log WHERE run_id = %s", (second.run_id,))
        assert fetched == [(server.url("/fast.xml"), second.data_interval_end)]
        assert query(db_url, "SELECT lane FROM ingest_runs WHERE run_id = %s", (second.run_id,))[0][0] == "hot"
