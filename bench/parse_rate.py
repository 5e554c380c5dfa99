"""Parse-only rate of the two parse paths on the same bytes (`make bench`, or alone:
`python -m bench.parse_rate [--feeds N]`).

Each body goes through `pipeline.parse.parse_feed` (the stage's own entry point: encoding
repair, entry cap, JSON-safe entries) once with `FEED_PARSER=feedparser` and once with
`auto` (the lxml fast path, feedparser for the bodies it refuses). Reported: entries per
second of each, their ratio, the same ratio over only the bodies the fast path took, and
the share of bodies each parser took. Best of `repeat` runs, one process, one core, each
started with the fast path's cache of rendered tags (and of bases urllib parses) empty: a run meets each feed's
markup once, and the replicated corpus would otherwise find every tag remembered from the
passes before (9,468 entries/s with 50,000 tags kept, 7,935 with 2,000, one run each on
2026-12-07; one pass over the same feeds under their own addresses took as long either way).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from pipeline import fastmarkup, fastparse
from pipeline.parse import parse_feed

URL = "https://bench.example/feed.xml"


def _rate(bodies: list[bytes], parser: str, repeat: int) -> tuple[int, float]:
    best = float("inf")
    entries = 0
    for _ in range(repeat):
        fastmarkup._RENDERED.clear()
        fastparse._parses_cached.cache_clear()
        started = time.perf_counter()
        entries = sum(len(parse_feed(body, URL, parser=parser).entries) for body in bodies)
        best = min(best, time.perf_counter() - started)
    return entries, best


def measure(bodies: list[bytes], repeat: int = 2) -> dict[str, Any]:
    taken = Counter(parse_feed(body, URL).parser for body in bodies)
    fast_bodies = [body for body in bodies if parse_feed(body, URL).parser == "lxml"]
    entries, feedparser_s = _rate(bodies, "feedparser", repeat)
    _, auto_s = _rate(bodies, "auto", repeat)
    fast_entries, fast_ref_s = _rate(fast_bodies, "feedparser", repeat)
    _, fast_s = _rate(fast_bodies, "auto", repeat)
    return {
        "bodies": len(bodies),
        "bodies_by_parser": dict(taken),
        "fast_path_share": round(taken["lxml"] / max(1, len(bodies)), 3),
        "entries": entries,
        "feedparser_entries_per_second": round(entries / feedparser_s, 1),
        "auto_entries_per_second": round(entries / auto_s, 1),
        "auto_vs_feedparser": round(feedparser_s / auto_s, 2),
        "fast_path_bodies_entries": fast_entries,
        "fast_path_vs_feedparser_same_bodies": round(fast_ref_s / fast_s, 2),
    }


def main() -> int:
    from bench.corpus import build_corpus
    from bench.run import SHARED

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    bodies, origin = build_corpus(args.feeds, SHARED if SHARED.is_dir() else None)
    print(origin)
    for key, value in measure(bodies, args.repeat).items():
        print(f"{key:<40}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
