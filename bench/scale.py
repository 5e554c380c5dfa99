"""Peak memory of one CLI ingest as the feed list grows: `python -m bench.scale --feeds N`.

Builds N distinct feeds (bench.corpus: real feeds of ../shared/corpora/`--source`
replicated), serves them on loopback (bench.run.serve, its own process), and runs
`pipeline.local_runner.ingest` into a fresh database in a *separate, freshly exec'd
process* (`--ingest-child`), so nothing of this process (the corpus bytes) and nothing of an
earlier measurement is in it. This process samples, every `--interval` seconds:

* the ingest process's VmRSS and VmHWM (/proc/<pid>/status; VmHWM is the kernel's own
  high-water mark of that address space, reset at exec, so a peak between two samples is
  not missed), and the child's own VmHWM read just before it returns;
* the same for each of its child processes (the forked shard workers, and the load's
  Great Expectations child; VmHWM read on every sample, so a child's peak up to its last
  sample counts);
* the sum of VmRSS over the ingest process and its workers at the same instant.

The ingest process gets its own fresh NEWS_DATA_DIR (its Great Expectations project), so
every size pays the same validation set-up and no concurrent run rewrites the project.

Not `getrusage(...).ru_maxrss`: RUSAGE_CHILDREN is the largest of any descendant, and the
ru_maxrss of a forked or fork+exec'd process starts at its parent's RSS at fork time.

Prints one JSON object (and writes it to .data/bench/scale_<source>_<N>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

_MB = 1024  # /proc/<pid>/status reports kB


def _status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of a live process; {} once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith((b"VmRSS:", b"VmHWM:")):
            key, value = line.split(b":", 1)
            out[key.decode()] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


class Sampler(threading.Thread):
    """Peak VmRSS / VmHWM of a process and (separately) of its descendants."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.main_kb = 0
        self.worker_kb: dict[int, int] = {}  # pid -> peak kB
        self.total_kb = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)
        self.sample()

    def sample(self) -> None:
        main = _status_kb(self.pid)
        if not main:
            return
        total = main.get("VmRSS", 0)
        self.main_kb = max(self.main_kb, main.get("VmRSS", 0), main.get("VmHWM", 0))
        for child in _children(self.pid):
            status = _status_kb(child)
            if status:
                total += status.get("VmRSS", 0)
                self.worker_kb[child] = max(self.worker_kb.get(child, 0), status.get("VmRSS", 0),
                                            status.get("VmHWM", 0))
        self.total_kb = max(self.total_kb, total)
        self.samples += 1

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _settings() -> Any:
    from pipeline.config import Settings

    # As bench.run: every feed on one loopback host, the per-host limit lifted to the global one.
    base = Settings.from_env(quarantine_fail_ratio=1.0).allowing("127.0.0.1/32")
    return base.replace(per_host_concurrency=base.fetch_concurrency)


def ingest_child(db_url: str, port: int, feeds: int) -> None:
    """The measured process: one CLI ingest of `feeds` loopback feeds; prints a JSON line."""
    from pipeline import local_runner
    from pipeline.records import FeedSource

    settings = _settings()
    sources = [FeedSource(f"http://127.0.0.1:{port}/feed{i:05d}.xml") for i in range(feeds)]
    started = time.perf_counter()
    summary = local_runner.ingest(db_url, settings, sources, f"scale-{uuid.uuid4().hex[:8]}",
                                  validation_child=True)  # as the CLI runs it
    wall = time.perf_counter() - started
    own = _status_kb(os.getpid())
    print(json.dumps({"totals": summary["totals"], "stage_seconds": summary["stage_seconds"],
                      "seconds": round(wall, 2), "workers": settings.workers,
                      "vmhwm_kb_at_exit": own.get("VmHWM", 0)}), flush=True)


def measure(feeds: int, source: str = "bench-feeds", interval: float = 0.05,
            shared: Path | None = None) -> dict[str, Any]:
    from bench.corpus import build_corpus
    from bench.run import SHARED, fresh_database, serve
    from pipeline import database
    from pipeline.config import PROJECT_ROOT

    settings = _settings()
    bodies, origin = build_corpus(feeds, shared or SHARED, source)
    corpus_bytes = sum(map(len, bodies))
    # A database of this process's own (dropped at the end): two benches running at once on
    # one server must not reset each other's database mid-run.
    name = f"news_bench_scale_{feeds}_{os.getpid()}"
    url = fresh_database(settings, name)
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as data_dir:
        for i, body in enumerate(bodies):
            (Path(tmp) / f"feed{i:05d}.xml").write_bytes(body)
        del bodies
        server, port = serve(Path(tmp), 0.0)
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "bench.scale", "--ingest-child", url, str(port), str(feeds)],
                stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
                # its own data directory: a Great Expectations project built the same way at
                # every size, which no other process on the machine rewrites meanwhile
                env={**os.environ, "NEWS_DATA_DIR": data_dir})
            sampler = Sampler(child.pid, interval)
            sampler.start()
            out, _ = child.communicate()
            sampler.stop()
        finally:
            server.kill()
            server.wait()
            database.drop_database(database.resolve_database_url(settings), name)
    if child.returncode:
        raise RuntimeError(f"ingest of {feeds} feeds failed (exit {child.returncode})")
    run = json.loads(out.strip().splitlines()[-1])
    main_kb = max(sampler.main_kb, run["vmhwm_kb_at_exit"])
    t = run["totals"]
    return {
        "corpus": origin, "feeds": feeds, "bytes": corpus_bytes,
        "entries": t["entries"], "new": t["new"], "duplicates": t["duplicates"],
        "quarantined": t["quarantined"], "failed_feeds": t["failed"],
        "seconds": run["seconds"], "entries_per_second": round(t["entries"] / run["seconds"], 1),
        "stage_seconds": run["stage_seconds"],
        "peak_rss_main_mb": round(main_kb / _MB, 1),
        "peak_rss_worker_mb": round(max(sampler.worker_kb.values(), default=0) / _MB, 1),
        # each child in the order started: the shard workers, then the load's validation child
        "peak_rss_each_child_mb": [round(kb / _MB, 1) for _, kb in sorted(sampler.worker_kb.items())],
        "peak_rss_all_processes_mb": round(sampler.total_kb / _MB, 1),
        "workers_seen": len(sampler.worker_kb), "workers": run["workers"],
        "samples": sampler.samples, "sample_interval_s": interval,
    }


def run_isolated(feeds: int, source: str, timeout: float = 7200) -> dict[str, Any]:
    """`measure` in a fresh interpreter (as `make bench` calls it: each size its own process)."""
    from pipeline.config import PROJECT_ROOT

    out = subprocess.run([sys.executable, "-m", "bench.scale", "--feeds", str(feeds), "--source", source],
                         capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"bench.scale --feeds {feeds} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(small: int = 1_000, large: int = 10_000, source: str = "bench-feeds") -> dict[str, Any]:
    """The issue's figure, each size in its own fresh process, measured the same way: peak
    memory at `small` feeds of the bench corpus (news-feeds, as `make bench` runs it; target
    <= 500 MB), at `small` and at `large` feeds of `source`, and the ratios large / small
    (target <= 1.2) against both smalls (the same-source one compares like with like)."""
    runs = {f"feeds_{small}_news_feeds": run_isolated(small, "news-feeds"),
            f"feeds_{small}_{source.replace('-', '_')}": run_isolated(small, source),
            f"feeds_{large}_{source.replace('-', '_')}": run_isolated(large, source)}
    base, same, big = runs.values()
    out: dict[str, Any] = {}
    for name, ref in (("vs_news_feeds", base), ("vs_same_source", same)):
        for key in ("peak_rss_main_mb", "peak_rss_worker_mb", "peak_rss_all_processes_mb"):
            if ref.get(key):
                out[f"ratio_{key.removeprefix('peak_rss_').removesuffix('_mb')}_{name}"] = round(big[key] / ref[key], 3)
    return {**out, **runs}


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--ingest-child":
        ingest_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--source", default="bench-feeds", choices=("bench-feeds", "news-feeds"))
    parser.add_argument("--interval", type=float, default=0.05, help="sampling interval (s)")
    args = parser.parse_args()
    from pipeline.config import PROJECT_ROOT

    result = measure(args.feeds, args.source, args.interval)
    out = PROJECT_ROOT / ".data" / "bench" / f"scale_{args.source}_{args.feeds}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
