"""The DAG's pace: the same corpus through `news_ingest` on a running Airflow (LocalExecutor).

`airflow standalone` (scheduler, API server, DAG processor, triggerer) in a temporary
AIRFLOW_HOME, its metadata in a fresh database on the news database's server, the DAG
unpaused: its first scheduled run is the cold ingest. The figure is that run's wall time
(start to end, as the scheduler records it: its `DagRun Finished` line). Every process started is stopped.

    python -m bench.dag_pace URL_FILE NEWS_DB_URL [--timeout S]

prints one JSON line.
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
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from pipeline.config import PROJECT_ROOT

AIRFLOW = Path(sys.executable).with_name("airflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fresh_database(news_url: str, name: str) -> str:
    admin = psycopg2.connect(urlunsplit(urlsplit(news_url)._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return urlunsplit(urlsplit(news_url)._replace(path="/" + name))


_FINISHED = re.compile(r"DagRun Finished: dag_id=news_ingest, .*?run_id=(?P<run_id>[^,]+), .*?"
                       r"run_duration=(?P<seconds>[0-9.]+), state=(?P<state>\w+)")


def _finished_run(log_file: Path) -> dict[str, object] | None:
    """The first news_ingest run the scheduler reports finished (its own log line)."""
    match = _FINISHED.search(log_file.read_text(errors="replace"))
    if match is None:
        return None
    return {"run_id": match["run_id"], "seconds": round(float(match["seconds"]), 2), "state": match["state"]}


def measure(url_file: Path, news_url: str, timeout_s: float = 1200,
            settings_env: dict[str, str] | None = None) -> dict[str, object]:
    metadata = _fresh_database(news_url, f"airflow_bench_{os.getpid()}")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="airflow-bench-") as home:
        kept_log = PROJECT_ROOT / ".data" / "bench" / "dag_pace_standalone.log"
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata.replace("postgresql://", "postgresql+psycopg2://", 1),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "PATH": f"{AIRFLOW.parent}:{os.environ.get('PATH', '')}",  # standalone starts `airflow ...`
            "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'dags'}",
            "DATABASE_URL": news_url,
            "FEEDS_FILE": str(url_file),
            "GX_ANALYTICS_ENABLED": "false",
            **(settings_env or {}),
        }
        subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
        subprocess.run([str(AIRFLOW), "pools", "set", "feed_fetch", env.get("FETCH_POOL_SLOTS", "4"),
                        "feed fetch tasks"], env=env, check=True, capture_output=True, timeout=120)
        log = open(Path(home) / "standalone.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([str(AIRFLOW), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout_s:
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow standalone exited: see {kept_log}")
                run = _finished_run(Path(home) / "standalone.log")
                if run is not None:
                    return {**run, "executor": "LocalExecutor", "parallelism": 8,
                            "feed_fetch_pool_slots": int(env.get("FETCH_POOL_SLOTS", "4"))}
                time.sleep(2)
            raise TimeoutError(f"no news_ingest run finished within {timeout_s:.0f} s: see {kept_log}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            log.close()
            kept_log.parent.mkdir(parents=True, exist_ok=True)
            kept_log.write_bytes((Path(home) / "standalone.log").read_bytes())  # kept for a look
            _drop(news_url, metadata)


def _drop(news_url: str, metadata: str) -> None:
    admin = psycopg2.connect(urlunsplit(urlsplit(news_url)._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{urlsplit(metadata).path.lstrip("/")}" WITH (FORCE)')
    admin.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url_file", type=Path)
    parser.add_argument("news_url")
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    print(json.dumps(measure(args.url_file, args.news_url, args.timeout)))


if __name__ == "__main__":
    main()
