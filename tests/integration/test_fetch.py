"""The fetcher against a real HTTP server on loopback."""

import gzip
import socket
import struct
import threading
import time
from datetime import datetime, timezone

import pytest

from pipeline.feedserver import FeedServer, Route
from pipeline import fetch
from pipeline.fetch import fetch_all
from pipeline.records import FeedState, FetchOutcome
from tests.helpers import item, rss

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)


def fetch_one(settings, url, etag=None, last_modified=None):
    [result] = fetch_all([FeedState(1, url, etag, last_modified)], settings, NOW)
    return result


@pytest.fixture
def server():
    with FeedServer({"/feed.xml": Route(rss([item(1)]))}) as srv:
        yield srv


def test_ok_fetch_returns_body_and_validators(settings, server):
    result = fetch_one(settings, server.url("/feed.xml"))
    assert result.outcome is FetchOutcome.OK and result.status == 200
    assert result.body == rss([item(1)])
    assert result.etag and result.last_modified
    assert "news-pipeline" in server.requests[-1][1]["User-Agent"]


def test_conditional_get_with_etag_and_with_last_modified_gives_304(settings, server):
    first = fetch_one(settings, server.url("/feed.xml"))
    by_etag = fetch_one(settings, server.url("/feed.xml"), etag=first.etag)
    by_date = fetch_one(settings, server.url("/feed.xml"), last_modified=first.last_modified)
    assert by_etag.outcome is FetchOutcome.NOT_MODIFIED and by_etag.body is None
    assert by_date.outcome is FetchOutcome.NOT_MODIFIED
    assert server.requests[-2][1]["If-None-Match"] == first.etag


def test_gzip_is_requested_and_decoded(settings, server):
    result = fetch_one(settings, server.url("/feed.xml"))
    assert "gzip" in server.requests[-1][1]["Accept-Encoding"]
    assert result.body == rss([item(1)])


def test_http_error_is_classified(settings, server):
    result = fetch_one(settings, server.url("/missing.xml"))
    assert (result.outcome, result.error_kind, result.status) == (FetchOutcome.ERROR, "http_status", 404)


def test_refused_connection_is_classified(settings):
    result = fetch_one(settings, "http://127.0.0.1:9/feed.xml")
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "connect")


def test_oversized_body_is_cut_off(settings, server):
    server.routes["/big.xml"] = Route(b"<rss>" + b"x" * (2 * 1024 * 1024) + b"</rss>", validators=False)
    result = fetch_one(settings, server.url("/big.xml"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "too_large")


def test_gzip_bomb_is_stopped_by_the_decompressed_cap(settings, server):
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))  # 50 MB that compresses to ~50 kB
    server.routes["/bomb.xml"] = Route(bomb, headers={"Content-Encoding": "gzip"}, validators=False)
    started = time.monotonic()
    result = fetch_one(settings, server.url("/bomb.xml"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "too_large")
    assert time.monotonic() - started < 5


def test_a_gzip_body_of_several_members_is_read_whole(settings, server):
    first, second = rss([item(1)])[:200], rss([item(1)])[200:]
    server.routes["/members.xml"] = Route(gzip.compress(first) + gzip.compress(second),
                                          headers={"Content-Encoding": "gzip"}, validators=False)
    result = fetch_one(settings, server.url("/members.xml"))
    assert result.outcome is FetchOutcome.OK and result.body == rss([item(1)])


def test_zero_bytes_padding_a_gzip_body_are_ignored(settings, server):
    server.routes["/padded.xml"] = Route(gzip.compress(rss([item(1)])) + b"\0" * 64,
                                         headers={"Content-Encoding": "gzip"}, validators=False)
    result = fetch_one(settings, server.url("/padded.xml"))
    assert result.outcome is FetchOutcome.OK and result.body == rss([item(1)])


def test_a_gzip_bomb_split_over_members_is_stopped_by_the_cap_on_their_sum(settings, server):
    member = gzip.compress(b"\0" * (settings.max_body_bytes // 2))  # each member alone is within the cap
    server.routes["/bombs.xml"] = Route(member * 200, headers={"Content-Encoding": "gzip"}, validators=False)
    started = time.monotonic()
    result = fetch_one(settings, server.url("/bombs.xml"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "too_large")
    assert "decompressed" in result.error and time.monotonic() - started < 5


def test_slow_server_times_out_within_the_bound(settings, server):
    server.routes["/slow.xml"] = Route(rss([item(1)]), delay=4.0)
    started = time.monotonic()
    result = fetch_one(settings, server.url("/slow.xml"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "timeout")
    assert time.monotonic() - started < 4


def test_many_feeds_are_fetched_concurrently(settings, server):
    server.routes["/slowish.xml"] = Route(rss([item(1)]), delay=0.3, validators=False)
    feeds = [FeedState(i, server.url(f"/slowish.xml?n={i}")) for i in range(16)]
    started = time.monotonic()
    results = fetch_all(feeds, settings, NOW)
    assert all(r.outcome is FetchOutcome.OK for r in results) and len(results) == 16
    assert time.monotonic() - started < 16 * 0.3 / 2


def test_a_caller_that_has_not_taken_results_holds_only_a_few_bodies(settings, server, monkeypatch):
    # a shard parses bodies as they come: while it is busy, no fetch starts once the bodies
    # waiting for it reach HANDOFF_BYTES (here any body), so it never holds all its feeds'
    monkeypatch.setattr(fetch, "HANDOFF_BYTES", 1)
    feeds = [FeedState(i, server.url(f"/feed.xml?n={i}")) for i in range(30)]
    arriving = fetch.fetch_each(feeds, settings.replace(fetch_concurrency=2), NOW)
    first = next(arriving)
    time.sleep(1.0)  # the caller is busy; unbounded, the fetch would have had time for all 30
    # the one taken, and one per thread: waiting, or started while nothing was waiting
    assert len(server.requests) <= 1 + 2
    rest = list(arriving)
    assert sorted(r.feed_id for r in [first, *rest]) == list(range(30))
    assert len(server.requests) == 30


@pytest.mark.parametrize(("body_bytes", "most_at_once"), [(1 << 20, 3), (1 << 10, 8)], ids=["1 MB", "1 KB"])
def test_bodies_on_their_way_count_so_a_pass_of_large_feeds_fetches_fewer_at_once(
        settings, server, monkeypatch, body_bytes, most_at_once):
    # A shard's memory: a fetch counts the body expected of it from its start, so with room
    # for 3 MB three 1 MB feeds are fetched at once, however many threads there are; small
    # feeds take every thread.
    monkeypatch.setattr(fetch, "HANDOFF_BYTES", 3 << 20)
    monkeypatch.setattr(fetch, "FIRST_BODY_GUESS", body_bytes)
    words = (body_bytes - 200) // 10
    server.routes["/f.xml"] = Route(rss([item(1, description="harbour " * words)])[:body_bytes],
                                    delay=0.3, validators=False)
    feeds = [FeedState(i, server.url(f"/f.xml?n={i}")) for i in range(12)]
    results = fetch_all(feeds, settings.replace(fetch_concurrency=8), NOW)
    assert [r.outcome for r in results] == [FetchOutcome.OK] * 12
    assert server.max_in_flight == most_at_once


def test_a_pass_of_304s_soon_fetches_with_every_thread(settings, server, monkeypatch):
    # Before any fetch ended, each counts as large (here half the room: two at once); a
    # 304 brings nothing, so once the first ones answered every thread fetches.
    monkeypatch.setattr(fetch, "HANDOFF_BYTES", 2 << 20)
    monkeypatch.setattr(fetch, "FIRST_BODY_GUESS", 1 << 20)
    route = Route(rss([item(1)]), delay=0.3)
    server.routes["/f.xml"] = route
    feeds = [FeedState(i, server.url(f"/f.xml?n={i}"), etag=route.etag) for i in range(20)]
    results = fetch_all(feeds, settings.replace(fetch_concurrency=8), NOW)
    assert [r.outcome for r in results] == [FetchOutcome.NOT_MODIFIED] * 20
    assert server.max_in_flight == 8


def test_a_host_answering_304s_is_polled_over_a_few_kept_alive_connections(settings, server):
    """A 304 has no body: once read to its end, its connection serves the host's next feed,
    so polling 30 unchanged feeds of one publisher opens about as many connections as
    requests run at once, not one per feed (each one a TCP and, for https, a TLS handshake)."""
    route = Route(rss([item(1)]))
    server.routes["/f.xml"] = route
    feeds = [FeedState(i, server.url(f"/f.xml?n={i}"), etag=route.etag) for i in range(30)]
    results = fetch_all(feeds, settings.replace(fetch_concurrency=3, per_host_concurrency=3), NOW)
    assert [r.outcome for r in results] == [FetchOutcome.NOT_MODIFIED] * 30
    assert len(server.requests) == 30 and server.connections <= 3


class _ClosingServer:
    """A loopback HTTP/1.1 server answering 304 and keeping connections alive, except that
    on connections numbered in `close_on` it ends the connection when their request number
    `at_request` (1-based) has arrived, without an answer: closed, or reset (`reset`).
    Bounded: `connections` at most, each read with a timeout."""

    def __init__(self, close_on: set[int], at_request: int, reset: bool = False, connections: int = 3):
        self.close_on, self.at_request, self.reset = close_on, at_request, reset
        self.requests = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, args=(connections,), daemon=True)
        self._thread.start()

    def _serve(self, connections: int) -> None:
        for number in range(1, connections + 1):
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections = number
            thread = threading.Thread(target=self._answer, args=(conn, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn, number: int) -> None:
        with conn:
            conn.settimeout(10)
            buffer, served = b"", 0
            for _ in range(100):  # requests on one connection, at most
                while b"\r\n\r\n" not in buffer:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buffer += chunk
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                served += 1
                with self._lock:
                    self.requests += 1
                if number in self.close_on and served == self.at_request:
                    if self.reset:  # an RST, not a FIN: the client's read fails
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return  # ended without an answer
                conn.sendall(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 0\r\n\r\n')

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_kept_alive_connection_that_fails_before_the_answer_is_replaced_not_failed(settings, reset):
    """The server ends a kept-alive connection (closes or resets it) when the host's next
    feed has gone out on it, without answering: that feed goes again on another connection
    instead of failing."""
    server = _ClosingServer(close_on={1}, at_request=2, reset=reset)
    try:
        feeds = [FeedState(i, server.url(f"/f.xml?n={i}"), etag='"v1"') for i in range(3)]
        results = fetch_all(feeds, settings.replace(fetch_concurrency=1, per_host_concurrency=1), NOW)
    finally:
        server.close()
    assert [r.outcome for r in results] == [FetchOutcome.NOT_MODIFIED] * 3
    assert (server.requests, server.connections) == (4, 2)  # the failed one's request, again


def test_a_new_connection_closed_without_an_answer_is_the_feeds_error_not_sent_again(settings):
    """A server that closes the connection dialled for a feed without answering gave its
    answer: the feed fails (a network error) after one request, none more."""
    server = _ClosingServer(close_on={1}, at_request=1)
    try:
        [result] = fetch_all([FeedState(1, server.url("/f.xml"), etag='"v1"')],
                             settings.replace(fetch_concurrency=1, per_host_concurrency=1), NOW)
    finally:
        server.close()
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "network")
    assert (server.requests, server.connections) == (1, 1)


def test_a_caller_that_stops_taking_results_stops_the_fetch(settings, server, monkeypatch):
    monkeypatch.setattr(fetch, "HANDOFF_BYTES", 1)
    feeds = [FeedState(i, server.url(f"/feed.xml?n={i}")) for i in range(30)]
    arriving = fetch.fetch_each(feeds, settings.replace(fetch_concurrency=2), NOW)
    next(arriving)
    started = time.monotonic()
    arriving.close()  # e.g. the shard's staging failed: no more feeds are fetched
    assert time.monotonic() - started < 2
    fetched = len(server.requests)
    assert fetched <= 1 + 2
    time.sleep(0.3)
    assert len(server.requests) == fetched


def test_with_room_to_spare_every_feed_is_fetched_without_waiting_for_the_caller(settings, server):
    # the default budget (8 MB) holds all these small bodies: a slow caller slows no fetch
    feeds = [FeedState(i, server.url(f"/feed.xml?n={i}")) for i in range(30)]
    arriving = fetch.fetch_each(feeds, settings.replace(fetch_concurrency=2), NOW)
    next(arriving)
    deadline = time.monotonic() + 10
    while len(server.requests) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.requests) == 30
    assert len(list(arriving)) == 29
