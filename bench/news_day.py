"""A simulated news day through the scheduler: `python -m bench.news_day [--feeds N --hours H]`.

5,000 feeds at 1/36 of Media Cloud's volume (bench.news_day_generator: seeded, heavy-tailed
rates, Poisson stories), served on loopback by bench.news_day_server, whose clock is the
simulated time. Into a scratch database: a cold start at T0 (a normal run: everything is
due), then T0 to T0 + `hours` in 3-minute ticks, a lane "all" run at every 15-minute
boundary and a lane "hot" run at the other ticks, all through
`pipeline.local_runner.ingest` with the simulated clock and without `force`: the polling
policy alone decides what is fetched. It reports

* capture: of the stories published in (T0, T0 + hours], those LOST (not in `articles` and
  fallen out of their feed's 20-item window: never fetchable again) and PENDING (not in
  `articles` yet, still served); capture = 1 - lost / published (goal >= 99.5 %);
* fetches (fetch_log rows of the day's runs) against fixed 15-minute polling of every feed
  (goal: at most half), and how many were 304;
* wall time per simulated hour against the 100 s a 1/36-scale hour may take (goal <= 20 s);
* peak memory (VmRSS/VmHWM from /proc, bench.scale's sampler) and database growth a day.

And one full-scale cycle (`--full-scale-feeds`, 180,000): the feeds registered in bulk with
the polling state of a steady state (rate, interval from the policy, last fetch at a random
phase, the ETag of what was served then), so that about one hour's worth are due at T; one
lane "all" run at T fetches and loads them (goal: within 12 minutes). Its articles table
starts empty, so every entry of a changed feed loads as new: the load's worst case.

Every feed is on one loopback host, so the per-host limit (FETCH_PER_HOST) is lifted to the
global one (FETCH_CONCURRENCY), as bench.run does. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import numpy as np

from bench import news_day_generator as gen

TICK_S = 180  # the hot lane's period
MAIN_EVERY = 5  # ticks between lane "all" runs: 15 minutes
HOUR_BUDGET_S = 100.0  # a 1/36-scale simulated hour keeps up with real time within this
HOUR_GOAL_S = 20.0
CAPTURE_GOAL = 0.995
FETCH_GOAL = 0.5  # of fixed 15-minute polling
FULL_GOAL_S = 12 * 60


def settings_for_bench(data_dir: Path) -> Any:
    """bench.run's settings (loopback open, per-host limit lifted to the global one), with a
    Great Expectations project of this process's own."""
    from pipeline.config import Settings

    base = Settings.from_env(quarantine_fail_ratio=1.0).allowing("127.0.0.1/32")
    return base.replace(per_host_concurrency=base.fetch_concurrency, data_dir=data_dir)


class Publisher:
    """The news day's server process (bench.news_day_server) and its clock."""

    def __init__(self, day_file: Path) -> None:
        from pipeline.config import PROJECT_ROOT

        self.proc = subprocess.Popen([sys.executable, "-m", "bench.news_day_server", str(day_file)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
        self.port = int(self._read())

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the news day server exited")
        return line.strip()

    def _ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def set_clock(self, epoch: float) -> None:
        assert self._ask(str(epoch)) == "ok"

    def stats(self) -> dict[str, int]:
        return json.loads(self._ask("stats"))

    def url(self, feed: int) -> str:
        return f"http://127.0.0.1:{self.port}/feed/{feed}.xml"

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


KEEP_DB = os.environ.get("NEWS_DAY_KEEP_DB") == "1"  # keep the scratch databases to look into


@contextmanager
def scratch_database(settings: Any, name: str) -> Iterator[str]:
    """A fresh, migrated database `name` on the configured server, dropped afterwards
    (unless NEWS_DAY_KEEP_DB=1)."""
    from bench.run import fresh_database
    from bench.scale import _drop_database
    from pipeline import database

    url = fresh_database(settings, name)
    try:
        yield url
    finally:
        if KEEP_DB:
            print(f"kept {url}", file=sys.stderr)
        else:
            _drop_database(database.resolve_database_url(settings), name)


def _scalar(url: str, statement: str, params: tuple = ()) -> Any:
    return _rows(url, statement, params)[0][0]


def _rows(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    from pipeline import database

    with database.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params or None)
        return cur.fetchall()


def _start(hours: float) -> int:
    """T0: a whole hour, far enough back that the simulated day ends before the real now
    (nothing simulated is dated in the real future)."""
    return int(time.time() // 3600 * 3600 - (hours + 2) * 3600)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class SchemaChanged(Exception):
    """A migration was added to the working tree while the bench ran (others change the
    pipeline meanwhile): this process's code no longer matches the schema on disk."""


def _ingest(url: str, settings: Any, sources: list, run_id: str, epoch: float, lane: str) -> tuple[float, dict]:
    """One run at the simulated `epoch`: (wall seconds, summary)."""
    from pipeline import local_runner
    from pipeline.errors import SchemaOutOfDate

    now = _at(epoch)
    started = time.perf_counter()
    try:
        summary = local_runner.ingest(url, settings, sources, run_id, clock=lambda: now, lane=lane)
    except SchemaOutOfDate as exc:  # raised by the run's schema check, before it writes anything
        raise SchemaChanged(str(exc)) from exc
    return time.perf_counter() - started, summary


# --- the day --------------------------------------------------------------------------------


def run_day(feeds: int, hours: int, seed: int, settings: Any) -> dict[str, Any]:
    from bench.scale import Sampler

    t0 = _start(hours)
    day = gen.generate(feeds, seed, t0, hours)
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp, scratch_database(settings, f"newsday_{os.getpid()}") as url:
        day_file = Path(tmp) / "day.npz"
        gen.save(day, day_file)
        publisher = Publisher(day_file)
        sampler = Sampler(os.getpid(), 0.2)
        sampler.start()
        try:
            sources = [_source(publisher.url(f)) for f in range(feeds)]
            publisher.set_clock(t0)
            cold_wall, cold = _ingest(url, settings, sources, f"newsday-{tag}-cold", t0, "all")
            size_cold = _scalar(url, "SELECT pg_database_size(current_database())")
            runs: list[dict] = []
            stopped = None
            for tick in range(1, hours * 3600 // TICK_S + 1):
                epoch = t0 + tick * TICK_S
                lane = "all" if tick % MAIN_EVERY == 0 else "hot"
                publisher.set_clock(epoch)
                try:
                    wall, summary = _ingest(url, settings, sources, f"newsday-{tag}-d{tick:04d}", epoch, lane)
                except SchemaChanged as exc:  # report the hours done rather than nothing
                    stopped = f"stopped before simulated minute {tick * TICK_S // 60}: {exc}"
                    print(stopped, file=sys.stderr, flush=True)
                    break
                runs.append(_run_row(tick, lane, wall, summary))
                if tick % (3600 // TICK_S) == 0:
                    _progress(runs, tick)
            done_s = len(runs) * TICK_S
            size_end = _scalar(url, "SELECT pg_database_size(current_database())")
            served = publisher.stats()
        finally:
            sampler.stop()
            server_kb = sampler.worker_kb.pop(publisher.proc.pid, 0)
            publisher.close()
        result = {"feeds": feeds, "hours": hours, "seed": seed, "t0": _at(t0).isoformat(),
                  "simulated_hours_done": round(done_s / 3600, 2), "stopped": stopped,
                  "stories_per_day_expected": round(float(day.rates.sum()) * 24),
                  "busiest_per_hour": [round(float(r), 1) for r in np.sort(day.rates)[::-1][:3]],
                  "cold_start": {"seconds": round(cold_wall, 2), **_totals(cold)},
                  **capture(url, day, t0, t0 + done_s, f"newsday-{tag}-"),
                  **fetches(url, feeds, done_s / 3600, f"newsday-{tag}-d", served),
                  **pace(runs),
                  "peak_rss_main_mb": round(sampler.main_kb / 1024, 1),
                  "peak_rss_worker_mb": round(max(sampler.worker_kb.values(), default=0) / 1024, 1),
                  "peak_rss_server_mb": round(server_kb / 1024, 1),
                  "peak_rss_all_processes_mb": round(sampler.total_kb / 1024, 1),
                  "db_mb_after_cold_start": round(size_cold / 2**20, 1),
                  "db_mb_after_day": round(size_end / 2**20, 1),
                  "db_growth_mb_per_simulated_day": round((size_end - size_cold) / 2**20 * 86_400 / max(done_s, 1), 1)}
    return result


def _source(url: str) -> Any:
    from pipeline.records import FeedSource

    return FeedSource(url)


def _totals(summary: dict) -> dict[str, Any]:
    t = summary["totals"]
    return {k: t.get(k, 0) for k in ("feeds", "fetched", "not_modified", "failed", "entries", "new",
                                     "duplicates", "quarantined", "deferred")}


def _run_row(tick: int, lane: str, wall: float, summary: dict) -> dict[str, Any]:
    return {"tick": tick, "lane": lane, "seconds": wall, "status": summary.get("status"),
            "stage_seconds": summary.get("stage_seconds", {}), **_totals(summary)}


def _progress(runs: list[dict], tick: int) -> None:
    hour = runs[-(3600 // TICK_S):]
    print(f"  simulated hour {tick * TICK_S // 3600:>2}: {sum(r['seconds'] for r in hour):6.1f} s wall, "
          f"{sum(r['feeds'] for r in hour)} feeds planned, {sum(r['new'] for r in hour)} new",
          file=sys.stderr, flush=True)


def capture(url: str, day: gen.NewsDay, t0: int, t_end: int, prefix: str) -> dict[str, Any]:
    """Published, loaded, pending and lost stories of (t0, t_end]; the feeds that lost most."""
    loaded = np.zeros(len(day.times), dtype=bool)
    for (canonical,) in _rows(url, "SELECT canonical_url FROM articles"):
        found = gen.parse_link(canonical)
        if found and found[0] < day.feeds:
            loaded[day.offsets[found[0]] + found[1]] = True
    owner = np.repeat(np.arange(day.feeds), np.diff(day.offsets))
    number = np.arange(len(day.times)) - day.offsets[owner]
    published = (day.times > t0) & (day.times <= t_end)
    served = number >= (day.counts_at(t_end) - gen.WINDOW)[owner]
    missing = published & ~loaded
    lost, pending = missing & ~served, missing & served
    n_pub, n_lost = int(published.sum()), int(lost.sum())
    per_feed = np.bincount(owner[lost], minlength=day.feeds)
    delay = [float(d) for (d,) in _rows(url, """SELECT extract(epoch FROM fetched_at - published_at) FROM articles
                                          WHERE published_at > %s AND published_at <= %s""", (_at(t0), _at(t_end)))]
    return {"published": n_pub, "loaded": int((published & loaded).sum()), "pending": int(pending.sum()),
            "lost": n_lost, "capture": round(1 - n_lost / n_pub, 5) if n_pub else None,
            "capture_vs_goal": round((1 - n_lost / n_pub) / CAPTURE_GOAL, 4) if n_pub else None,
            "feeds_that_lost": int((per_feed > 0).sum()),
            # publication to the fetch that loaded it, simulated minutes (the slow feeds' wait)
            "load_delay_min_p50_p90_max": [round(float(q) / 60, 1) for q in np.quantile(delay, [0.5, 0.9, 1.0])]
            if delay else None,
            "worst_feeds": _worst(url, day, per_feed, np.bincount(owner[published], minlength=day.feeds),
                                 prefix)}


def _worst(url: str, day: gen.NewsDay, lost: np.ndarray, published: np.ndarray, prefix: str) -> list[dict]:
    """The feeds that lost most stories: their rate, what the policy made of it, and the
    gaps between their fetches in which more than a window's worth was published."""
    worst = [int(f) for f in np.argsort(-lost, kind="stable")[:8] if lost[f] > 0]
    out = []
    for f in worst:
        state = _rows(url, "SELECT id, poll_interval_s, hot, publish_rate FROM feeds WHERE url LIKE %s",
                      (f"%/feed/{f}.xml",))
        feed_id, interval, hot, estimate = state[0] if state else (None,) * 4
        seen = [at.timestamp() for (at,) in _rows(
            url, "SELECT fetched_at FROM fetch_log WHERE feed_id = %s AND run_id LIKE %s ORDER BY fetched_at",
            (feed_id, prefix + "%"))]
        times = day.times[day.offsets[f]:day.offsets[f + 1]]
        between = np.diff(np.searchsorted(times, seen, side="right")) if len(seen) > 1 else np.array([0])
        gaps = np.diff(seen) if len(seen) > 1 else np.array([0.0])
        at = int(np.argmax(between))
        out.append({"feed": f, "rate_per_hour": round(float(day.rates[f]), 2), "published": int(published[f]),
                    "lost": int(lost[f]), "estimated_rate": round(estimate, 2) if estimate else estimate,
                    "poll_interval_s": interval, "hot": hot, "fetches": len(seen),
                    "mean_fetch_gap_s": round(float(gaps.mean())), "max_fetch_gap_s": round(float(gaps.max())),
                    "gaps_over_window": int((between > gen.WINDOW).sum()),
                    "fullest_gap": {"published": int(between[at]), "seconds": round(float(gaps[at])),
                                    "after_min": round((seen[at] - day.start) / 60, 1) if seen else None}})
    return out


def fetches(url: str, feeds: int, hours: float, prefix: str, served: dict[str, int]) -> dict[str, Any]:
    made, not_modified, failed = _rows(
        url, """SELECT count(*), count(*) FILTER (WHERE outcome = 'not_modified'),
                       count(*) FILTER (WHERE outcome = 'error')
                FROM fetch_log WHERE run_id LIKE %s""", (prefix + "%",))[0]
    fixed = round(feeds * 4 * hours)
    return {"fetches": made, "fetches_304": not_modified, "fetch_errors": failed,
            "fixed_15min_fetches": fixed, "fetch_ratio": round(made / fixed, 4),
            "fetch_ratio_vs_goal": round(made / fixed / FETCH_GOAL, 4), "server_responses": served}


def pace(runs: list[dict]) -> dict[str, Any]:
    ticks = 3600 // TICK_S  # whole simulated hours only
    per_hour = [sum(r["seconds"] for r in runs[h * ticks:(h + 1) * ticks]) for h in range(len(runs) // ticks)]
    by_lane = {lane: [r["seconds"] for r in runs if r["lane"] == lane] for lane in ("all", "hot")}
    stages: dict[str, float] = {}
    for r in runs:
        for stage, s in r["stage_seconds"].items():
            stages[stage] = stages.get(stage, 0.0) + s
    worst = max(per_hour, default=0.0)
    empty = [r["seconds"] for r in runs if r["feeds"] == 0]
    return {"runs": len(runs), "runs_not_ok": sum(r["status"] != "ok" for r in runs),
            "deferred_total": sum(r["deferred"] for r in runs),
            "hour_wall_s_max": round(worst, 2),
            "hour_wall_s_median": round(statistics.median(per_hour), 2) if per_hour else None,
            "hour_wall_s": [round(s, 1) for s in per_hour],
            "hour_headroom_vs_100s_budget": round(HOUR_BUDGET_S / worst, 2) if worst else None,
            "hour_max_vs_20s_goal": round(worst / HOUR_GOAL_S, 3),
            "run_wall_s_median": {lane: round(statistics.median(s), 3) if s else None for lane, s in by_lane.items()},
            "run_wall_s_max": {lane: round(max(s), 3) if s else None for lane, s in by_lane.items()},
            "stage_seconds_day": {stage: round(s, 1) for stage, s in stages.items()},
            # a run that plans no feed: the fixed cost of a run (prepare, report, an empty load)
            "empty_runs": len(empty), "empty_run_wall_s_median": round(statistics.median(empty), 3) if empty else None}


# --- one full-scale cycle -------------------------------------------------------------------


def _intervals(rates: np.ndarray, settings: Any) -> tuple[np.ndarray, float]:
    """Each rate's polling interval (s) from the policy, and the hot threshold (s)."""
    from pipeline import fetch, polling_policy

    rules = fetch.polling_rules(settings)
    seconds = {r: polling_policy.interval_for(r, gen.WINDOW, rules.bounds, rules.fill).total_seconds()
               for r in np.unique(rates).tolist()}
    return np.array([seconds[r] for r in rates.tolist()]), rules.hot_interval.total_seconds()


def full_scale(feeds: int, seed: int, settings: Any) -> dict[str, Any]:
    """180,000 feeds in a steady state, about an hour's worth due at T: one lane "all" run."""
    from psycopg2.extras import execute_values

    from pipeline import database

    t = _start(1)
    day = gen.generate(feeds, seed, t, 1)
    rng = np.random.default_rng(seed + 1)
    interval, hot_s = _intervals(day.rates, settings)
    # due at T - 1h + u * interval: every feed whose next check fell in the last hour is due
    next_check = t - 3600 + rng.random(feeds) * interval
    last = next_check - interval
    rows = []
    for f in range(feeds):
        first, upto = gen.window(day, f, last[f])
        newest = int(day.times[day.offsets[f] + upto - 1]) if upto else day.start
        fetched = _at(last[f])
        rows.append((f, float(day.rates[f]), gen.WINDOW, int(interval[f]), bool(interval[f] < hot_s), fetched,
                     fetched, fetched, _at(next_check[f]), gen.etag_of(f, first, upto),
                     formatdate(newest, usegmt=True)))
    with tempfile.TemporaryDirectory() as tmp, scratch_database(settings, f"newsday_full_{os.getpid()}") as url:
        day_file = Path(tmp) / "day.npz"
        gen.save(day, day_file)
        publisher = Publisher(day_file)
        try:
            publisher.set_clock(t)
            registered = time.perf_counter()
            with database.connect(url) as conn, conn.cursor() as cur:
                execute_values(cur, """INSERT INTO feeds (url, publish_rate, window_size, poll_interval_s, hot,
                                          last_fetched_at, last_success_at, loaded_fetched_at, next_check_at,
                                          etag, last_modified) VALUES %s""",
                               [(publisher.url(r[0]), *r[1:]) for r in rows], page_size=5000)
            registered = time.perf_counter() - registered
            due = _scalar(url, "SELECT count(*) FROM feeds WHERE next_check_at <= %s", (_at(t),))
            due_hot = _scalar(url, "SELECT count(*) FROM feeds WHERE hot AND next_check_at <= %s", (_at(t),))
            sources = [_source(publisher.url(f)) for f in range(feeds)]
            wall, summary = _ingest(url, settings, sources, f"newsday-full-{uuid.uuid4().hex[:6]}", t, "all")
            served = publisher.stats()
        finally:
            publisher.close()
        articles = _scalar(url, "SELECT count(*) FROM articles")
    return {**_totals(summary), "feeds": feeds, "planned": summary["totals"]["feeds"],
            "stories_per_day_expected": round(float(day.rates.sum()) * 24),
            "register_seconds": round(registered, 1), "due": due, "due_hot": due_hot,
            "seconds": round(wall, 1), "vs_12min_goal": round(wall / FULL_GOAL_S, 3),
            "status": summary.get("status"), "articles_after": articles,
            "stage_seconds": summary.get("stage_seconds"), "server_responses": served}


# --- output ---------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    d = result.get("day")
    lines = []
    if d:
        c = d["cold_start"]
        if d["stopped"]:
            lines.append(f"NOTE: the day {d['stopped']}")
        lines += [
            f"news day: {d['feeds']} feeds, {d['simulated_hours_done']} of {d['hours']} simulated h, seed {d['seed']}, "
            f"~{d['stories_per_day_expected']} stories/day expected, busiest {d['busiest_per_hour']} /h",
            f"  capture        {d['capture']:.4%}  (goal >= 99.5 %)  published {d['published']}, loaded "
            f"{d['loaded']}, pending {d['pending']}, lost {d['lost']} in {d['feeds_that_lost']} feeds; "
            f"delay to load p50/p90/max {d['load_delay_min_p50_p90_max']} min",
            f"  fetches        {d['fetches']} ({d['fetches_304']} x 304, {d['fetch_errors']} errors) vs "
            f"{d['fixed_15min_fetches']} fixed 15-min: {d['fetch_ratio']:.1%} (goal <= 50 %)",
            f"  wall / sim. h  max {d['hour_wall_s_max']} s, median {d['hour_wall_s_median']} s (goal <= 20 s; "
            f"budget 100 s: headroom x{d['hour_headroom_vs_100s_budget']}); runs {d['runs']}, "
            f"median all {d['run_wall_s_median']['all']} s / hot {d['run_wall_s_median']['hot']} s, "
            f"{d['empty_runs']} runs with no feed due: median {d['empty_run_wall_s_median']} s",
            f"  cold start     {c['seconds']} s, {c['feeds']} feeds, {c['new']} articles",
            f"  peak memory    main {d['peak_rss_main_mb']} MB, worker {d['peak_rss_worker_mb']} MB, "
            f"all processes {d['peak_rss_all_processes_mb']} MB (server {d['peak_rss_server_mb']} MB)",
            f"  database       {d['db_mb_after_cold_start']} MB after cold start, +"
            f"{d['db_growth_mb_per_simulated_day']} MB per simulated day",
        ]
        for w in d["worst_feeds"]:
            lines.append(f"    lost {w['lost']}/{w['published']} feed {w['feed']} at {w['rate_per_hour']}/h: "
                         f"estimated {w['estimated_rate']}/h, interval {w['poll_interval_s']} s, hot {w['hot']}, "
                         f"{w['fetches']} fetches, mean gap {w['mean_fetch_gap_s']} s, max {w['max_fetch_gap_s']} s; "
                         f"{w['gaps_over_window']} gaps over 20 stories, fullest {w['fullest_gap']}")
    f = result.get("full_scale")
    if f and f.get("error"):
        lines.append(f"full-scale cycle: {f['feeds']} feeds: not measured: {f['error']}")
    elif f:
        lines.append(f"full-scale cycle: {f['feeds']} feeds, {f['due']} due ({f['due_hot']} hot), "
                     f"{f['planned']} planned: "
                     f"{f['fetched']} fetched, {f['not_modified']} x 304, {f['failed']} failed, "
                     f"{f['entries']} entries, {f['new']} new in {f['seconds']} s (goal <= 720 s), "
                     f"status {f['status']}")
    lines.append(f"  (settings: FETCH_PER_HOST={result['settings']['per_host_concurrency']} = FETCH_CONCURRENCY: "
                 "every feed on one loopback host)")
    print("\n".join(lines), flush=True)


def measure(feeds: int, hours: int, full_feeds: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = settings_for_bench(Path(data_dir))
        result: dict[str, Any] = {"settings": {"per_host_concurrency": settings.per_host_concurrency,
                                               "fetch_concurrency": settings.fetch_concurrency,
                                               "workers": settings.workers}}
        if feeds and hours:
            result["day"] = run_day(feeds, hours, seed, settings)
        if full_feeds:
            try:
                result["full_scale"] = full_scale(full_feeds, seed, settings)
            except SchemaChanged as exc:
                result["full_scale"] = {"feeds": full_feeds, "error": str(exc)}
    return result


def run_isolated(feeds: int, hours: int, full_feeds: int, seed: int = 2024, timeout: float = 4 * 3600) -> dict:
    """`measure` in a fresh interpreter (its peak memory is its own); prints its table."""
    from pipeline.config import PROJECT_ROOT

    out = subprocess.run([sys.executable, "-m", "bench.news_day", "--feeds", str(feeds), "--hours", str(hours),
                          "--full-scale-feeds", str(full_feeds), "--seed", str(seed)],
                         stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"bench.news_day failed (exit {out.returncode})")
    *table, last = out.stdout.strip().splitlines()
    print("\n".join(table), flush=True)
    return json.loads(last)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=5_000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--full-scale-feeds", type=int, default=180_000, help="0: skip the full-scale cycle")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    from pipeline.config import PROJECT_ROOT

    result = measure(args.feeds, args.hours, args.full_scale_feeds, args.seed)
    out = PROJECT_ROOT / ".data" / "bench" / f"news_day_{args.feeds}_{args.hours}h_{args.full_scale_feeds}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print_table(result)
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
