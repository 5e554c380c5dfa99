"""The DAGs follow their runs' time: a hot lane on its own schedule, runs that take their
time from their data interval (not the wall clock), and runs for past intervals (a
backfill) that re-process that interval's archived bodies, idempotently (real Airflow,
`dag.test()`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from pipeline import local_runner
from pipeline.config import Settings
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from pipeline.run_ids import ingest_run_id
from tests.helpers import item, query, rss, scalar

pytestmark = pytest.mark.dag


def test_the_hot_lane_is_the_same_run_on_a_shorter_schedule(dagbag):
    main, hot = dagbag.dags["news_ingest"], dagbag.dags["news_ingest_hot"]
    assert hot.task_ids == main.task_ids
    assert hot.params["lane"] == "hot" and main.params["lane"] == "all"
    assert hot.timetable.summary == "*/3 * * * *" and main.timetable.summary == "*/15 * * * *"
    assert hot.max_active_runs == 1 and hot.catchup is False


@pytest.fixture
def environment(db_url, tmp_path, monkeypatch):
    def point_at(server: FeedServer, *paths: str) -> None:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text("".join(server.url(p) + "\n" for p in paths))
        for name, value in {"FEEDS_FILE": str(feeds), "DATABASE_URL": db_url,
                            "NEWS_DATA_DIR": str(tmp_path / "data"),
                            "FETCH_ALLOWED_NETWORKS": "127.0.0.0/8"}.items():
            monkeypatch.setenv(name, value)
    return point_at


def test_runs_take_their_time_from_their_data_interval_and_the_hot_lane_takes_hot_feeds(
        airflow_db, db_url, environment, dagbag):
    recent = datetime.now(timezone.utc) - timedelta(minutes=40)  # within PAST_RUN_REPLAY_AFTER
    t0 = recent.replace(minute=recent.minute // 15 * 15, second=0, microsecond=0)  # on the schedule
    fast = [item(n, pubDate=format_datetime(t0 - timedelta(minutes=n))) for n in range(20)]
    quiet = [item(100 + n, pubDate=format_datetime(t0 - timedelta(days=2 * n))) for n in range(20)]
    with FeedServer({"/fast.xml": Route(rss(fast)), "/quiet.xml": Route(rss(quiet))}) as server:
        environment(server, "/fast.xml", "/quiet.xml")
        first = dagbag.dags["news_ingest"].test(logical_date=t0)
        assert first.state == "success"
        assert first.data_interval_end == t0  # a manual run at a past logical date
        times = {t for (t,) in query(db_url, "SELECT fetched_at FROM fetch_log WHERE run_id = %s",
                                     (first.run_id,))}
        assert times == {t0}  # the run's time, not the wall clock's
        assert query(db_url, "SELECT DISTINCT first_seen_at FROM articles") == [(t0,)]  # the load's too
        assert scalar(db_url, "SELECT started_at FROM ingest_runs WHERE run_id = %s", (first.run_id,)) == t0
        hot = dict(query(db_url, "SELECT url, hot FROM feed_health"))
        assert hot == {server.url("/fast.xml"): True, server.url("/quiet.xml"): False}

        second = dagbag.dags["news_ingest_hot"].test(logical_date=t0 + timedelta(minutes=15))
        assert second.state == "success"
        hot_run = ingest_run_id("news_ingest_hot", second.run_id)
        fetched = query(db_url, "SELECT url, fetched_at FROM fetch_log WHERE run_id = %s", (hot_run,))
        assert fetched == [(server.url("/fast.xml"), second.data_interval_end)]
        assert scalar(db_url, "SELECT lane FROM ingest_runs WHERE run_id = %s", (hot_run,)) == "hot"


def test_both_lanes_at_the_same_quarter_hour_each_run_their_own_plan(airflow_db, db_url, environment, dagbag):
    """Both DAGs have a run of the same Airflow id at every quarter hour: the hot lane's,
    planned first (no hot feed), must not become the main run's plan (which would fetch nothing)."""
    recent = datetime.now(timezone.utc) - timedelta(minutes=20)
    t0 = recent.replace(minute=recent.minute // 15 * 15, second=0, microsecond=0)
    feeds = {f"/f{n}.xml": Route(rss([item(10 * n + k) for k in range(3)])) for n in range(3)}
    with FeedServer(feeds) as server:
        environment(server, *feeds)
        hot = dagbag.dags["news_ingest_hot"].test(run_after=t0, logical_date=t0)
        main = dagbag.dags["news_ingest"].test(run_after=t0, logical_date=t0)
        assert hot.run_id == main.run_id  # Airflow's ids: unique per DAG only
        assert hot.state == main.state == "success"
        runs = dict(query(db_url, "SELECT lane, feed_count FROM ingest_runs"))
        assert runs == {"hot": 0, "all": 3}
        assert scalar(db_url, "SELECT count(*) FROM fetch_log WHERE run_id = %s", (main.run_id,)) == 3
        assert scalar(db_url, "SELECT count(*) FROM articles") == 9


T1 = datetime(2026, 11, 10, 10, 5, tzinfo=timezone.utc)
T2 = T1 + timedelta(minutes=15)
T3 = T2 + timedelta(minutes=5)


def test_a_backfill_replays_its_intervals_archived_bodies_idempotently(
        airflow_db, db_url, environment, dagbag, tmp_path):
    settings = Settings.from_env({"DATABASE_URL": db_url, "NEWS_DATA_DIR": str(tmp_path / "data")},
                                 ).allowing("127.0.0.0/8")
    dated = {"pubDate": format_datetime(T1 - timedelta(hours=1))}
    with FeedServer({"/f.xml": Route(rss([item(n, **dated) for n in range(5)]))}) as server:
        environment(server, "/f.xml")
        source = [FeedSource(server.url("/f.xml"))]
        # Two fetches in the past, each body archived: the second changes story 0 and adds two.
        local_runner.ingest(db_url, settings, source, "then-1", clock=lambda: T1, force=True)
        server.routes["/f.xml"] = Route(rss([item(0, description="<p>Corrected.</p>", **dated)]
                                            + [item(n, **dated) for n in range(1, 7)]))
        local_runner.ingest(db_url, settings, source, "then-2", clock=lambda: T2, force=True)
        # Five minutes later stories 5 and 6 have scrolled out of the feed, and 8 is new.
        server.routes["/f.xml"] = Route(rss([item(0, description="<p>Corrected.</p>", **dated)]
                                            + [item(n, **dated) for n in (1, 2, 3, 4, 8)]))
        local_runner.ingest(db_url, settings, source, "then-3", clock=lambda: T3, force=True)
        assert scalar(db_url, "SELECT count(*) FROM articles") == 8
        query(db_url, "DELETE FROM articles WHERE canonical_url LIKE '%%/story/5' OR canonical_url LIKE '%%/story/6' RETURNING 1")
        requests = len(server.requests)

        # The interval holding T2 and T3 ([10:15, 10:30)) is re-processed from the archive, both
        # bodies in order: the stories only the earlier one held come back.
        replayed = dagbag.dags["news_ingest"].test(logical_date=T2 + timedelta(minutes=10))
        assert replayed.state == "success"
        assert len(server.requests) == requests  # nothing fetched
        assert scalar(db_url, "SELECT kind FROM ingest_runs WHERE run_id = %s", (replayed.run_id,)) == "replay"
        assert query(db_url, "SELECT fetched_at FROM fetch_log WHERE run_id = %s", (replayed.run_id,)) == [(T3,)]
        assert query(db_url, "SELECT fetched_at FROM fetch_log WHERE run_id LIKE %s",
                     (replayed.run_id + "__earlier%",)) == [(T2,)]
        assert scalar(db_url, "SELECT count(*) FROM articles") == 8  # the lost stories are back
        assert scalar(db_url, "SELECT count(*) FROM articles WHERE first_run_id LIKE %s",
                      (replayed.run_id + "%",)) == 2

        # The earlier interval brings nothing back over the newer content; again: nothing new.
        earlier = dagbag.dags["news_ingest"].test(logical_date=T1 + timedelta(minutes=10))
        again = dagbag.dags["news_ingest"].test(logical_date=T2 + timedelta(minutes=10))
        assert earlier.state == again.state == "success"
        assert query(db_url, "SELECT fetched_at FROM fetch_log WHERE run_id = %s", (earlier.run_id,)) == [(T1,)]
        assert scalar(db_url, "SELECT count(*) FROM articles") == 8
        assert scalar(db_url, "SELECT count(*) FROM articles WHERE first_run_id LIKE %s OR first_run_id LIKE %s",
                      (earlier.run_id + "%", again.run_id + "%")) == 0
        assert scalar(db_url, "SELECT text FROM articles WHERE canonical_url LIKE '%%/story/0'") == "Corrected."
        assert len(server.requests) == requests
