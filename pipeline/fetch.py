"""Fetch stage: HTTP GET of feeds, politely and within bounds. The only network I/O.

Per feed: connect/read timeouts per step, and one total deadline over DNS, connect,
headers, every redirect hop and the body together (its clock starts when the feed's
turn at its host comes); a cap on the decompressed body size, enforced while
streaming over every gzip member (a gzip bomb is an error, not an out-of-memory);
conditional GET from the stored ETag / Last-Modified, and a body identical to
the last one parsed counts as not modified; redirects followed by hand (up to
`MAX_REDIRECTS`, loops detected, each hop through the SSRF guard); a global
concurrency limit, and per host a concurrency limit and a minimum delay between request
starts that hold across every worker (pipeline.host_slots); `Retry-After`,
`Cache-Control`, `Expires` and the error streak set the next check. Every failure
becomes a classified `FetchResult`, never an exception: one failing feed never fails a run.

A fetching thread is handed a feed only once its host has a free slot (`_Turns`), so no
thread sits on a busy host while another host's feed could go; hosts take turns.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import queue
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urljoin

import httpcore
import httpx

from pipeline import netguard, polling_policy
from pipeline.config import Settings
from pipeline.database import configured_database_url
from pipeline.host_slots import Busy, HostSlots, Lease, host_of
from pipeline.netguard import (
    AddressPolicy,
    BlockedAddress,
    DeadlineExceeded,
    GuardedBackend,
    ResolutionFailed,
)
from pipeline.records import FeedState, FetchOutcome, FetchResult
from pipeline.urls import MAX_SHOWN_URL, feed_url_problem

log = logging.getLogger(__name__)

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}
PERMANENT = {301, 308}
# What the deadline cut short, by the network step it passed in (see netguard).
_DURING = {"dns": "DNS resolution", "connect": "connect", "tls": "TLS handshake",
           "write": "request", "read": "headers"}
# Response headers kept with the archived body: enough to replay and to audit.
KEPT_HEADERS = ("content-type", "content-encoding", "etag", "last-modified", "cache-control",
                "expires", "retry-after", "date", "age", "server", "content-length")


class _FetchFailure(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None,
                 retry_at: datetime | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_at = retry_at
        self.unanswered = False  # a timeout before the feed's own host answered (FetchResult)


def polling_rules(settings: Settings) -> polling_policy.Rules:
    return polling_policy.Rules(bounds(settings), settings.window_fill,
                                timedelta(seconds=settings.hot_interval_s))


def bounds(settings: Settings) -> polling_policy.Bounds:
    return polling_policy.Bounds(timedelta(seconds=settings.min_interval_s),
                                 timedelta(seconds=settings.max_interval_s),
                                 timedelta(seconds=settings.error_backoff_s))


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The process's TLS context (certificate verification on), built once: loading the CA
    bundle takes about 20 ms, and every shard makes a client."""
    return httpx.create_ssl_context()


# An idle pooled connection is closed after this many seconds, not reused: below the
# keep-alive timeouts servers commonly close theirs at (Apache's 5 s), so a feed is not sent
# on a connection its server is closing (httpx's own pool has 5 s; a pool built here, none).
KEEPALIVE_EXPIRY_S = 4.0


def make_client(settings: Settings) -> httpx.Client:
    """One client per fetch batch: pooled connections, guarded dialling, shared by threads."""
    timeout = httpx.Timeout(connect=settings.connect_timeout, read=settings.read_timeout,
                            write=settings.read_timeout, pool=settings.total_timeout)
    transport = httpx.HTTPTransport(verify=_ssl_context(), limits=httpx.Limits(
        max_connections=settings.fetch_concurrency,
        max_keepalive_connections=settings.fetch_concurrency))
    # httpx has no public hook for the dialler: swap in a pool whose backend checks addresses.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=_ssl_context(),
        max_connections=settings.fetch_concurrency,
        max_keepalive_connections=settings.fetch_concurrency,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
        network_backend=GuardedBackend(AddressPolicy(settings.allowed_networks)),
    )
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False,
                        trust_env=False,
                        headers={"User-Agent": settings.user_agent, "Accept": ACCEPT,
                                 "Accept-Encoding": "gzip, deflate"})


def conditional_headers(feed: FeedState) -> dict[str, str]:
    """The validators a server gave, sent back. One a request cannot carry (not printable
    ASCII: an ETag of UTF-8 bytes, say) is left out: the fetch is unconditional and the
    body hash still tells an unchanged body, where sending it would fail every fetch."""
    headers = {}
    if feed.etag and _sendable(feed.etag):
        headers["If-None-Match"] = feed.etag
    if feed.last_modified and _sendable(feed.last_modified):
        headers["If-Modified-Since"] = feed.last_modified
    return headers


def _sendable(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _compressed(response: httpx.Response) -> bool:
    encoding = (response.headers.get("content-encoding") or "identity").strip().lower()
    if encoding in ("", "identity"):
        return False
    if encoding in ("gzip", "x-gzip", "deflate"):
        return True
    raise _FetchFailure("decoding", f"unsupported Content-Encoding: {encoding}")


def _decoder_for(start: bytes, first: bool) -> zlib._Decompress:
    """gzip or zlib by the stream's header; for the `first` stream of a body, raw deflate
    (what some servers send as `deflate`, RFC 1951 without the zlib wrapper) where neither
    header starts it. After a member, only another member may follow (else `zlib.error`)."""
    zlib_header = len(start) >= 2 and start[0] & 0x0F == 8 and (start[0] << 8 | start[1]) % 31 == 0
    if not first or start[:2] == b"\x1f\x8b" or zlib_header:
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # the header says which
    return zlib.decompressobj(-zlib.MAX_WBITS)


def _inflate(raw: Iterable[bytes], room: Callable[[], int], framed: bool = True) -> Iterator[bytes]:
    """gzip, zlib or raw deflate data decompressed in steps of at most `room()` + 1 bytes,
    so a cap on the output holds however far the input inflates. A gzip body of several
    members (RFC 1952) yields every member in turn; zero bytes padding the end are ignored.
    A stream that stops before its end is a truncated body (`zlib.error`) unless the
    response was `framed` (a Content-Length or chunks, which the transport checked): there
    only the trailer is missing, which some servers leave out."""
    decoder: zlib._Decompress | None = None
    first, carry = True, b""
    for chunk in raw:
        pending, carry = carry + chunk, b""
        while pending:
            if decoder is None:  # a stream's start, or after a member: zero padding, or a header
                pending = pending.lstrip(b"\0")
                if len(pending) < 2:  # too little to tell a header by: with the next read
                    carry = pending
                    break
                decoder, first = _decoder_for(pending, first), False
            yield decoder.decompress(pending, room() + 1)
            pending = decoder.unconsumed_tail
            if decoder.eof:
                pending, decoder = decoder.unused_data, None
    if carry:  # one byte left: no stream that short is whole
        decoder = _decoder_for(carry, first)
        yield decoder.decompress(carry, room() + 1)
    if decoder is not None:
        yield decoder.flush()
        if not decoder.eof and not framed:
            raise zlib.error("the compressed body ended before its end (the connection closed early?)")


def _read_capped(response: httpx.Response, settings: Settings, deadline: float) -> bytes:
    """The body, decompressed here in bounded steps: the size cap holds for the decompressed
    bytes (a gzip bomb stops at the cap, never inflating a whole chunk) and for the bytes
    on the wire; the total deadline holds for every network read (netguard) and is checked
    between them (a server dripping bytes is cut off)."""
    cap = settings.max_body_bytes
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise _FetchFailure("too_large", f"Content-Length {declared} exceeds {cap} bytes")
    compressed = _compressed(response)
    chunks: list[bytes] = []
    size = received = 0

    def arriving() -> Iterator[bytes]:  # each network read, as it arrives
        nonlocal received
        for raw in response.iter_raw():
            received += len(raw)
            if received > cap:
                raise _FetchFailure("too_large", f"body exceeds {cap} bytes (as sent)")
            if time.monotonic() > deadline:
                raise DeadlineExceeded("read")
            yield raw

    def room() -> int:
        return cap - size

    try:
        framed = "content-length" in response.headers or "chunked" in (
            response.headers.get("transfer-encoding") or "").lower()
        for data in _inflate(arriving(), room, framed) if compressed else arriving():
            size += len(data)
            if size > cap:
                raise _FetchFailure("too_large", f"body exceeds {cap} bytes (decompressed)")
            chunks.append(data)
    except zlib.error as exc:
        raise _FetchFailure("decoding", f"bad compressed body: {exc}") from exc
    return b"".join(chunks)


def _causes(exc: BaseException) -> list[BaseException]:
    causes = [exc]
    while causes[-1].__cause__ or causes[-1].__context__:
        causes.append(causes[-1].__cause__ or causes[-1].__context__)  # type: ignore[arg-type]
        if len(causes) > 8:
            break
    return causes


def _overrun(exc: BaseException, settings: Settings, deadline: float, in_body: bool,
             redirects: int = 0) -> _FetchFailure | None:
    """The total-timeout failure, saying what was under way, when `exc` is the fetch's
    deadline passing; None for any other failure."""
    passed = next((c for c in _causes(exc) if isinstance(c, DeadlineExceeded)), None)
    timed_out = isinstance(exc, httpx.TimeoutException) and time.monotonic() >= deadline
    if passed is None and not timed_out:
        return None
    if in_body:
        during = "body"
    else:
        during = _DURING.get(passed.step, "headers") if passed else "waiting for a connection"
    return _total_timeout(settings, f"during {during}", redirects)


def _total_timeout(settings: Settings, during: str, redirects: int) -> _FetchFailure:
    after = f" after {redirects} redirect{'s' if redirects > 1 else ''}" if redirects else ""
    return _FetchFailure("timeout",
                         f"total timeout of {settings.total_timeout:g} s exceeded {during}{after}")


def _classify(exc: BaseException) -> _FetchFailure:
    if isinstance(exc, _FetchFailure):
        return exc
    text = str(exc) or type(exc).__name__
    causes = _causes(exc)
    if any(isinstance(c, BlockedAddress) for c in causes):
        return _FetchFailure("blocked_address", next(str(c) for c in causes if isinstance(c, BlockedAddress)))
    if any(isinstance(c, ResolutionFailed) for c in causes):
        return _FetchFailure("dns", next(str(c) for c in causes if isinstance(c, ResolutionFailed)))
    if isinstance(exc, httpx.TimeoutException):
        return _FetchFailure("timeout", text)
    if any(isinstance(c, ssl.SSLError) for c in causes) or "SSL" in text or "certificate" in text:
        return _FetchFailure("tls", text)
    if isinstance(exc, httpx.ConnectError):
        return _FetchFailure("connect", text)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return _FetchFailure("bad_url", text)
    if isinstance(exc, httpx.DecodingError):
        return _FetchFailure("decoding", text)
    return _FetchFailure("network", f"{type(exc).__name__}: {text}")


def _status_failure(response: httpx.Response, now: datetime) -> _FetchFailure:
    status = response.status_code
    message = f"HTTP {status} {response.reason_phrase}"
    retry_at = polling_policy.retry_after(response.headers.get("retry-after"), now)
    if status == 410:
        return _FetchFailure("gone", message, status)
    if status in (429, 503):
        kind = "rate_limited" if status == 429 else "unavailable"
        return _FetchFailure(kind, message, status, retry_at)
    return _FetchFailure("http_status", message, status, retry_at)


class Fetcher:
    """Fetches feeds with one client and the host slots (shared with other workers through
    the database at `db_url`; without it, within this process)."""

    def __init__(self, settings: Settings, db_url: str | None = None):
        self.settings = settings
        self.client = make_client(settings)
        self.hosts = HostSlots(settings.per_host_concurrency, settings.host_delay_s, db_url)

    def close(self) -> None:
        self.client.close()
        self.hosts.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def turn_wait(self) -> float:
        """How long a feed waits for a turn at its host while other workers hold it: a
        healthy holder gives its slot back within its own total timeout, and turns come
        every `FETCH_HOST_DELAY`. Waiting behind this process's own feeds is not bounded
        (each of them is)."""
        return self.settings.total_timeout + self.settings.host_delay_s

    def _open(
        self, url: str, headers: dict[str, str], lease: Lease, deadline: float
    ) -> tuple[httpx.Response, Lease, list[tuple[int, str]]]:
        """GET with redirects followed by hand, `lease` (the host's slot, held) for the first
        hop and a slot of its own host for each further hop (a request of its own). Returns
        the final (streaming) response, the slot it holds (give it back after reading), and
        the redirect hops. Gives back every slot it holds when it raises."""
        hops: list[tuple[int, str]] = []
        seen = {url}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                request = self.client.build_request("GET", url, headers=headers,
                                                    timeout=self._timeout(deadline))
                response = self._send(request, lease, deadline)
            except BaseException as exc:
                self.hosts.give_back(lease)
                if not isinstance(exc, Exception):
                    raise
                failure = _overrun(exc, self.settings, deadline, False, len(hops)) or _classify(exc)
                failure.unanswered = failure.kind == "timeout" and not hops  # the feed's own host
                if failure is exc:
                    raise
                raise failure from exc
            location = response.headers.get("location")
            if response.status_code not in REDIRECTS or not location:
                return response, lease, hops
            response.close()
            self.hosts.give_back(lease)
            target = urljoin(url, location)
            if (refused := feed_url_problem(target)) is not None:  # not web, or no feed's address could be it
                raise _FetchFailure("redirect", f"redirect to a URL that {refused}: {target[:MAX_SHOWN_URL]}")
            if target in seen:
                raise _FetchFailure("redirect_loop", f"redirect loop: {url} -> {target}")
            hops.append((response.status_code, target))
            seen.add(target)
            url = target
            taken = self.hosts.take(host_of(url), deadline)
            if taken is None:
                raise _total_timeout(self.settings, "waiting for a turn at the host", len(hops))
            lease = taken
        self.hosts.give_back(lease)
        raise _FetchFailure("redirect", f"more than {MAX_REDIRECTS} redirects")

    def _send(self, request: httpx.Request, lease: Lease, deadline: float) -> httpx.Response:
        """Send `request` under `lease` (its host's slot; its start recorded here, for the
        host's delay), its response streamed. When it went out on a kept-alive connection and
        that failed before the response's headers (the server closing it as its keep-alive
        timeout ended, or resetting it), the request may not have been served, and a GET can
        go again (RFC 9110: idempotent): it is sent once more, on another connection (a new
        one, or another the pool holds alive), if the deadline leaves time. A failure on a
        connection dialled for the request is the server's answer: not sent again. (Which
        connection served it is read from httpcore's trace of the request: for HTTP/1.1, the
        only protocol the client speaks, a connection is dialled by the request it serves.)"""
        opened: list[str] = []  # this request's connect events: it dialled its connection
        request.extensions["trace"] = lambda name, info: opened.append(name) if ".connect_tcp." in name else None
        self.hosts.started(lease)
        try:
            return self.client.send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if opened or time.monotonic() >= deadline:
                raise
            log.info("host=%s: a kept-alive connection failed before the answer (%s: %s): sent again",
                     lease.host, type(exc).__name__, exc)
        # outside the handler: a failure of this send is its own, not chained to the first
        request.extensions["timeout"] = self._timeout(deadline).as_dict()
        self.hosts.started(lease)
        return self.client.send(request, stream=True)

    def _timeout(self, deadline: float) -> httpx.Timeout:
        """The client's timeouts, none longer than the time left (the network backend also
        holds each read and write to it: see netguard.deadline)."""
        left = max(deadline - time.monotonic(), 0.001)
        s = self.settings
        return httpx.Timeout(connect=min(s.connect_timeout, left), read=min(s.read_timeout, left),
                             write=min(s.read_timeout, left), pool=left)

    def fetch(self, feed: FeedState, now: datetime, lease: Lease | None = None) -> FetchResult:
        """GET one feed, with `lease` (its host's slot, just taken) or, without one, once a
        slot comes. Never raises for network or HTTP trouble: the result says what happened.
        The total timeout starts when the feed's turn at its host comes: waiting behind other
        feeds of the same publisher is not this feed's slowness."""
        started = time.monotonic()
        limits = bounds(self.settings)

        def result(outcome: FetchOutcome, **fields: object) -> FetchResult:
            elapsed = int((time.monotonic() - started) * 1000)
            return FetchResult(feed_id=feed.id, url=feed.url, outcome=outcome, fetched_at=now,
                               duration_ms=elapsed, **fields)  # type: ignore[arg-type]

        if lease is None:
            lease = self.hosts.take(host_of(feed.url), started + self.turn_wait())
            if lease is None:
                return self.no_turn(feed, now)
        deadline = time.monotonic() + self.settings.total_timeout
        try:
            with netguard.deadline(deadline):
                response, lease, hops = self._open(feed.url, conditional_headers(feed), lease, deadline)
                try:
                    return self._received(feed, now, response, hops, deadline, result, limits)
                finally:
                    response.close()
                    self.hosts.give_back(lease)
        except Exception as exc:  # noqa: BLE001 - every failure of one feed is data
            return self._failed(feed, now, _classify(exc), result)

    def no_turn(self, feed: FeedState, now: datetime) -> FetchResult:
        """The result of a feed whose host gave it no turn within `turn_wait()`."""
        failure = _FetchFailure("timeout", f"no turn at the host within {self.turn_wait():g} s "
                                           "(other workers held its slots)")
        return self._not_fetched(feed, now, failure, int(self.turn_wait() * 1000))

    def cut_off(self, feed: FeedState, now: datetime, reason: str) -> FetchResult:
        """The result of a feed not fetched because its host was cut off (`_Turns`): its
        next check as if it had not failed (it made no request: no backoff of its own)."""
        return self._not_fetched(feed, now, _FetchFailure("timeout", reason), 0, backoff=False)

    def _not_fetched(self, feed: FeedState, now: datetime, failure: _FetchFailure, waited_ms: int,
                     backoff: bool = True) -> FetchResult:
        return self._failed(feed, now, failure, lambda outcome, **fields: FetchResult(
            feed_id=feed.id, url=feed.url, outcome=outcome, fetched_at=now, duration_ms=waited_ms, **fields),
            backoff)

    def _failed(self, feed: FeedState, now: datetime, failure: _FetchFailure,
                result: Callable[..., FetchResult], backoff: bool = True) -> FetchResult:
        return result(
            FetchOutcome.ERROR, status=failure.status, error_kind=failure.kind, error=str(failure),
            unanswered=failure.unanswered,
            next_check_at=polling_policy.next_check(now, bounds(self.settings), hints=(failure.retry_at,),
                                                    error_streak=feed.consecutive_errors + backoff),
        )

    def _received(self, feed: FeedState, now: datetime, response: httpx.Response,
                  hops: list[tuple[int, str]], deadline: float,
                  result: Callable[..., FetchResult], limits: polling_policy.Bounds) -> FetchResult:
        """The result of a final response: not modified, an HTTP error, or its body read."""
        headers = {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
        hints = (polling_policy.cache_until(response.headers, now),
                 polling_policy.retry_after(response.headers.get("retry-after"), now))
        redirect = _permanent_target(hops)
        final_url = str(response.url)
        if response.status_code == 304:
            # its end read (a 304 has no body: no byte more), so the connection goes back to
            # the pool for the host's next feed; closed unread, it would be closed with it
            response.read()
            return result(FetchOutcome.NOT_MODIFIED, status=304, final_url=final_url,
                          etag=response.headers.get("etag"),
                          last_modified=response.headers.get("last-modified"),
                          headers=headers, permanent_redirect=redirect,
                          next_check_at=polling_policy.next_check(now, limits, hints=hints))
        if response.status_code >= 400:
            raise _status_failure(response, now)
        try:
            body = _read_capped(response, self.settings, deadline)
        except Exception as exc:
            overrun = _overrun(exc, self.settings, deadline, True, len(hops))
            if overrun is None:
                raise
            raise overrun from exc
        digest = hashlib.sha256(body).hexdigest()
        return result(
            FetchOutcome.NOT_MODIFIED if digest == feed.body_hash else FetchOutcome.OK,
            status=response.status_code,
            body=None if digest == feed.body_hash else body,
            unchanged=digest == feed.body_hash,
            body_hash=digest,
            content_type=response.headers.get("content-type"),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            final_url=final_url, headers=headers, permanent_redirect=redirect,
            next_check_at=polling_policy.next_check(now, limits, hints=hints),
        )


def _permanent_target(hops: list[tuple[int, str]]) -> str | None:
    """The final URL when every hop was permanent (301/308); None otherwise."""
    if hops and all(status in PERMANENT for status, _ in hops):
        return hops[-1][1]
    return None


@dataclass(frozen=True)
class _Turn:
    """A feed handed to a fetching thread: with its host's slot, or with none (no turn
    came), or not to be fetched (`cut_off`: why its host was cut off)."""

    feed: FeedState
    lease: Lease | None
    cut_off: str | None = None


# Bytes a pass of `fetch_each` holds at once: bodies fetched and not yet taken by its
# caller, and bodies on their way, each counted from its start at the size expected of it
# (`_Held.expected`). Past it no thread starts another fetch until the caller takes some or
# a fetch ends, so a caller that parses while its shard fetches holds about this much of
# its shard's bodies, however large they are and however many threads fetch: a shard of
# large feeds fetches fewer at once, one of small feeds as many as it has threads.
HANDOFF_BYTES = 8 << 20
_HANDOFF_WAIT_S = 0.5  # a waiting thread checks this often whether the caller stopped
# The bytes expected of a fetch before any ended in the pass (on the large side: the first
# fetches of a shard of large feeds start together); after, the mean of what the pass's
# fetches brought, a 304 or an error none (a run of 304s fetches with every thread).
FIRST_BODY_GUESS = 1 << 20


class _Held:
    """Bytes of bodies a pass holds: fetched and untaken, or expected of fetches under way."""

    def __init__(self) -> None:
        self._bytes = 0
        self._fetches = self._fetched_bytes = 0
        self._stopped = False
        self._changed = threading.Condition()

    def expected(self) -> int:
        """The size to count for a fetch about to start."""
        with self._changed:
            return self._fetched_bytes // self._fetches if self._fetches else FIRST_BODY_GUESS

    def start(self, expected: int) -> bool:
        """Count a fetch about to start once there is room for it (at once when the pass
        holds nothing: one fetch can always go); False once the caller stopped. Bounded by
        the caller, which takes every result or stops, and by the fetches under way."""
        with self._changed:
            while self._bytes and self._bytes + expected > HANDOFF_BYTES and not self._stopped:
                self._changed.wait(_HANDOFF_WAIT_S)
            if self._stopped:
                return False
            self._bytes += expected
            return True

    def fetched(self, expected: int, size: int) -> None:
        """A fetch counted at `expected` ended with a body of `size` bytes (0: none, as
        a 304's or an error's)."""
        with self._changed:
            self._bytes += size - expected
            self._fetches += 1
            self._fetched_bytes += size
            self._changed.notify_all()

    def cancelled(self, expected: int) -> None:
        """A fetch counted at `expected` did not happen (no feed, no turn, or it raised)."""
        with self._changed:
            self._bytes -= expected
            self._changed.notify_all()

    def taken(self, size: int) -> None:
        """The caller took a body of `size` bytes."""
        with self._changed:
            self._bytes -= size
            self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()


class _Turns:
    """A batch's feeds, handed to fetching threads only when their host has a free slot:
    a thread never waits on a busy host while another host's feed could go. Hosts take
    turns (round robin), each host's feeds in the order given. A host held by other
    workers longer than `turn_wait` fails its next feed (a timeout) and starts over. A
    host whose fetches timed out `cutoff` times in a row (0: never) is cut off: its feeds
    left are handed out at once, not to be fetched, so a tarpit costs a pass `cutoff`
    timeouts per slot, not one per feed."""

    def __init__(self, feeds: Iterable[FeedState], slots: HostSlots, turn_wait: float, cutoff: int = 0):
        self._slots, self._turn_wait, self._cutoff = slots, turn_wait, cutoff
        self._timeouts: dict[str, int] = {}  # the host's fetches timed out in a row
        self._cut: deque[_Turn] = deque()  # feeds of hosts cut off, not yet handed out
        self._pending: dict[str, deque[FeedState]] = {}
        for feed in feeds:
            self._pending.setdefault(host_of(feed.url), deque()).append(feed)
        self._ring = deque(self._pending)  # hosts with feeds left, the next to try first
        self._ready: deque[_Turn] = deque()  # taken for threads already asking
        self._waiting_since: dict[str, float] = {}  # held by other workers since
        self._changed = threading.Condition()
        self._asking = 0  # threads in `next`: the hosts tried at once (one database round trip)
        self._asking_lock = threading.Lock()
        self._stopped = False

    def next(self) -> _Turn | None:
        """The next feed whose host can take it now, waiting for one; None when all are out."""
        with self._asking_lock:
            self._asking += 1
        try:
            with self._changed:
                return self._next()
        finally:
            with self._asking_lock:
                self._asking -= 1

    def _next(self) -> _Turn | None:
        while (self._ring or self._ready or self._cut) and not self._stopped:
            if self._cut:
                return self._cut.popleft()
            wake: float | None = None
            tried = 0
            while not self._ready and tried < len(self._ring):
                hosts = [self._ring[0]]
                self._ring.rotate(-1)
                while len(hosts) < min(self._asking, len(self._ring) - tried):
                    hosts.append(self._ring[0])
                    self._ring.rotate(-1)
                tried += len(hosts)
                for host, got in zip(hosts, self._slots.try_take_many(hosts), strict=True):
                    if isinstance(got, Lease):
                        self._waiting_since.pop(host, None)
                        self._ready.append(self._hand_out(host, got))
                    elif (turn := self._unserved(host, got)) is not None:
                        self._ready.append(turn)
                    elif got.retry_at is not None:
                        wake = got.retry_at if wake is None else min(wake, got.retry_at)
            if self._ready:
                if len(self._ready) > 1:
                    self._changed.notify(len(self._ready) - 1)  # for the threads asking
                return self._ready.popleft()
            self._changed.wait(None if wake is None else max(wake - time.monotonic(), 0.0))
        return None

    def _unserved(self, host: str, busy: Busy) -> _Turn | None:
        """The host's next feed, without a slot, once other workers held the host too long."""
        if not busy.remote:
            return None
        now = time.monotonic()
        since = self._waiting_since.setdefault(host, now)
        if now - since < self._turn_wait:
            return None
        self._waiting_since[host] = now  # the next feed's wait starts now
        return self._hand_out(host, None)

    def _hand_out(self, host: str, lease: Lease | None) -> _Turn:
        feeds = self._pending[host]
        turn = _Turn(feeds.popleft(), lease)
        if not feeds:
            self._retire(host)
        return turn

    def _retire(self, host: str) -> list[FeedState]:
        """The host's feeds not handed out, taken out of the turns: none are left for it."""
        left = list(self._pending.pop(host, ()))
        if host in self._ring:
            self._ring.remove(host)
            self._waiting_since.pop(host, None)
            self._slots.stop_waiting(host)
        return left

    def fetched(self, feed: FeedState, result: FetchResult) -> None:
        """A fetch ended (`result`): a timeout before its host answered (`unanswered`: not
        one in a body, after a redirect, or in this process's own DNS queue) counts against
        the host, a `dns` failure leaves the count as it is, anything else (an answer)
        starts it again; at `cutoff` the host is cut off.
        Called before the threads waiting for a slot are woken (`changed`)."""
        host = host_of(feed.url)
        with self._changed:
            if result.error_kind == "dns" and not result.unanswered:
                return  # no address, or no lookup could start here: nothing of the host's server
            if not result.unanswered:
                self._timeouts.pop(host, None)
                return
            streak = self._timeouts[host] = self._timeouts.get(host, 0) + 1
            if not self._cutoff or streak < self._cutoff:
                return
            reason = (f"not fetched: {host} timed out on {streak} feeds in a row in this pass "
                      f"(cut off after FETCH_HOST_TIMEOUTS={self._cutoff}; tried again at its next check)")
            left = self._retire(host)
            taken = [turn for turn in self._ready if turn.lease is not None and turn.lease.host == host]
            for turn in taken:  # handed a slot, not yet fetched: not fetched either
                self._ready.remove(turn)
                self._slots.give_back(turn.lease)  # type: ignore[arg-type]
                left.append(turn.feed)
            if not left:
                return
            self._cut.extend(_Turn(feed, None, reason) for feed in left)
            log.warning("host %s cut off for this pass: %d timeouts in a row, %d feeds not fetched",
                        host, streak, len(left))
            self._changed.notify_all()

    def most_at_once(self, per_host: int) -> int:
        """The most feeds that can be in flight at once: per host, its slots or its feeds."""
        return sum(min(per_host, len(feeds)) for feeds in self._pending.values())

    def changed(self) -> None:
        """A slot came back: wake the threads waiting for one."""
        with self._changed:
            self._changed.notify_all()

    def stop(self) -> None:
        """Hand out no more feeds: every thread asking gets None."""
        with self._changed:
            self._stopped = True
            while self._ready:  # taken for threads that will not ask again: their slots back
                if (lease := self._ready.popleft().lease) is not None:
                    self._slots.give_back(lease)
            self._changed.notify_all()



def fetch_all(
    feeds: Iterable[FeedState],
    settings: Settings,
    now: datetime,
    on_result: Callable[[FetchResult], None] | None = None,
    db_url: str | None = None,
) -> list[FetchResult]:
    """Every feed's result of `fetch_each`, once all are fetched. `on_result` sees each
    result as it comes, on the calling thread."""
    results = []
    for fetched in fetch_each(feeds, settings, now, db_url):
        results.append(fetched)
        if on_result is not None:
            on_result(fetched)
    return results


def fetch_each(
    feeds: Iterable[FeedState],
    settings: Settings,
    now: datetime,
    db_url: str | None = None,
) -> Generator[FetchResult, None, None]:
    """Fetch feeds concurrently and yield each result as it comes, on the calling thread:
    at most `fetch_concurrency` at once, and per host `per_host_concurrency` at once with
    `host_delay_s` between starts, across every worker sharing the database at `db_url`
    (default: `DATABASE_URL` / `AIRFLOW_CONN_NEWS_DB` from the settings; none: within this
    process). Past `HANDOFF_BYTES` of bodies waiting for the caller or expected of fetches
    under way, no fetch starts until it takes some or a fetch ends; closing the generator
    early stops handing out feeds and returns once the threads have ended."""
    feeds = list(feeds)
    if not feeds:
        return
    shared_with = db_url or configured_database_url(settings)
    done: queue.SimpleQueue[FetchResult | BaseException] = queue.SimpleQueue()
    held = _Held()
    with Fetcher(settings, shared_with) as fetcher:
        turns = _Turns(feeds, fetcher.hosts, fetcher.turn_wait(), settings.host_timeout_cutoff)
        log.info("fetching %d feeds; host limits held %s", len(feeds),
                 "across workers" if fetcher.hosts.shared else "in this process")

        def work() -> None:
            try:
                while held.start(expected := held.expected()):
                    if (turn := turns.next()) is None:
                        held.cancelled(expected)
                        break
                    if turn.cut_off is not None:
                        held.cancelled(expected)
                        done.put(fetcher.cut_off(turn.feed, now, turn.cut_off))
                        continue
                    if turn.lease is None:
                        held.cancelled(expected)
                        done.put(fetcher.no_turn(turn.feed, now))
                        continue
                    try:
                        fetched = fetcher.fetch(turn.feed, now, turn.lease)
                    except BaseException:
                        held.cancelled(expected)
                        turns.changed()
                        raise
                    turns.fetched(turn.feed, fetched)  # the host's count first (a cut-off), then
                    turns.changed()  # the threads waiting for its slot
                    held.fetched(expected, len(fetched.body or b""))
                    done.put(fetched)
                    del fetched  # not held while waiting for room
            except BaseException as exc:  # noqa: BLE001 - raised again on the calling thread
                done.put(exc)

        threads = [threading.Thread(target=work, name=f"fetch-{i}", daemon=True)
                   for i in range(min(settings.fetch_concurrency,
                                      turns.most_at_once(settings.per_host_concurrency)))]
        for thread in threads:
            thread.start()
        try:
            for _ in feeds:
                fetched = done.get()
                if isinstance(fetched, BaseException):
                    raise fetched
                held.taken(len(fetched.body or b""))
                yield fetched
                del fetched
        finally:
            held.stop()
            turns.stop()
            for thread in threads:
                thread.join()
