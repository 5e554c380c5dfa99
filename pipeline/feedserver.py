"""A small HTTP server on loopback that serves feeds: for the demo, the benchmark and tests.

Each route is a path with a body and a content type. Responses carry an ETag
and Last-Modified and honour conditional requests with 304, like a real
publisher's server. Tests can add routes with other statuses, headers or a
delay. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPES = {".xml": "application/xml", ".rss": "application/rss+xml",
                 ".atom": "application/atom+xml", ".rdf": "application/rdf+xml",
                 ".json": "application/feed+json", ".html": "text/html"}


class _Server(ThreadingHTTPServer):
    # A backlog for many concurrent clients: with the default (5) the kernel drops SYNs
    # past it and each dropped client waits a second before retrying.
    request_queue_size = 1024


@dataclass
class Route:
    body: bytes
    content_type: str = "application/xml"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    validators: bool = True  # send ETag / Last-Modified and answer 304
    send_etag: bool = True
    send_last_modified: bool = True
    drip: float = 0.0  # seconds between bytes: a server that trickles its answer

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'


class FeedServer:
    """`with FeedServer(routes) as server: server.url("/a.xml")`."""

    def __init__(self, routes: Mapping[str, Route] | None = None, port: int = 0):
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.last_modified = formatdate(time.time() - 3600, usegmt=True)
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0  # TCP connections clients opened (one serves many requests kept alive)
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet: tests and the demo read outcomes from the database

            def setup(self) -> None:  # once per connection
                super().setup()
                with server._lock:
                    server.connections += 1

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._get()
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _get(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests.append((path, dict(self.headers)))
                route = server.routes.get(path)
                if route is None:
                    self._send(404, b"not found", "text/plain", {})
                    return
                if route.delay:
                    time.sleep(route.delay)
                headers = dict(route.headers)
                if route.validators and route.status == 200:
                    if route.send_etag:
                        headers["ETag"] = route.etag
                    if route.send_last_modified:
                        headers["Last-Modified"] = server.last_modified
                    # RFC 9110: If-None-Match, when present, takes precedence over If-Modified-Since
                    if_none_match = self.headers.get("If-None-Match")
                    since = self.headers.get("If-Modified-Since")
                    if (if_none_match == route.etag if if_none_match is not None
                            else since is not None and since == server.last_modified):
                        self._send(304, b"", None, headers)
                        return
                body = route.body
                compressible = route.status == 200 and "Content-Encoding" not in headers
                if compressible and "gzip" in (self.headers.get("Accept-Encoding") or ""):
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                self._send(route.status, body, route.content_type, headers, route.drip)

            def _send(self, status: int, body: bytes, ctype: str | None,
                      headers: Mapping[str, str], drip: float = 0.0) -> None:
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if drip:
                    for i in range(min(len(body), 600)):  # bounded: at most 600 slow bytes
                        try:
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                        except OSError:
                            return  # the client gave up, as it should
                        time.sleep(drip)
                elif body:
                    self.wfile.write(body)

        return Handler
