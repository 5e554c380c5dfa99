"""Politeness across workers: the per-host limit and the delay between request starts hold
over every process sharing the news database (PostgreSQL advisory locks), counted by a
real server on loopback; a crashed worker's slots come back; a busy host holds no
fetching thread that another host could use."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from pipeline import tasks
from pipeline.feedserver import FeedServer, Route
from pipeline.fetch import fetch_all
from pipeline.host_slots import Busy, HostSlots, Lease
from pipeline.records import FeedSource, FeedState, FetchOutcome
from tests.helpers import item, query, rss

NOW = datetime(2026, 11, 20, tzinfo=UTC)


class Stamped(list):
    """FeedServer.requests that also notes when each request arrived (monotonic)."""

    def append(self, request: tuple) -> None:
        super().append((time.monotonic(), *request))


def _ingest_shard(db_url, settings, run_id, shard, ready, go) -> None:
    """One worker process: ready, then wait for the go, then fetch (and stage) its shard."""
    ready.set()
    go.wait(60)
    tasks.ingest_shard(db_url, settings, run_id, shard, NOW)


def test_two_workers_on_one_host_of_40_feeds_never_exceed_its_limit_or_its_delay(db_url, settings):
    per_host, delay, serving = 3, 0.1, 0.3
    routes = {f"/f{i}.xml": Route(rss([item(i)]), delay=serving, validators=False) for i in range(40)}
    with FeedServer(routes) as server:
        server.requests = Stamped()
        # The workers' settings name the database: the fetch stage shares its host slots there.
        polite = settings.replace(per_host_concurrency=per_host, host_delay_s=delay, shard_size=20,
                                  fetch_concurrency=8, database_url=db_url)
        shards = tasks.prepare_run(db_url, polite, "two-workers", [FeedSource(server.url(p)) for p in routes], NOW)
        assert shards == [0, 1]
        context = multiprocessing.get_context("spawn")  # this process runs server threads: no fork
        go = context.Event()
        readies = [context.Event() for _ in shards]
        workers = [context.Process(target=_ingest_shard, args=(db_url, polite, "two-workers", shard, ready, go))
                   for shard, ready in zip(shards, readies, strict=True)]
        for worker in workers:
            worker.start()
        for ready in readies:
            assert ready.wait(60)
        go.set()
        for worker in workers:
            worker.join(60)
        assert [w.exitcode for w in workers] == [0, 0]
        stamps = list(server.requests)

    assert query(db_url, "SELECT outcome, count(*) FROM fetch_log GROUP BY outcome") == [("ok", 40)]
    assert server.max_in_flight == per_host  # reached: the limit was what held it back
    starts = sorted(at for at, _, _ in stamps)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= delay - 0.02, sorted(gaps)[:5]  # arrival jitter of a few ms, no more
    # Both workers fetched at the same time, taking turns: neither waited for the other to finish.
    shard_of = dict(query(db_url, "SELECT f.url, r.shard FROM run_feeds r JOIN feeds f ON f.id = r.feed_id"))
    spans = [[at for at, path, _ in stamps if shard_of[server.url(path)] == s] for s in shards]
    assert max(min(span) for span in spans) < min(max(span) for span in spans) - 1.0
    first_ten = Counter(shard_of[server.url(path)] for _, path, _ in sorted(stamps)[:10])
    assert min(first_ten[s] for s in shards) >= 3, first_ten


def test_slots_and_the_turn_are_shared_between_sessions(db_url):
    a, b = HostSlots(2, 0.3, db_url), HostSlots(2, 0.3, db_url)
    try:
        assert a.shared and b.shared
        first = a.try_take("h:80")
        assert isinstance(first, Lease)
        turn = b.try_take("h:80")  # a free slot, but not the turn: a's start was just now
        assert isinstance(turn, Busy) and turn.remote
        time.sleep(0.35)
        second = b.try_take("h:80")
        assert isinstance(second, Lease)
        other = HostSlots(2, 0.0, db_url)
        try:
            assert isinstance(other.try_take("h:80"), Busy)  # both slots held, by a and b
            a.give_back(first)
            assert other.take("h:80", time.monotonic() + 1.0) is not None
        finally:
            other.close()
    finally:
        a.close()
        b.close()


def test_a_worker_takes_one_slot_at_a_time_leaving_the_others_to_other_workers(db_url):
    workers = [HostSlots(3, 0.0, db_url) for _ in range(4)]
    try:
        taken = [w.try_take("h:80") for w in workers]
        # each tried the slots in order in one round trip, and took only the first it got
        assert [t.index if isinstance(t, Lease) else None for t in taken] == [0, 1, 2, None]
        assert isinstance(taken[3], Busy) and taken[3].remote
    finally:
        for w in workers:
            w.close()


def test_a_worker_that_dies_gives_its_slots_back(db_url):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from pipeline.host_slots import HostSlots\n"
         "slots = HostSlots(1, 0.0, sys.argv[1])\n"
         "assert slots.try_take('h:80').index == 0\n"
         "print('held', flush=True)\n"
         "time.sleep(60)\n", db_url],
        stdout=subprocess.PIPE, text=True)
    waiter = HostSlots(1, 0.0, db_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert isinstance(waiter.try_take("h:80"), Busy)
        holder.kill()  # no clean-up runs: the server ends the session and its locks
        holder.wait(10)
        assert waiter.take("h:80", time.monotonic() + 5.0) is not None
    finally:
        holder.kill()
        waiter.close()


def test_a_worker_that_had_its_turn_yields_to_one_waiting(db_url):
    a, b = HostSlots(1, 0.0, db_url), HostSlots(1, 0.0, db_url)
    try:
        lease = a.try_take("h:80")
        assert isinstance(lease, Lease)
        assert isinstance(b.try_take("h:80"), Busy)  # refused: b is now waiting for the host
        a.give_back(lease)
        assert isinstance(a.try_take("h:80"), Busy)  # a does not take it straight back
        assert b.take("h:80", time.monotonic() + 1.0) is not None
    finally:
        a.close()
        b.close()


def test_without_the_database_the_limits_hold_in_the_process(caplog):
    slots = HostSlots(1, 0.2, "postgresql://nobody@127.0.0.1:1/none")
    try:
        assert not slots.shared and "in this process only" in caplog.text
        lease = slots.try_take("h:80")
        assert isinstance(lease, Lease)
        assert slots.try_take("h:80") == Busy(None, remote=False)
        slots.give_back(lease)
        busy = slots.try_take("h:80")
        assert isinstance(busy, Busy) and busy.retry_at is not None  # the delay
    finally:
        slots.close()


def test_a_busy_host_holds_no_thread_that_another_host_could_use(settings):
    slow_feed, fast_feed = rss([item(1)]), rss([item(2)])
    with FeedServer({"/s.xml": Route(slow_feed, delay=0.5, validators=False)}) as slow, \
            FeedServer({"/f.xml": Route(fast_feed, validators=False)}) as fast:
        feeds = ([FeedState(i, slow.url(f"/s.xml?i={i}")) for i in range(3)]
                 + [FeedState(10 + i, fast.url(f"/f.xml?i={i}")) for i in range(6)])
        done: dict[int, float] = {}
        started = time.monotonic()
        results = fetch_all(feeds, settings.replace(fetch_concurrency=2, per_host_concurrency=1), NOW,
                            lambda r: done.setdefault(r.feed_id, time.monotonic() - started))
    assert all(r.outcome is FetchOutcome.OK for r in results)
    # The slow host has one slot; the second thread serves the fast host meanwhile.
    assert max(done[10 + i] for i in range(6)) < 0.45
    assert slow.max_in_flight == 1


@pytest.mark.parametrize("per_host", [1, 2])
def test_one_process_alone_still_reaches_the_limit(db_url, settings, per_host):
    with FeedServer({"/f.xml": Route(rss([item(1)]), delay=0.2, validators=False)}) as server:
        feeds = [FeedState(i, server.url(f"/f.xml?i={i}")) for i in range(6)]
        results = fetch_all(feeds, settings.replace(per_host_concurrency=per_host), NOW, db_url=db_url)
    assert all(r.outcome is FetchOutcome.OK for r in results)
    assert server.max_in_flight == per_host
