"""Fetch stage: HTTP GET of feeds, politely and within bounds. The only network I/O.

Per feed: connect/read/total timeouts, a cap on the (decompressed) body size
enforced while streaming, gzip, a clear User-Agent, and conditional GET from
the stored ETag / Last-Modified. Every failure becomes a classified
`FetchResult`, never an exception: one failing feed never fails a run.
"""

from __future__ import annotations

import ssl
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from typing import Callable, Iterable

import httpx

from pipeline.config import Settings
from pipeline.records import FeedState, FetchOutcome, FetchResult

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
MAX_REDIRECTS = 5


class _FetchFailure(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status


def make_client(settings: Settings) -> httpx.Client:
    """One client per fetch batch: pooled connections, shared by the worker threads."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.total_timeout,
    )
    limits = httpx.Limits(
        max_connections=settings.fetch_concurrency,
        max_keepalive_connections=settings.fetch_concurrency,
    )
    return httpx.Client(
        timeout=timeout,
        limits=limits,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": settings.user_agent, "Accept": ACCEPT},
    )


def conditional_headers(feed: FeedState) -> dict[str, str]:
    headers = {}
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    return headers


def _read_capped(response: httpx.Response, settings: Settings, deadline: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise _FetchFailure(
            "too_large", f"Content-Length {declared} exceeds {settings.max_body_bytes} bytes"
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():  # decompressed: the cap also stops gzip bombs
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise _FetchFailure(
                "too_large", f"body exceeds {settings.max_body_bytes} bytes (decompressed)"
            )
        if time.monotonic() > deadline:
            raise _FetchFailure("timeout", f"total time exceeded {settings.total_timeout:g}s")
        chunks.append(chunk)
    return b"".join(chunks)


def _classify(exc: Exception) -> _FetchFailure:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, _FetchFailure):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return _FetchFailure("timeout", text)
    if isinstance(exc, httpx.TooManyRedirects):
        return _FetchFailure("redirect", text)
    if isinstance(exc, httpx.ConnectError):
        cause = exc.__context__ or exc.__cause__
        if isinstance(cause, ssl.SSLError) or "SSL" in text or "certificate" in text:
            return _FetchFailure("tls", text)
        if "Name or service not known" in text or "nodename" in text or "getaddrinfo" in text:
            return _FetchFailure("dns", text)
        return _FetchFailure("connect", text)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return _FetchFailure("bad_url", text)
    if isinstance(exc, httpx.DecodingError):
        return _FetchFailure("decoding", text)
    return _FetchFailure("network", f"{type(exc).__name__}: {text}")


def fetch_feed(client: httpx.Client, feed: FeedState, settings: Settings, now: datetime) -> FetchResult:
    """GET one feed. Never raises for network or HTTP trouble: the result says what happened."""
    started = time.monotonic()
    deadline = started + settings.total_timeout

    def result(outcome: FetchOutcome, **fields: object) -> FetchResult:
        elapsed = int((time.monotonic() - started) * 1000)
        return FetchResult(
            feed_id=feed.id, url=feed.url, outcome=outcome, fetched_at=now,
            duration_ms=elapsed, **fields,  # type: ignore[arg-type]
        )

    try:
        with client.stream("GET", feed.url, headers=conditional_headers(feed)) as response:
            final_url = str(response.url)
            if response.status_code == 304:
                return result(FetchOutcome.NOT_MODIFIED, status=304, final_url=final_url)
            if response.status_code >= 400:
                raise _FetchFailure(
                    "http_status", f"HTTP {response.status_code} {response.reason_phrase}",
                    status=response.status_code,
                )
            body = _read_capped(response, settings, deadline)
            return result(
                FetchOutcome.OK,
                status=response.status_code,
                body=body,
                content_type=response.headers.get("content-type"),
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                final_url=final_url,
            )
    except Exception as exc:  # noqa: BLE001 - every failure of one feed is data
        failure = _classify(exc)
        return result(
            FetchOutcome.ERROR, status=failure.status, error_kind=failure.kind, error=str(failure)
        )


def fetch_all(
    feeds: Iterable[FeedState],
    settings: Settings,
    now: datetime,
    on_result: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Fetch feeds concurrently (bounded by `fetch_concurrency`); results in completion order."""
    feeds = list(feeds)
    results: list[FetchResult] = []
    if not feeds:
        return results
    with make_client(settings) as client, ThreadPoolExecutor(
        max_workers=min(settings.fetch_concurrency, len(feeds)), thread_name_prefix="fetch"
    ) as pool:
        futures = [pool.submit(fetch_feed, client, feed, settings, now) for feed in feeds]
        for future in as_completed(futures):
            fetched = future.result()
            results.append(fetched)
            if on_result is not None:
                on_result(fetched)
    return results
