"""`make bench`: end-to-end ingest throughput on loopback feeds, against a fresh database.

Prints entries per second end to end, where the time went by stage, peak memory,
feedparser's parse-only rate on the same bytes (so the pipeline's overhead reads as
a ratio), the parse-only rates of both parse paths (the lxml fast path and feedparser,
bench.parse_rate) with the share of bodies each took, the same end-to-end run with the
other `FEED_PARSER` setting (fast path on and off, same bytes), and the cost of a second run in
which nothing changed (all 304). With
`../shared` present it also runs the labelled near-duplicate evaluation
(bench.syndication: pair precision and recall) and measures the dedup cost per article
against 10,000 and 1,000,000 stored articles (bench.dedup_cost). Last, it times the normalize
stage on a 10 MB entry of each kind of hostile markup (bench.adversarial). The issue's
ratios: the peer (bench.peer: lemon24/reader 3.26 on the same feeds and server), the DAG on
a running Airflow (bench.dag_pace) over the CLI, and peak memory at 1,000 and 10,000 feeds,
each in a process of its own (bench.scale; the 10,000-feed run takes about 20 minutes here).
Last, a simulated news day through the scheduler (bench.news_day, its own process): 5,000
feeds at 1/36 of Media Cloud's volume over 24 simulated hours (capture, fetches against fixed
15-minute polling, wall time per simulated hour, peak memory, database growth) and one
full-scale cycle of 180,000 feeds (`--news-day 0` skips it). And each analytics view's
typical query at 1,000,000 generated articles (bench.analytics_scale, its database filled
once and reused; `--analytics-scale 0` skips it).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import adversarial, analytics_scale, dag_pace, dedup_cost, news_day, parse_rate, scale, syndication
from bench.corpus import build_corpus
from pipeline import database, fetch, local_runner, tasks
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.records import FeedSource, FeedState, FetchOutcome

SHARED = PROJECT_ROOT.parent / "shared"


def fresh_database(settings: Settings, name: str) -> str:
    url = database.sibling_url(database.resolve_database_url(settings), name)
    with database.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    database.migrate(url)
    return url


def serve(directory: Path, delay: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.serve", str(directory), "--delay", str(delay)],
                            stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def compare_parser(directory: Path, settings: Settings, delay: float) -> dict[str, object]:
    """The same end-to-end run, same bytes, into a fresh database, with the other parser
    setting (the fast path off when it was on, and the other way round)."""
    other = settings.replace(feed_parser="feedparser" if settings.feed_parser == "auto" else "auto")
    url = fresh_database(other, "news_bench_other_parser")
    count = len(list(directory.glob("feed*.xml")))
    server, port = serve(directory, delay)
    try:
        sources = [FeedSource(f"http://127.0.0.1:{port}/feed{i:05d}.xml") for i in range(count)]
        started = time.perf_counter()
        summary = local_runner.ingest(url, other, sources, f"bench-{uuid.uuid4().hex[:8]}", validation_child=True)
        wall = time.perf_counter() - started
    finally:
        server.kill()
    t = summary["totals"]
    return {"feed_parser_setting": other.feed_parser, "seconds": round(wall, 2),
            "entries_per_second": round(t["entries"] / wall, 1), "new": t["new"],
            "duplicates": t["duplicates"], "quarantined": t["quarantined"],
            "stage_seconds": summary["stage_seconds"]}


def fetch_with_latency(directory: Path, count: int, settings: Settings, latency: float) -> float:
    """Seconds to fetch `count` feeds from a server that answers each request after `latency`."""
    server, port = serve(directory, latency)
    try:
        feeds = [FeedState(i, f"http://127.0.0.1:{port}/feed{i:05d}.xml") for i in range(count)]
        started = time.perf_counter()
        results = fetch.fetch_all(feeds, settings, tasks.utcnow())
        elapsed = time.perf_counter() - started
    finally:
        server.kill()
    failed = [r for r in results if r.outcome is not FetchOutcome.OK]
    assert not failed, failed[:3]
    return elapsed


def run_peer(sources: list[FeedSource], workers: int) -> dict[str, object]:
    """lemon24/reader on the same feeds from the same server, in its own process."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as urls:
        urls.write("\n".join(s.url for s in sources))
        urls.flush()
        out = subprocess.run([sys.executable, "-m", "bench.peer", urls.name, str(workers)],
                             capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=1800, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_dag(settings: Settings, sources: list[FeedSource]) -> dict[str, object]:
    """The same feeds through the DAG on a running Airflow (bench.dag_pace), into a fresh database."""
    url = fresh_database(settings, "news_bench_dag")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as urls:
        urls.write("\n".join(s.url for s in sources))
        urls.flush()
        return dag_pace.measure(Path(urls.name), url, settings_env={
            "FETCH_ALLOWED_NETWORKS": "127.0.0.1/32", "FETCH_PER_HOST": str(settings.per_host_concurrency),
            "QUARANTINE_FAIL_RATIO": str(settings.quarantine_fail_ratio)})


def parse_only(bodies: list[bytes]) -> tuple[int, float]:
    import feedparser

    started = time.perf_counter()
    entries = sum(len(feedparser.parse(io.BytesIO(body)).entries) for body in bodies)
    return entries, time.perf_counter() - started


def analytics_views(settings: Settings) -> dict[str, object]:
    """bench.analytics_scale with its defaults: each view's typical query, best of 3, in ms."""
    a = analytics_scale
    url, filled = a.prepare(settings, a.ARTICLES, a.FEEDS, a.DAYS, a.FETCH_DAYS, refill=False)
    timings = a.measure(url, repeats=3)
    return {**{name: t.ms for name, t in timings.items()}, "fill": filled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.0, help="server latency per response (s)")
    parser.add_argument("--latency", type=float, default=0.05,
                        help="server latency for the separate fetch-only measurement (s)")
    parser.add_argument("--eval-pairs", type=int, default=300,
                        help="same-topic story pairs in the near-duplicate evaluation (0: skip)")
    parser.add_argument("--cost-sizes", default="10000,1000000",
                        help="stored-article counts for the dedup cost measurement ('': skip)")
    parser.add_argument("--compare-parsers", type=int, default=1,
                        help="also run end to end with the other FEED_PARSER setting (0: skip)")
    parser.add_argument("--adversarial-mb", type=float, default=10.0,
                        help="size of each hostile entry timed by bench.adversarial (0: skip)")
    parser.add_argument("--peer-workers", type=int, default=8,
                        help="threads of the peer (lemon24/reader) on the same feeds (0: skip)")
    parser.add_argument("--dag-pace", type=int, default=1,
                        help="also run the corpus through the DAG on a running Airflow (0: skip)")
    parser.add_argument("--scale-feeds", default="1000,10000",
                        help="peak memory of a CLI ingest at these two feed counts, each in its own "
                             "process (bench.scale; the larger from bench-feeds) ('': skip)")
    parser.add_argument("--news-day", type=int, default=1,
                        help="a simulated news day through the scheduler, and one full-scale cycle "
                             "(bench.news_day, its own process) (0: skip)")
    parser.add_argument("--news-day-feeds", type=int, default=5_000, help="feeds of the simulated day")
    parser.add_argument("--news-day-hours", type=int, default=24, help="simulated hours")
    parser.add_argument("--full-scale-feeds", type=int, default=180_000,
                        help="feeds of the full-scale cycle (0: skip it)")
    parser.add_argument("--analytics-scale", type=int, default=1,
                        help="each analytics view's typical query at 1,000,000 generated articles "
                             "(bench.analytics_scale; its filled database is reused) (0: skip)")
    args = parser.parse_args()

    # Every bench feed is on one loopback host: open loopback, lift the per-host limit to the
    # global one (a real feed list spreads over many hosts).
    base = Settings.from_env(quarantine_fail_ratio=1.0).allowing("127.0.0.1/32")
    settings = base.replace(per_host_concurrency=base.fetch_concurrency)
    bodies, origin = build_corpus(args.feeds, SHARED if SHARED.is_dir() else None)
    url = fresh_database(settings, "news_bench")
    with tempfile.TemporaryDirectory() as tmp:
        for i, body in enumerate(bodies):
            (Path(tmp) / f"feed{i:05d}.xml").write_bytes(body)
        server, port = serve(Path(tmp), args.delay)
        try:
            sources = [FeedSource(f"http://127.0.0.1:{port}/feed{i:05d}.xml") for i in range(len(bodies))]
            started = time.perf_counter()
            # as the CLI runs it: GX in a child process the load forks (and ends)
            first = local_runner.ingest(url, settings, sources, f"bench-{uuid.uuid4().hex[:8]}",
                                        validation_child=True)
            wall = time.perf_counter() - started
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            worker_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            started = time.perf_counter()
            second = local_runner.ingest(url, settings, sources, f"bench-{uuid.uuid4().hex[:8]}", force=True,
                                         validation_child=True)
            unchanged_wall = time.perf_counter() - started
            peer = run_peer(sources, args.peer_workers) if args.peer_workers else None
            dag = run_dag(settings, sources) if args.dag_pace else None
        finally:
            server.kill()
        other = compare_parser(Path(tmp), settings, args.delay) if args.compare_parsers else None
        latency_seconds = fetch_with_latency(Path(tmp), len(bodies), settings, args.latency)
    parsed_entries, parse_seconds = parse_only(bodies)

    t = first["totals"]
    rate = t["entries"] / wall
    feedparser_rate = parsed_entries / parse_seconds
    results = {
        "corpus": origin,
        "feeds": t["feeds"], "bytes": sum(map(len, bodies)),
        "entries": t["entries"], "new": t["new"], "duplicates": t["duplicates"],
        "quarantined": t["quarantined"], "failed_feeds": t["failed"],
        "seconds": round(wall, 2), "entries_per_second": round(rate, 1),
        "stage_seconds": first["stage_seconds"],
        "validate_share_of_run": round(first["stage_seconds"].get("validate", 0) / wall, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "peak_rss_parse_worker_mb": round(worker_peak_mb, 1),
        "feedparser_parse_only_entries_per_second": round(feedparser_rate, 1),
        "pipeline_vs_parse_only": round(rate / feedparser_rate, 3),
        "warm_run_all_not_modified_seconds": round(unchanged_wall, 2),
        "unchanged_run_not_modified": second["totals"]["not_modified"],
        "server_delay_s": args.delay,
        f"fetch_only_{len(bodies)}_feeds_at_{int(args.latency * 1000)}ms_latency_seconds": round(latency_seconds, 2),
        "fetch_concurrency": settings.fetch_concurrency,
        "feed_parser_setting": settings.feed_parser,
        "parse_paths": parse_rate.measure(bodies),
    }
    if peer is not None:
        results["peer"] = peer
        results["speed_vs_peer"] = round(float(peer["seconds"]) / wall, 2)  # >1: faster than the peer
    if dag is not None:
        results["dag_on_running_airflow"] = dag
        results["dag_over_cli_wall"] = round(float(dag["seconds"]) / wall, 2)  # target <= 1.5
    if other is not None:
        results["end_to_end_other_parser"] = other
    if SHARED.is_dir() and args.eval_pairs:
        pairs = syndication.same_topic_pairs(syndication.pool(SHARED), args.eval_pairs)
        results["neardup_evaluation"] = syndication.evaluate(
            fresh_database(settings, "news_bench_eval"), settings, pairs, variants_per_story=4)
        results["news_feeds_ingested_together"] = syndication.news_feeds_together(
            fresh_database(settings, "news_bench_news"), settings, SHARED)
    if SHARED.is_dir() and args.cost_sizes:
        sizes = tuple(int(n) for n in args.cost_sizes.split(","))
        results["dedup_cost_per_article"] = dedup_cost.measure(
            fresh_database(settings, "news_bench_cost"), settings, SHARED, sizes)
    if SHARED.is_dir() and args.scale_feeds:
        small, large = (int(n) for n in args.scale_feeds.split(","))
        results["peak_memory_at_scale"] = scale.table(small, large)
    if args.news_day:
        results["news_day"] = news_day.run_isolated(args.news_day_feeds, args.news_day_hours,
                                                     args.full_scale_feeds)
    if args.analytics_scale:
        results["analytics_views_at_1m_articles_ms"] = analytics_views(settings)
    hostile = adversarial.table(int(args.adversarial_mb * 2**20)) if args.adversarial_mb else []
    if args.adversarial_mb:
        results["tiny_entries_10mb_parse"] = [adversarial.tiny_entries(p) for p in ("auto", "feedparser")]
    out = PROJECT_ROOT / ".data" / "bench" / "last.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**results, "adversarial_normalize": hostile}, indent=2))
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if hostile:
        adversarial.print_table(hostile)
    print(f"(saved to {out})")
    assert t["entries"] == t["new"] + t["updated"] + t["duplicates"] + t["quarantined"]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
