"""FETCH_TOTAL_TIMEOUT bounds a whole fetch: headers, every redirect hop and the body
together, against real servers on loopback that are slow in each of those phases."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timezone

import pytest

from pipeline.feedserver import FeedServer, Route
from pipeline.fetch import fetch_all
from pipeline.records import FeedState, FetchOutcome
from tests.helpers import item, rss

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)
FEED = rss([item(1)])


class HeaderDripServer:
    """Answers every request with a status line, then one header byte every `drip` seconds:
    each read succeeds, so only a deadline over the whole response ends it. Bounded: at most
    `max_bytes` bytes per connection, and everything stops when the server is closed."""

    def __init__(self, drip: float = 0.2, max_bytes: int = 100):
        self.drip, self.max_bytes = drip, max_bytes
        self.sent = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}{path}"

    def __enter__(self) -> HeaderDripServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                for _ in range(self.max_bytes):
                    if self._stop.wait(self.drip):
                        return
                    conn.sendall(b"a")
                    self.sent += 1
            except OSError:
                return  # the client hung up, as it should


@pytest.fixture
def server():
    with FeedServer() as srv:
        yield srv


def fetch_one(settings, url):
    started = time.monotonic()
    [result] = fetch_all([FeedState(1, url)], settings, NOW)
    return result, time.monotonic() - started


@pytest.fixture
def one_second(settings):
    """A total bound of 1 s, with connect and read bounds that alone would never cut in."""
    return settings.replace(connect_timeout=2.0, read_timeout=2.0, total_timeout=1.0)


def test_headers_dripped_byte_by_byte_are_cut_off_at_the_total_timeout(one_second):
    with HeaderDripServer(drip=0.2) as server:
        result, took = fetch_one(one_second, server.url("/f.xml"))
        assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "timeout")
        assert "total timeout of 1 s exceeded during headers" in result.error
        assert 0.9 < took < 1.5
        assert server.sent >= 3  # the server did drip: every single read was within read_timeout


def test_slow_redirect_hops_share_one_total_timeout(one_second, server):
    for hop in range(5):  # /r0 -> /r1 -> ... -> /r4 -> /f.xml, each hop 0.4 s late
        target = f"/r{hop + 1}" if hop < 4 else "/f.xml"
        server.routes[f"/r{hop}"] = Route(b"", status=302, delay=0.4, headers={"Location": target})
    server.routes["/f.xml"] = Route(FEED, validators=False)
    result, took = fetch_one(one_second, server.url("/r0"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "timeout")
    assert "total timeout of 1 s exceeded" in result.error and "after 2 redirects" in result.error
    assert 0.9 < took < 1.5
    assert [path for path, _ in server.requests] == ["/r0", "/r1", "/r2"]  # none after the deadline


def test_a_dripped_body_is_cut_off_at_the_total_timeout(one_second, server):
    server.routes["/f.xml"] = Route(FEED, drip=0.2, validators=False)
    result, took = fetch_one(one_second, server.url("/f.xml"))
    assert (result.outcome, result.error_kind) == (FetchOutcome.ERROR, "timeout")
    assert "total timeout of 1 s exceeded during body" in result.error
    assert 0.9 < took < 1.5


def test_a_fetch_within_the_total_timeout_follows_its_redirects(one_second, server):
    server.routes["/r0"] = Route(b"", status=301, delay=0.2, headers={"Location": "/r1"})
    server.routes["/r1"] = Route(b"", status=302, delay=0.2, headers={"Location": "/f.xml"})
    server.routes["/f.xml"] = Route(FEED, delay=0.2, validators=False)
    result, took = fetch_one(one_second, server.url("/r0"))
    assert result.outcome is FetchOutcome.OK and result.body == FEED
    assert took < 1.0


def test_waiting_for_a_turn_at_a_busy_host_does_not_count_against_the_feed(one_second, server):
    server.routes["/f.xml"] = Route(FEED, delay=0.6, validators=False)
    one_at_a_time = one_second.replace(per_host_concurrency=1)
    feeds = [FeedState(i, server.url(f"/f.xml?i={i}")) for i in range(3)]
    started = time.monotonic()
    results = fetch_all(feeds, one_at_a_time, NOW)
    assert time.monotonic() - started >= 1.7  # served one after the other: the last waited 1.2 s
    assert [r.outcome for r in results] == [FetchOutcome.OK] * 3
