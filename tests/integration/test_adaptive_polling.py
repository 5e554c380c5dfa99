"""Adaptive polling end to end, at simulated times: a fast feed is polled often and a quiet
one rarely, a fetch that shares nothing with what was stored is a possible gap (counted,
warned, polled sooner), a run that cannot take every due feed takes the most urgent
fairly across hosts and counts the rest, and the CLI's `--now` moves the whole run."""

import json
import subprocess
import sys
import os
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from pipeline import load, local_runner
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from tests.helpers import item, query, rss, scalar

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def dated(numbers, end: datetime, every: timedelta) -> list[dict]:
    """Items `numbers` (newest first), dated `every` apart back from `end`."""
    return [item(n, pubDate=format_datetime(end - k * every)) for k, n in enumerate(numbers)]


@pytest.fixture
def server():
    with FeedServer() as srv:
        yield srv


def run(db_url, settings, server, paths, at: datetime, run_id: str, lane: str = "all", host: str = "127.0.0.1"):
    sources = [FeedSource(server.url(p).replace("127.0.0.1", host)) for p in paths]
    return local_runner.ingest(db_url, settings, sources, run_id, clock=lambda: at, lane=lane)


def health(db_url, path_end: str) -> dict:
    rows = query(db_url, """SELECT hot, publish_rate_per_hour, poll_interval, gaps, gaps_7d, next_check_at
                            FROM feed_health WHERE url LIKE %s""", ("%" + path_end,))
    return dict(zip(("hot", "rate", "interval", "gaps", "gaps_7d", "next_check_at"), rows[0]))


@pytest.mark.parametrize("page", [load._OBSERVATIONS_PAGE, 1], ids=["one page", "a feed a page"])
def test_a_fast_feed_is_hot_and_polled_often_a_quiet_one_rarely(db_url, settings, server, page, monkeypatch):
    # the load reads the feeds' observations a page at a time: pages of one feed judge alike
    monkeypatch.setattr(load, "_OBSERVATIONS_PAGE", page)
    server.routes["/fast.xml"] = Route(rss(dated(range(20), T0, timedelta(minutes=1))))
    server.routes["/quiet.xml"] = Route(rss(dated(range(100, 120), T0, timedelta(days=2))))
    run(db_url, settings, server, ["/fast.xml", "/quiet.xml"], T0, "first")
    fast, quiet = health(db_url, "/fast.xml"), health(db_url, "/quiet.xml")
    assert fast["hot"] and not quiet["hot"]
    assert fast["interval"] < timedelta(minutes=15) and fast["next_check_at"] < T0 + timedelta(minutes=15)
    # polled about daily (the maximum, brought forward by the feed's share of the first spread)
    assert timedelta(hours=6) < quiet["interval"] <= timedelta(days=1)
    assert quiet["next_check_at"] == T0 + quiet["interval"]
    assert fast["rate"] > 50 and quiet["rate"] < 1

    # The hot lane ten minutes later takes the hot feed only; the main lane then has nothing due.
    requests = len(server.requests)
    hot = run(db_url, settings, server, ["/fast.xml", "/quiet.xml"], T0 + timedelta(minutes=10), "hot", lane="hot")
    assert [p for p, _ in server.requests[requests:]] == ["/fast.xml"]
    assert hot["lane"] == "hot" and hot["totals"]["feeds"] == 1
    main = run(db_url, settings, server, ["/fast.xml", "/quiet.xml"], T0 + timedelta(minutes=11), "main")
    assert main["totals"]["feeds"] == 0 and main["totals"]["not_due"] == 2


def test_a_fetch_sharing_nothing_with_the_store_is_a_possible_gap(db_url, settings, server):
    server.routes["/f.xml"] = Route(rss(dated(range(20), T0, timedelta(minutes=30))))
    run(db_url, settings, server, ["/f.xml"], T0, "first")
    before = health(db_url, "/f.xml")
    assert before["gaps"] == 0

    # Later the feed serves 20 entries, none of them stored: some may have been missed.
    later = T0 + timedelta(hours=12)
    server.routes["/f.xml"] = Route(rss(dated(range(200, 220), later, timedelta(minutes=30))))
    summary = run(db_url, settings, server, ["/f.xml"], later, "gap")
    assert scalar(db_url, "SELECT possible_gap FROM fetch_log WHERE run_id = 'gap'") is True
    after = health(db_url, "/f.xml")
    assert after["gaps"] == 1  # (gaps_7d counts from the wall clock's now: these fetches are in the past)
    assert after["interval"] <= timedelta(hours=6)  # halved elapsed time at most
    assert summary["totals"]["possible_gaps"] == 1
    assert server.url("/f.xml") in summary["possible_gaps"]
    assert "may have missed entries" in summary["polling_warning"]

    # An overlapping fetch, when the feed is next due, is no gap.
    again = after["next_check_at"]
    server.routes["/f.xml"] = Route(rss(dated(range(202, 222), again, timedelta(minutes=30))))
    summary = run(db_url, settings, server, ["/f.xml"], again, "overlap")
    assert scalar(db_url, "SELECT possible_gap FROM fetch_log WHERE run_id = 'overlap'") is False
    assert summary["totals"]["possible_gaps"] == 0 and summary["polling_warning"] is None
    assert health(db_url, "/f.xml")["gaps"] == 1


def test_a_feed_is_not_fetched_before_its_next_check_at_simulated_times(db_url, settings, server):
    server.routes["/f.xml"] = Route(rss(dated(range(20), T0, timedelta(hours=1))))
    run(db_url, settings, server, ["/f.xml"], T0, "first")
    next_check = health(db_url, "/f.xml")["next_check_at"]
    assert next_check > T0 + timedelta(hours=1)
    requests = len(server.requests)
    early = run(db_url, settings, server, ["/f.xml"], next_check - timedelta(seconds=1), "early")
    assert early["totals"]["not_due"] == 1 and len(server.requests) == requests
    due = run(db_url, settings, server, ["/f.xml"], next_check, "due")
    assert due["totals"]["feeds"] == 1 and len(server.requests) == requests + 1
    assert query(db_url, "SELECT fetched_at FROM fetch_log WHERE run_id = 'due'")[0][0] == next_check


def test_a_full_run_takes_the_most_urgent_fairly_across_hosts_and_counts_the_rest(db_url, settings, server):
    for n in range(6):
        server.routes[f"/f{n}.xml"] = Route(rss(dated(range(n * 100, n * 100 + 5), T0, timedelta(hours=1))))
    settings = settings.replace(run_max_feeds=3)
    a = [FeedSource(server.url(f"/f{n}.xml")) for n in range(4)]  # host 127.0.0.1: four feeds
    b = [FeedSource(server.url(f"/f{n}.xml").replace("127.0.0.1", "localhost")) for n in (4, 5)]
    summary = local_runner.ingest(db_url, settings, a + b, "capped", clock=lambda: T0)
    assert summary["totals"]["feeds"] == 3 and summary["totals"]["deferred"] == 3
    assert "3 due feeds deferred" in summary["polling_warning"]
    hosts = [url.split("/")[2].split(":")[0] for (url,) in query(
        db_url, "SELECT url FROM fetch_log WHERE run_id = 'capped'")]
    assert sorted(hosts) == ["127.0.0.1", "127.0.0.1", "localhost"]  # one host cannot take all three
    # The deferred feeds (never fetched: the most urgent) go first in the next run.
    following = local_runner.ingest(db_url, settings, a + b, "next", clock=lambda: T0 + timedelta(minutes=1))
    fetched = {url for (url,) in query(db_url, "SELECT url FROM fetch_log WHERE run_id = 'next'")}
    first = {url for (url,) in query(db_url, "SELECT url FROM fetch_log WHERE run_id = 'capped'")}
    assert following["totals"]["feeds"] == 3 and not fetched & first


def test_the_cli_runs_at_the_time_it_is_given(db_url, tmp_path, server):
    server.routes["/f.xml"] = Route(rss(dated(range(20), T0, timedelta(hours=1))))
    feeds = tmp_path / "feeds.txt"
    feeds.write_text(server.url("/f.xml") + "\n")
    env = {**os.environ, "DATABASE_URL": db_url, "FETCH_ALLOWED_NETWORKS": "127.0.0.0/8"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "ingest", "--feeds", str(feeds), "--json",
                           "--now", "2026-11-16T10:00:00"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["new"] == 20
    assert query(db_url, "SELECT fetched_at FROM fetch_log")[0][0] == T0
    assert query(db_url, "SELECT started_at FROM ingest_runs")[0][0] == T0
    bad = subprocess.run([sys.executable, "-m", "pipeline", "ingest", "--feeds", str(feeds), "--now", "noon"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "--now must be an ISO date" in bad.stdout + bad.stderr
