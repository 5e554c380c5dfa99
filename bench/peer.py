"""The peer: lemon24/reader (feedparser + SQLite) ingesting the same feeds from the same server.

Run as a subprocess of `make bench` (its own process: its memory and CPU are its own):

    python -m bench.peer URL_FILE WORKERS

prints one JSON line: seconds (make_reader, add every feed, update_feeds with WORKERS
threads), entries stored, peak RSS. The database is a fresh SQLite file in a temporary
directory.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    urls = Path(sys.argv[1]).read_text().split()
    workers = int(sys.argv[2])
    from reader import make_reader

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        reader = make_reader(str(Path(tmp) / "db.sqlite"))
        for url in urls:
            reader.add_feed(url, allow_invalid_url=True)
        reader.update_feeds(workers=workers)
        seconds = time.perf_counter() - started
        counts = reader.get_entry_counts()
        reader.close()
    print(json.dumps({"peer": "reader", "version": _version(), "workers": workers,
                      "seconds": round(seconds, 2), "entries": counts.total,
                      "peak_rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """This process's own high-water mark (VmHWM). `ru_maxrss` would report the parent's:
    a process started by fork and exec inherits it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _version() -> str:
    from importlib.metadata import version

    return version("reader")


if __name__ == "__main__":
    main()
