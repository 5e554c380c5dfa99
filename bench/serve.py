"""Serve every file of a directory on 127.0.0.1 (a separate process, so the server
does not share the benchmarked process's CPU). Prints the port, then serves until killed."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from pipeline.feedserver import FeedServer, Route


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    routes = {f"/{p.name}": Route(p.read_bytes(), delay=args.delay)
              for p in sorted(args.directory.iterdir()) if p.is_file()}
    server = FeedServer(routes)
    server.start()
    print(server.port, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
