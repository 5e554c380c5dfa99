"""The news day's publishers on loopback: `python -m bench.news_day_server DAY.npz`.

A separate process (it does not share the benchmarked process's CPU or memory). It loads a
day saved by `bench.news_day_generator.save`, binds 127.0.0.1 on a free port, prints the
port, then reads commands on stdin, one a line, and answers each on stdout:

* `<epoch seconds>`: the simulated clock is now that time; answers `ok`;
* `stats`: a JSON object of the requests served so far by status.

`GET /feed/<n>.xml` is feed n as it stands at the clock: its latest 20 stories, an ETag
and a Last-Modified; 304 on a matching If-None-Match (or, without one, If-Modified-Since).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench import news_day_generator as gen

_PATH = re.compile(r"^/feed/(\d+)\.xml$")


class NewsDayServer(ThreadingHTTPServer):
    # A backlog for many concurrent clients (as pipeline.feedserver): past the default (5)
    # the kernel drops SYNs and each dropped client waits a second before retrying.
    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, day: gen.NewsDay) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.day = day
        self.now = float(day.start)
        self.served: Counter[int] = Counter()
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: NewsDayServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        match = _PATH.match(self.path.split("?", 1)[0])
        day = self.server.day
        if match is None or int(match.group(1)) >= day.feeds:
            self._send(404, b"not found", {"Content-Type": "text/plain"})
            return
        feed = gen.render(day, int(match.group(1)), self.server.now)
        headers = {"ETag": feed.etag, "Last-Modified": feed.last_modified}
        if_none_match = self.headers.get("If-None-Match")
        since = self.headers.get("If-Modified-Since")
        if (if_none_match == feed.etag if if_none_match is not None
                else since is not None and since == feed.last_modified):
            self._send(304, b"", headers)
            return
        self._send(200, feed.body, {**headers, "Content-Type": "application/rss+xml"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        with self.server.lock:
            self.server.served[status] += 1
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


def main() -> None:
    server = NewsDayServer(gen.load(Path(sys.argv[1])))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            with server.lock:
                print(json.dumps({str(k): v for k, v in server.served.items()}), flush=True)
        elif command:
            server.now = float(command)
            print("ok", flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
