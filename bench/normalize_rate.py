"""Normalize-stage rate on real entries (`python -m bench.normalize_rate`).

Entries come from two corpora of `../shared/corpora`, each body parsed once with
`pipeline.parse.parse_feed` as the parse stage does (`pipeline.shard_pass.parse_and_normalize`), untimed:

* `news`: the 1,000-feed corpus of `make bench` (`bench.corpus.build_corpus`: the real
  news feeds replicated into distinct feeds);
* `bench-feeds`: the 200 real feeds of `bench-feeds`, each once (no replica shares a body).

Then `normalize.normalize_entry` runs over every entry of a corpus, best of `--repeat`
runs, one process, one core. Every cache of the modules normalize calls is emptied before
each run, so no run is helped by an earlier one (only by repeats within the run, as in
the stage).

`--digest FILE` writes, per corpus, the sha256 over the repr of every `Article` (in order)
and per-entry digests; `--check FILE` compares against such a file and fails on any
difference, naming the first entries that differ. `--profile N` prints cProfile's top N
functions (cumulative and internal time) of one run over the `news` corpus.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pickle
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.corpus import build_corpus
from pipeline import dates, identity, language, neardup, normalize, text, urls
from pipeline.config import PROJECT_ROOT
from pipeline.parse import parse_feed
from pipeline.records import Article, ParsedEntry

SHARED = PROJECT_ROOT.parent / "shared"
FETCHED_AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CACHED_MODULES = (normalize, text, urls, language, neardup, dates, identity)


def _bodies(name: str, feeds: int) -> list[tuple[bytes, str]]:
    if name == "news":
        bodies, _ = build_corpus(feeds, SHARED if SHARED.is_dir() else None)
        return [(body, f"https://bench.example/feed{i:05d}.xml") for i, body in enumerate(bodies)]
    files = sorted((SHARED / "corpora" / "bench-feeds" / "feeds").iterdir())
    return [(path.read_bytes(), f"https://{path.name}.example/feed") for path in files]


def entries(name: str, feeds: int = 1000) -> list[ParsedEntry]:
    """Every entry of a corpus, as the parse stage stages it."""
    out = []
    for feed_id, (body, url) in enumerate(_bodies(name, feeds)):
        try:
            parsed = parse_feed(body, url)
        except Exception:  # noqa: BLE001 - the stage records such a body as failed: no entries
            continue
        if not parsed.is_feed:
            continue
        out.extend(ParsedEntry(feed_id, seq, raw, FETCHED_AT, parsed.language, parsed.link or url)
                   for seq, raw in enumerate(parsed.entries))
    return out


def clear_caches() -> None:
    """Empty every functools cache of the modules normalize calls (but the loaded models)."""
    for module in CACHED_MODULES:
        for name, value in list(vars(module).items()):
            if name.endswith("_MEMO") and isinstance(value, dict):
                value.clear()
            if getattr(value, "__module__", None) != module.__name__:
                continue
            if hasattr(value, "cache_clear") and name not in ("_identifier", "_template", "_permutations"):
                value.cache_clear()


def run(batch: list[ParsedEntry]) -> list[Article]:
    return [normalize.normalize_entry(entry) for entry in batch]


def timed(batch: list[ParsedEntry], repeat: int) -> tuple[float, float]:
    """Best wall and best CPU seconds of `repeat` runs (CPU time reads steadier on a busy host)."""
    run(batch[:50])  # load the models (py3langid, datasketch) outside the timing
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        clear_caches()
        started, started_cpu = time.perf_counter(), time.process_time()
        run(batch)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    return best, best_cpu


def digests(batch: list[ParsedEntry]) -> dict[str, Any]:
    clear_caches()
    each = [hashlib.sha256(repr(article).encode("utf-8", "surrogatepass")).hexdigest()
            for article in run(batch)]
    total = hashlib.sha256("\n".join(each).encode()).hexdigest()
    return {"entries": len(each), "sha256": total, "each": each}


def profile(batch: list[ParsedEntry], top: int) -> None:
    run(batch[:50])
    clear_caches()
    profiler = cProfile.Profile()
    profiler.enable()
    run(batch)
    profiler.disable()
    for key in ("cumulative", "tottime"):
        pstats.Stats(profiler, stream=sys.stdout).sort_stats(key).print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=1000, help="feeds of the news corpus")
    parser.add_argument("--corpus", choices=("news", "bench-feeds", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--digest", type=Path, help="write the output digests to this file")
    parser.add_argument("--check", type=Path, help="compare the output digests with this file")
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N (first corpus)")
    parser.add_argument("--entries", type=Path,
                        help="pickle of the parsed entries: read when it exists, else written (so a "
                             "check compares normalize alone, whatever the parser does meanwhile)")
    args = parser.parse_args()

    names = ("news", "bench-feeds") if args.corpus == "both" else (args.corpus,)
    saved: dict[str, list[ParsedEntry]] = {}
    if args.entries and args.entries.exists():
        saved = pickle.loads(args.entries.read_bytes())
    batches = {name: saved[name] if name in saved else entries(name, args.feeds) for name in names}
    if args.entries and not args.entries.exists():
        args.entries.write_bytes(pickle.dumps(batches))
    if args.profile:
        profile(batches[names[0]], args.profile)
        return 0
    for name, batch in batches.items():
        seconds, cpu = timed(batch, args.repeat) if args.repeat else (0.0, 0.0)
        rate = (f"{len(batch) / seconds:,.1f} entries/s ({seconds:.2f} s; CPU {len(batch) / cpu:,.1f} "
                f"entries/s)" if seconds else "untimed")
        print(f"{name:<12} {len(batch):>6} entries  {rate}  best of {args.repeat}")
    if args.digest or args.check:
        found = {name: digests(batch) for name, batch in batches.items()}
        for name, d in found.items():
            print(f"{name:<12} digest {d['sha256']}")
        if args.digest:
            args.digest.parent.mkdir(parents=True, exist_ok=True)
            args.digest.write_text(json.dumps(found))
        if args.check:
            expected = json.loads(args.check.read_text())
            ok = True
            for name, d in found.items():
                if name not in expected:
                    print(f"{name}: no baseline digest")
                    ok = False
                    continue
                want = expected[name]
                if d["sha256"] == want["sha256"]:
                    print(f"{name}: digest matches the baseline ({d['entries']} entries)")
                    continue
                ok = False
                differ = [i for i, (a, b) in enumerate(zip(d["each"], want["each"], strict=False)) if a != b]
                print(f"{name}: DIGEST DIFFERS ({d['entries']} vs {want['entries']} entries; "
                      f"first differing entries: {differ[:10]})")
            return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
