"""A distributed run: `make run EXECUTOR=celery WORKERS=2` (scripts/run_airflow.sh), a
scheduler and two Celery workers on this machine's Redis and the test PostgreSQL, runs
news_ingest over 11 shards of loopback feeds; the same feeds go through `make run`'s
LocalExecutor (airflow standalone) into another fresh news database.

Asserted: both runs succeed over the same shards; the shards ran on both workers (their
names are the task instances' hostname); the articles, duplicates, story clusters and
quarantine are the same row for row. Each Airflow has its own metadata and news
databases, free ports and, for Celery, its own queue on the shared Redis.

Skipped, saying so, when no Redis answers at CELERY_BROKER_URL (default
redis://127.0.0.1:6379/0). Bounded: each start and each run has a deadline, the whole
module a timeout; every process started is stopped (run_airflow.sh --stop ends the process
group, checked) and every database dropped.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.dag_pace import broker_error, forget_queue
from pipeline import database
from pipeline.config import PROJECT_ROOT
from tests.helpers import database_url, drop_database, free_port, item, query, rss

SCRIPT = PROJECT_ROOT / "scripts" / "run_airflow.sh"
KEPT_LOGS = PROJECT_ROOT / ".data" / "distributed"  # each Airflow's log of the last run
BROKER = os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0"
FEEDS, ITEMS, FEEDS_PER_SHARD = 54, 6, 5  # 11 shards
START_TIMEOUT = 300  # s: migrations, then the API server (about a minute on 2 busy cores)
RUN_TIMEOUT = 420  # s: the first news_ingest run (about a minute here)

pytestmark = pytest.mark.timeout(2 * (START_TIMEOUT + RUN_TIMEOUT) + 300)


def _feed(n: int) -> bytes:
    """Feed n: its own stories, and the first story of feed n-1 again (the same link): an
    exact duplicate across feeds, so shards on different workers meet in the one decider."""
    items = [item(n * 100 + k, pubDate=f"Mon, 16 Nov 2026 {k:02d}:{n % 60:02d}:00 +0000") for k in range(ITEMS)]
    if n:
        items.append(item((n - 1) * 100, pubDate=f"Mon, 16 Nov 2026 00:{(n - 1) % 60:02d}:00 +0000"))
    return rss(items, title=f"Feed {n}", link=f"https://news.example/feed/{n}")


@pytest.fixture(scope="module")
def feeds_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The feed list, served on 127.0.0.1 by a thread of this process (stopped after)."""
    bodies = {f"/feed{n:03d}.xml": _feed(n) for n in range(FEEDS)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = bodies.get(self.path)
            time.sleep(0.2)  # a shard takes a moment: every shard is not done before a worker starts
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path_factory.mktemp("feeds") / "feeds.txt"
    path.write_text("".join(f"http://127.0.0.1:{server.server_port}{p}\n" for p in bodies))
    yield path
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Run:
    """What one Airflow made of the feeds: the DagRun's state, its task instances
    (task_id, map_index, state, hostname) and the news rows to compare."""

    state: str
    task_instances: list[tuple]
    rows: dict[str, list[tuple]]

    def shard_hosts(self) -> set[str]:
        return {host for task, _, _, host in self.task_instances if task == "ingest_shard"}


ROWS = {
    "articles": """SELECT f.url, a.identity_key, a.canonical_url, a.title, a.text, a.content_hash, a.published_at,
                          a.published_source, a.language, a.version
                   FROM articles a JOIN feeds f ON f.id = a.feed_id ORDER BY a.canonical_url""",
    "duplicates": """SELECT f.url, d.guid, d.canonical_url, d.content_hash, d.rule, m.canonical_url
                     FROM duplicates d JOIN feeds f ON f.id = d.feed_id
                     LEFT JOIN articles m ON m.id = d.matched_article_id ORDER BY 1, 2, 3, 5""",
    "clusters": """SELECT array_agg(a.canonical_url ORDER BY a.canonical_url) FROM article_clusters c
                   JOIN articles a ON a.id = c.article_id GROUP BY c.cluster_id ORDER BY 1""",
    "quarantine": "SELECT f.url, q.reasons::text FROM quarantine q JOIN feeds f ON f.id = q.feed_id ORDER BY 1, 2",
}


def _finished_run(metadata_url: str, deadline: float) -> tuple[str, str]:
    while time.monotonic() < deadline:
        rows = query(metadata_url, "SELECT run_id, state FROM dag_run WHERE dag_id = 'news_ingest' "
                                   "AND state IN ('success', 'failed') ORDER BY start_date LIMIT 1")
        if rows:
            return rows[0]
        time.sleep(3)
    raise AssertionError(f"no news_ingest run finished within {RUN_TIMEOUT} s")


def run_airflow(executor: str, admin_url: str, feeds_file: Path, home: Path) -> Run:
    """`make run EXECUTOR=...` in the background on fresh databases; its first news_ingest
    run's outcome; everything stopped and dropped before returning."""
    suffix = f"{executor}_{uuid.uuid4().hex[:8]}"
    news_db, airflow_db, queue = f"news_dist_{suffix}", f"airflow_dist_{suffix}", f"news_dist_{suffix}"
    for name in (news_db, airflow_db):
        database.ensure_database(admin_url, name)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_PORT": str(free_port()),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(admin_url, airflow_db).replace(
            "postgresql://", "postgresql+psycopg2://", 1),
        "DATABASE_URL": database_url(admin_url, news_db),
        "NEWS_DATA_DIR": str(home / "news-data"),
        "FEEDS": str(feeds_file),
        "FEEDS_PER_SHARD": str(FEEDS_PER_SHARD),
        "FETCH_ALLOWED_NETWORKS": "127.0.0.1/32",
        "FETCH_PER_HOST": "8",
        "START_TIMEOUT": str(START_TIMEOUT),
        "EXECUTOR": executor,
        "WORKERS": "2",
        "CELERY_BROKER_URL": BROKER,
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,  # this run's own queue on the shared Redis
        # The hot lane's DAG is not under test: yearly, it has no run yet (its loads would also
        # race the main run's over the one GX project: a freshness error, then a retry).
        "HOT_INGEST_SCHEDULE": "0 0 1 1 *",
    }
    pidfile = home / "airflow.pid"
    try:
        started = subprocess.run([str(SCRIPT), "--background"], env=env, capture_output=True, text=True,
                                 timeout=START_TIMEOUT + 60)
        log = home / "airflow.log"
        assert started.returncode == 0, started.stdout + started.stderr + (
            log.read_text()[-4000:] if log.exists() else "")
        metadata = database_url(admin_url, airflow_db)
        run_id, state = _finished_run(metadata, time.monotonic() + RUN_TIMEOUT)
        tis = query(metadata, "SELECT task_id, map_index, state, hostname FROM task_instance "
                              "WHERE dag_id = 'news_ingest' AND run_id = %s ORDER BY task_id, map_index", (run_id,))
        rows = {name: query(database_url(admin_url, news_db), statement) for name, statement in ROWS.items()}
        return Run(state, tis, rows)
    finally:
        group = int(pidfile.read_text()) if pidfile.exists() else None
        subprocess.run([str(SCRIPT), "--stop"], env=env, capture_output=True, timeout=120)
        running = _running_in_group(group, within=30) if group is not None else []
        if (home / "airflow.log").exists():  # kept for a look: pytest's tmp dirs rotate
            KEPT_LOGS.mkdir(parents=True, exist_ok=True)
            (KEPT_LOGS / f"{executor}.log").write_bytes((home / "airflow.log").read_bytes())
        if executor == "celery":
            forget_queue(queue, BROKER)
        for name in (news_db, airflow_db):
            drop_database(admin_url, name)
        assert running == [], "left running after run_airflow.sh --stop"  # it ended all it started


def _running_in_group(group: int, within: float) -> list[str]:
    """The processes of a process group still running (zombies are not: they wait for their
    reaper, which here may be slow) once they stopped or `within` seconds passed."""
    deadline = time.monotonic() + within
    while True:
        running = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)"
                if int(fields[2]) == group and fields[0] != "Z":
                    running.append(f"{stat.parent.name}: {(stat.parent / 'cmdline').read_bytes()[:120]!r}")
            except OSError:
                continue  # it ended meanwhile
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(1)


@pytest.fixture(scope="module")
def broker() -> str:
    error = broker_error(BROKER)
    if error:
        pytest.skip(f"no Redis answers at {BROKER} ({error}): the distributed tier needs one "
                    "(README, Scale-out; or set CELERY_BROKER_URL)")
    return BROKER


def test_two_celery_workers_share_the_shards_and_load_what_localexecutor_loads(
        broker: str, admin_url: str, feeds_file: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    celery = run_airflow("celery", admin_url, feeds_file, tmp_path_factory.mktemp("airflow-celery"))
    local = run_airflow("local", admin_url, feeds_file, tmp_path_factory.mktemp("airflow-local"))

    shards = -(-FEEDS // FEEDS_PER_SHARD)
    for run in (celery, local):
        assert run.state == "success", run.task_instances
        assert [(t, m) for t, m, _, _ in run.task_instances if t == "ingest_shard"] == [
            ("ingest_shard", i) for i in range(shards)]
        assert {s for _, _, s, _ in run.task_instances} == {"success"}
    # The workers' names (worker1@HOST, worker2@HOST) are the task instances' hostnames.
    workers = {host.partition("@")[0] for _, _, _, host in celery.task_instances}
    assert workers == {"worker1", "worker2"}, celery.task_instances
    assert {host.partition("@")[0] for host in celery.shard_hosts()} == workers  # both ran shards
    assert len(local.shard_hosts()) == 1 and "@" not in next(iter(local.shard_hosts()))

    assert len(celery.rows["articles"]) == FEEDS * ITEMS
    assert len(celery.rows["duplicates"]) == FEEDS - 1
    for table in ROWS:
        assert celery.rows[table] == local.rows[table], table
