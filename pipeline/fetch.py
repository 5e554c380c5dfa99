"""Fetch stage: HTTP GET of feeds, politely and within bounds. The only network I/O.

Per feed: connect/read timeouts per step, and one total deadline over DNS, connect,
headers, every redirect hop and the body together (its clock starts when the feed's
turn at its host comes); a cap on the decompressed body size, enforced while
streaming over every gzip member (a gzip bomb is an error, not an out-of-memory);
conditional GET from the stored ETag / Last-Modified, and a body identical to
the last one parsed counts as not modified; redirects followed by hand (up to
`MAX_REDIRECTS`, loops detected, each hop through the SSRF guard); a global
and a per-host concurrency limit; `Retry-After`, `Cache-Control`, `Expires`
and the error streak set the next check. Every failure becomes a classified
`FetchResult`, never an exception: one failing feed never fails a run.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timedelta
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from pipeline import netguard, polling_policy
from pipeline.config import Settings
from pipeline.netguard import (
    AddressPolicy,
    BlockedAddress,
    DeadlineExceeded,
    GuardedBackend,
    ResolutionFailed,
)
from pipeline.records import FeedState, FetchOutcome, FetchResult

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


def polling_rules(settings: Settings) -> polling_policy.Rules:
    return polling_policy.Rules(bounds(settings), settings.window_fill,
                                timedelta(seconds=settings.hot_interval_s))


def bounds(settings: Settings) -> polling_policy.Bounds:
    return polling_policy.Bounds(timedelta(seconds=settings.min_interval_s),
                                 timedelta(seconds=settings.max_interval_s),
                                 timedelta(seconds=settings.error_backoff_s))


def make_client(settings: Settings) -> httpx.Client:
    """One client per fetch batch: pooled connections, guarded dialling, shared by threads."""
    timeout = httpx.Timeout(connect=settings.connect_timeout, read=settings.read_timeout,
                            write=settings.read_timeout, pool=settings.total_timeout)
    transport = httpx.HTTPTransport(limits=httpx.Limits(
        max_connections=settings.fetch_concurrency,
        max_keepalive_connections=settings.fetch_concurrency))
    # httpx has no public hook for the dialler: swap in a pool whose backend checks addresses.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=settings.fetch_concurrency,
        max_keepalive_connections=settings.fetch_concurrency,
        network_backend=GuardedBackend(AddressPolicy(settings.allowed_networks)),
    )
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False,
                        trust_env=False,
                        headers={"User-Agent": settings.user_agent, "Accept": ACCEPT,
                                 "Accept-Encoding": "gzip, deflate"})


class HostLimits:
    """At most `per_host` requests in flight to one host:port."""

    def __init__(self, per_host: int):
        self._per_host = per_host
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(self._per_host))

    def slot(self, url: str) -> threading.BoundedSemaphore:
        parts = urlsplit(url)
        with self._lock:
            return self._slots[f"{parts.hostname}:{parts.port or parts.scheme}"]


def conditional_headers(feed: FeedState) -> dict[str, str]:
    headers = {}
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    return headers


def _compressed(response: httpx.Response) -> bool:
    encoding = (response.headers.get("content-encoding") or "identity").strip().lower()
    if encoding in ("", "identity"):
        return False
    if encoding in ("gzip", "x-gzip", "deflate"):
        return True
    raise _FetchFailure("decoding", f"unsupported Content-Encoding: {encoding}")


def _zlib_or_gzip() -> zlib._Decompress:
    return zlib.decompressobj(zlib.MAX_WBITS | 32)  # the header says which


def _inflate(raw: Iterable[bytes], room: Callable[[], int]) -> Iterator[bytes]:
    """gzip or zlib data decompressed in steps of at most `room()` + 1 bytes, so a cap on
    the output holds however far the input inflates. A gzip body of several members
    (RFC 1952) yields every member in turn; zero bytes padding the end are ignored."""
    decoder, between = _zlib_or_gzip(), False
    for chunk in raw:
        pending = chunk
        while pending:
            if between:  # after a member: zero padding, or the next member's header
                pending = pending.lstrip(b"\0")
                if not pending:
                    break
                between = False
            yield decoder.decompress(pending, room() + 1)
            pending = decoder.unconsumed_tail
            if decoder.eof:
                pending, decoder, between = decoder.unused_data, _zlib_or_gzip(), True
    yield decoder.flush()


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
        for data in _inflate(arriving(), room) if compressed else arriving():
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
    """Fetches feeds with one client, one global and one per-host limit."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.client = make_client(settings)
        self.hosts = HostLimits(settings.per_host_concurrency)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(
        self, url: str, headers: dict[str, str], slot: threading.BoundedSemaphore, deadline: float
    ) -> tuple[httpx.Response, threading.BoundedSemaphore, list[tuple[int, str]]]:
        """GET with redirects followed by hand, `slot` (the host's, held) for the first hop.
        Returns the final (streaming) response, the host slot it holds (release it after
        reading), and the redirect hops. Releases every slot it holds when it raises."""
        hops: list[tuple[int, str]] = []
        seen = {url}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                request = self.client.build_request("GET", url, headers=headers,
                                                    timeout=self._timeout(deadline))
                response = self.client.send(request, stream=True)
            except BaseException as exc:
                slot.release()
                overrun = _overrun(exc, self.settings, deadline, False, len(hops))
                if overrun is None:
                    raise
                raise overrun from exc
            location = response.headers.get("location")
            if response.status_code not in REDIRECTS or not location:
                return response, slot, hops
            response.close()
            slot.release()
            target = urljoin(url, location)
            if urlsplit(target).scheme not in ("http", "https"):
                raise _FetchFailure("redirect", f"redirect to a non-web URL: {target}")
            if target in seen:
                raise _FetchFailure("redirect_loop", f"redirect loop: {url} -> {target}")
            hops.append((response.status_code, target))
            seen.add(target)
            url = target
            slot = self.hosts.slot(url)
            if not slot.acquire(timeout=max(deadline - time.monotonic(), 0)):
                raise _total_timeout(self.settings, "waiting for a turn at the host", len(hops))
        slot.release()
        raise _FetchFailure("redirect", f"more than {MAX_REDIRECTS} redirects")

    def _timeout(self, deadline: float) -> httpx.Timeout:
        """The client's timeouts, none longer than the time left (the network backend also
        holds each read and write to it: see netguard.deadline)."""
        left = max(deadline - time.monotonic(), 0.001)
        s = self.settings
        return httpx.Timeout(connect=min(s.connect_timeout, left), read=min(s.read_timeout, left),
                             write=min(s.read_timeout, left), pool=left)

    def fetch(self, feed: FeedState, now: datetime) -> FetchResult:
        """GET one feed. Never raises for network or HTTP trouble: the result says what happened.
        The total timeout starts when the feed's turn at its host comes: waiting behind other
        feeds of the same publisher is not this feed's slowness."""
        started = time.monotonic()
        limits = bounds(self.settings)

        def result(outcome: FetchOutcome, **fields: object) -> FetchResult:
            elapsed = int((time.monotonic() - started) * 1000)
            return FetchResult(feed_id=feed.id, url=feed.url, outcome=outcome, fetched_at=now,
                               duration_ms=elapsed, **fields)  # type: ignore[arg-type]

        first_slot = self.hosts.slot(feed.url)
        first_slot.acquire()
        deadline = time.monotonic() + self.settings.total_timeout
        try:
            with netguard.deadline(deadline):
                response, slot, hops = self._open(feed.url, conditional_headers(feed),
                                                  first_slot, deadline)
                try:
                    return self._received(feed, now, response, hops, deadline, result, limits)
                finally:
                    response.close()
                    slot.release()
        except Exception as exc:  # noqa: BLE001 - every failure of one feed is data
            failure = _classify(exc)
            return result(
                FetchOutcome.ERROR, status=failure.status, error_kind=failure.kind, error=str(failure),
                next_check_at=polling_policy.next_check(now, limits, hints=(failure.retry_at,),
                                                  error_streak=feed.consecutive_errors + 1),
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


def fetch_all(
    feeds: Iterable[FeedState],
    settings: Settings,
    now: datetime,
    on_result: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Fetch feeds concurrently (at most `fetch_concurrency`, `per_host_concurrency` per host)."""
    feeds = list(feeds)
    results: list[FetchResult] = []
    if not feeds:
        return results
    with Fetcher(settings) as fetcher, ThreadPoolExecutor(
        max_workers=min(settings.fetch_concurrency, len(feeds)), thread_name_prefix="fetch"
    ) as pool:
        futures = [pool.submit(fetcher.fetch, feed, now) for feed in feeds]
        for future in as_completed(futures):
            fetched = future.result()
            results.append(fetched)
            if on_result is not None:
                on_result(fetched)
    return results
