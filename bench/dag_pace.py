"""The DAG's pace: the same corpus through `news_ingest` on a running Airflow, on
LocalExecutor and on the CeleryExecutor with two workers on this machine.

Each is `scripts/run_airflow.sh` (what `make run` and `make run EXECUTOR=celery WORKERS=2`
start) in a temporary AIRFLOW_HOME, its metadata in a fresh database on the news database's
server, every DAG created paused. Once Airflow is running (its API server answers and
reports the scheduler healthy), news_ingest is unpaused: its first scheduled run is the
cold ingest. Airflow's own start-up (the API server's first worker takes seconds to
serve the first task) and the other DAGs (the daily maintenance, the hot lane) are not
what is measured. The figure is that
run's wall time (start to end, as the scheduler records it: its `DagRun Finished` line),
with the run's fetches and entries per hour per worker (LocalExecutor: one worker, the
machine) and, on Celery, what each worker did (the shards whose task instance names it, and
their fetches and entries). The hot lane stays paused (it is not what is measured).
Celery needs a broker: CELERY_BROKER_URL (default redis://127.0.0.1:6379/0), on a queue of
its own; where none answers, its figure says why it was skipped. Every process started is
stopped, every database created dropped.

    python -m bench.dag_pace URL_FILE NEWS_DB_URL [--timeout S] [--celery-workers N]

prints one JSON line (`--celery-workers 0`: LocalExecutor only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from pipeline.config import PROJECT_ROOT

AIRFLOW = Path(sys.executable).with_name("airflow")
SCRIPT = PROJECT_ROOT / "scripts" / "run_airflow.sh"
KEPT_LOGS = PROJECT_ROOT / ".data" / "bench"
BROKER = os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _admin(news_url: str, statement: str) -> None:
    admin = psycopg2.connect(_with_database(news_url, "postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(statement)
    admin.close()


def _fresh_database(news_url: str, name: str) -> str:
    _admin(news_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(news_url, f'CREATE DATABASE "{name}"')
    return _with_database(news_url, name)


def _drop(news_url: str, url: str) -> None:
    _admin(news_url, f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')


def _query(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        rows = cur.fetchall()
    conn.close()
    return rows


_FINISHED = re.compile(r"DagRun Finished: dag_id=news_ingest, .*?run_id=(?P<run_id>[^,]+), .*?"
                       r"run_duration=(?P<seconds>[0-9.]+), state=(?P<state>\w+)")


def _finished_run(log_file: Path) -> dict[str, object] | None:
    """The first news_ingest run the scheduler reports finished (its own log line)."""
    match = _FINISHED.search(log_file.read_text(errors="replace"))
    if match is None:
        return None
    return {"run_id": match["run_id"], "seconds": round(float(match["seconds"]), 2), "state": match["state"]}


def broker_error(url: str = BROKER) -> str | None:
    """Why no Celery broker answers at `url`, or None."""
    import kombu

    try:
        with kombu.Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure means: no broker here
        return f"{type(exc).__name__}: {exc}"
    return None


def forget_queue(queue: str, url: str = BROKER) -> None:
    """A run's Celery queue, its binding and its messages left unacknowledged (a task
    stopped mid-way), off the shared Redis."""
    import redis

    client = redis.Redis.from_url(url)
    client.delete(queue, f"_kombu.binding.{queue}")
    for tag, message in client.hgetall("unacked").items():
        if json.loads(message)[2] == queue:  # [message, exchange, routing key]
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    client.close()


def _timeline(metadata: str, run: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Where the run's time went: for each task, its instances' first start and last end
    (seconds from the run's start) and their summed run time (of each instance's last try:
    a retried task's earlier tries are in task_instance_history, not counted here)."""
    rows = _query(metadata, """
        SELECT t.task_id, count(*),
               EXTRACT(EPOCH FROM min(t.start_date) - r.start_date),
               EXTRACT(EPOCH FROM max(t.end_date) - r.start_date),
               EXTRACT(EPOCH FROM sum(t.end_date - t.start_date))
        FROM task_instance t JOIN dag_run r ON r.dag_id = t.dag_id AND r.run_id = t.run_id
        WHERE t.dag_id = 'news_ingest' AND t.run_id = %s
        GROUP BY t.task_id, r.start_date ORDER BY 3""", (run["run_id"],))
    return {task: {"instances": n, "first_start_s": round(float(first or 0), 1),
                   "last_end_s": round(float(last or 0), 1), "busy_s": round(float(busy or 0), 1)}
            for task, n, first, last, busy in rows}


def _per_worker(metadata: str, news: str, run: dict[str, Any], workers: int) -> dict[str, Any]:
    """Fetches and entries per hour, per worker on average and for each worker (the hostname
    its shards' task instances record), over the run's wall time."""
    hours = float(run["seconds"]) / 3600
    shards = _query(metadata, "SELECT map_index, hostname, EXTRACT(EPOCH FROM end_date - start_date) "
                              "FROM task_instance WHERE dag_id = 'news_ingest' AND run_id = %s "
                              "AND task_id = 'ingest_shard'", (run["run_id"],))
    counts = {shard: (fetches, entries) for shard, fetches, entries in _query(
        news, "SELECT rf.shard, count(*), coalesce(sum(f.entries), 0) FROM fetch_log f JOIN run_feeds rf "
              "ON rf.run_id = f.run_id AND rf.feed_id = f.feed_id WHERE f.run_id = %s GROUP BY rf.shard",
        (run["run_id"],))}
    fetches = sum(int(f) for f, _ in counts.values())
    entries = sum(int(e) for _, e in counts.values())
    each: dict[str, dict[str, float]] = {}
    for shard, host, seconds in shards:
        mine = each.setdefault(host, {"shards": 0, "busy_seconds": 0.0, "fetches": 0, "entries": 0})
        f, e = counts.get(shard, (0, 0))
        mine["shards"] += 1
        mine["busy_seconds"] = round(mine["busy_seconds"] + float(seconds or 0), 1)
        mine["fetches"] += int(f)
        mine["entries"] += int(e)
    for mine in each.values():
        mine["fetches_per_hour"] = round(mine["fetches"] / hours)
        mine["entries_per_hour"] = round(mine["entries"] / hours)
    return {"workers": workers, "shards": len(shards), "fetches": fetches, "entries": entries,
            "fetches_per_hour_per_worker": round(fetches / hours / workers),
            "entries_per_hour_per_worker": round(entries / hours / workers),
            "each_worker": each}


def measure_executor(executor: str, url_file: Path, news_url: str, timeout_s: float = 1200,
                     settings_env: dict[str, str] | None = None, workers: int = 2) -> dict[str, object]:
    """One cold run of the corpus through the DAG on `executor` ("local" or "celery"), into
    `news_url` (migrated here if it is not)."""
    metadata = _fresh_database(news_url, f"airflow_bench_{executor}_{os.getpid()}")
    port = _free_port()
    slots = (settings_env or {}).get("FETCH_POOL_SLOTS", "4")
    queue = f"news_bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="airflow-bench-") as home:
        kept_log = KEPT_LOGS / f"dag_pace_{executor}.log"
        log_file = Path(home) / "airflow.log"
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW_PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata.replace("postgresql://", "postgresql+psycopg2://", 1),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "DATABASE_URL": news_url,
            "FEEDS": str(url_file),
            "GX_ANALYTICS_ENABLED": "false",
            "EXECUTOR": executor,
            "WORKERS": str(workers),
            "FETCH_POOL_SLOTS": slots,  # the same pool on both executors
            "CELERY_BROKER_URL": BROKER,
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,  # its own queue on a shared Redis
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # news_ingest is unpaused once running
            **(settings_env or {}),
        }
        with open(log_file, "w") as log:
            proc = subprocess.Popen([str(SCRIPT)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        started = time.monotonic()
        unpaused = False
        try:
            while time.monotonic() - started < timeout_s:
                if proc.poll() is not None:
                    raise RuntimeError(f"scripts/run_airflow.sh ({executor}) exited: see {kept_log}")
                unpaused = unpaused or _unpause_when_running(env, port)
                run = _finished_run(log_file)
                if run is not None:
                    time.sleep(2)  # the last task instance's end date is written
                    used = 1 if executor == "local" else workers
                    return {**run, "executor": "LocalExecutor" if executor == "local" else "CeleryExecutor",
                            "parallelism": 8, "feed_fetch_pool_slots": int(slots),
                            **_per_worker(metadata, news_url, run, used),
                            "tasks": _timeline(metadata, run)}
                time.sleep(2)
            raise TimeoutError(f"no news_ingest run finished within {timeout_s:.0f} s: see {kept_log}")
        finally:
            _stop(proc)
            if executor == "celery":
                forget_queue(queue)
            KEPT_LOGS.mkdir(parents=True, exist_ok=True)
            kept_log.write_bytes(log_file.read_bytes())  # kept for a look
            _drop(news_url, metadata)


def _unpause_when_running(env: dict[str, str], port: int) -> bool:
    """Unpause news_ingest once the API server answers with a healthy scheduler and the DAG
    is in the metadata database; False while not yet (the caller's loop bounds the wait)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as response:
            health = json.load(response)
    except (OSError, ValueError):
        return False
    if (health.get("scheduler") or {}).get("status") != "healthy":
        return False
    try:  # the task execution API's services, started on its first call
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/execution/health/ping", timeout=30) as response:
            response.read()
    except OSError:
        return False
    try:
        done = subprocess.run([str(AIRFLOW), "dags", "unpause", "news_ingest"], env=env, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0  # unpaused, or it was already


def _stop(proc: subprocess.Popen) -> None:
    """TERM to the script's process group (its trap stops what it started); KILL to what
    is left of the group after 60 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group is gone
    proc.wait(10)


def measure(url_file: Path, news_url: str, timeout_s: float = 1200,
            settings_env: dict[str, str] | None = None, celery_workers: int = 2) -> dict[str, object]:
    """The LocalExecutor run into `news_url`; under "celery", the same corpus on Celery with
    `celery_workers` workers into a fresh sibling database (0: not run)."""
    result = measure_executor("local", url_file, news_url, timeout_s, settings_env)
    if celery_workers:
        error = broker_error()
        if error:
            result["celery"] = {"skipped": f"no Celery broker answers at {BROKER} ({error})"}
        else:
            sibling = _fresh_database(news_url, urlsplit(news_url).path.lstrip("/") + "_celery")
            try:
                result["celery"] = measure_executor("celery", url_file, sibling, timeout_s, settings_env,
                                                    celery_workers)
            finally:
                _drop(news_url, sibling)
            result["celery_over_local_wall"] = round(
                float(result["celery"]["seconds"]) / float(result["seconds"]), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url_file", type=Path)
    parser.add_argument("news_url")
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--celery-workers", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure(args.url_file, args.news_url, args.timeout, celery_workers=args.celery_workers)))


if __name__ == "__main__":
    main()
