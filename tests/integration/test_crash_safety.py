"""Crash safety: the PostgreSQL server dies at every stage boundary and inside the load.

On a private server this module starts (and kills), each case:

1. starts from a database where generation 0 of three feeds was loaded by a first run
   (once, in the template database);
2. generation 1 is served; a second run is killed (`pg_ctl stop -m immediate`) after
   one stage, or inside the load (blocked on a lock after inserting articles);
3. the server restarts (crash recovery); no feed's stored validators (ETag,
   Last-Modified, body hash) may describe a body whose entries are not stored;
4. the run is retried under the same run id: from the stage after the one that
   completed ("resume": Airflow retries the failed task only; what earlier tasks
   committed must still be there) or from the start ("restart": a cleared run);
5. generation 2 is served (new content: a 304 or an unchanged body hash would hide
   entries lost in step 2) and a third run loads it.

Then every entry ever served is stored exactly once, nothing is quarantined, and
each re-served entry is one recorded duplicate seen once.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from email.utils import formatdate
from typing import Callable, Iterator

import psycopg2
import pytest
from psycopg2 import sql

from pipeline import database, load, local_runner, maintenance, tasks
from pipeline.config import Settings
from pipeline.feedserver import FeedServer, Route
from pipeline.records import FeedSource
from tests.crashable_server import CrashableServer, find_bin_dir
from tests.helpers import item, query, rss, scalar, settings_for_tests

TEMPLATE = "crash_template"
STAGES = ("prepare", "ingest_shard", "load", "report")
KILL_POINTS = ("prepare", "ingest_shard", "inside_load")
T0 = time.time() - 30 * 86400  # entries' dates: fixed for the module, well in the past
# Three ways a feed says "unchanged": ETag (and Last-Modified), Last-Modified only, neither
# (then only the body hash).
FEEDS: dict[str, dict[str, bool]] = {
    "/etag.xml": {}, "/modified.xml": {"send_etag": False}, "/plain.xml": {"validators": False}}


@dataclass(frozen=True)
class Body:
    """One generation of one feed, as served: its bytes, validators and entries."""

    generation: int
    bytes: bytes
    etag: str
    last_modified: str
    body_hash: str
    guids: frozenset[str]


def numbers(generation: int) -> list[int]:
    """Three new entries per generation, plus the previous generation's last one re-served."""
    fresh = [3 * generation, 3 * generation + 1, 3 * generation + 2]
    return ([3 * generation - 1] if generation else []) + fresh


def guid(slug: str, n: int) -> str:
    return f"tag:{slug}.example,2026:{n}"  # absolute: feedparser resolves relative GUIDs


def slug_of(path: str) -> str:
    return path.strip("/").split(".")[0]


def body(path: str, generation: int) -> Body:
    slug = slug_of(path)
    entries = [item(n, guid=guid(slug, n), link=f"https://{slug}.example/story/{n}",
                    title=f"{slug.title()} report {n}: the ferry schedule for week {n}",
                    description=f"<p>{slug.title()} body {n}. Crews change shifts at the pier.</p>",
                    pubDate=formatdate(T0 + n * 3600, usegmt=True))
               for n in numbers(generation)]
    data = rss(entries, title=f"{slug} feed", link=f"https://{slug}.example/")
    return Body(generation, data, Route(data).etag, last_modified(generation),
                hashlib.sha256(data).hexdigest(), frozenset(e["guid"] for e in entries))


def last_modified(generation: int) -> str:
    return formatdate(T0 + generation * 86400, usegmt=True)


def sources(srv: FeedServer) -> list[FeedSource]:
    return [FeedSource(srv.url(path)) for path in FEEDS]


def serve(srv: FeedServer, generation: int) -> None:
    srv.last_modified = last_modified(generation)
    for path, options in FEEDS.items():
        srv.routes[path] = Route(body(path, generation).bytes, **options)


# --- the private server and its databases -------------------------------------------------


@pytest.fixture(scope="module")
def feed_server() -> Iterator[FeedServer]:
    with FeedServer({}) as srv:
        yield srv


@pytest.fixture(scope="module")
def pg(feed_server: FeedServer, crash_settings: Settings) -> Iterator[CrashableServer]:
    """The private server; its template database is migrated and has generation 0 loaded."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries to start a server this test may crash: install the "
                    "pgserver package (`make venv` does) or PostgreSQL (initdb, pg_ctl)")
    with CrashableServer(bin_dir) as server:
        database.ensure_database(server.url("postgres"), TEMPLATE)
        database.migrate(server.url(TEMPLATE))
        serve(feed_server, 0)
        Run(server.url(TEMPLATE), crash_settings, sources(feed_server), "run-0").stages()
        assert_feeds_describe(server.url(TEMPLATE), feed_server, 0)
        yield server


def _admin(pg: CrashableServer, statement: sql.Composable) -> None:
    conn = psycopg2.connect(pg.url("postgres"))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def crash_db(pg: CrashableServer) -> Iterator[str]:
    name = f"crash_{uuid.uuid4().hex[:8]}"
    # FILE_COPY, not the default WAL_LOG: PostgreSQL 16's WAL_LOG copy logs the template's
    # sequence pages as they are, so crash recovery would wind the copy's sequences back
    # to the template's values (fetch_log ids reused: a server artifact, not the pipeline's).
    _admin(pg, sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
        sql.Identifier(name), sql.Identifier(TEMPLATE)))
    yield pg.url(name)
    if not pg.running:
        pg.start()
    _admin(pg, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def crash_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """As conftest's `settings`, shared by the module's cases (one GX context, built once)."""
    return settings_for_tests(tmp_path_factory.mktemp("crash-data"))


# --- a run, stage by stage --------------------------------------------------------------


class Run:
    """One run id, its stages called as the DAG's tasks call them (shards kept as XCom is)."""

    def __init__(self, db_url: str, settings: Settings, sources: list[FeedSource], run_id: str):
        self.db_url, self.settings, self.sources, self.run_id = db_url, settings, sources, run_id
        self.shards: list[int] = []

    def stage(self, name: str) -> None:
        db, cfg, run_id, now = self.db_url, self.settings, self.run_id, tasks.utcnow()
        if name == "prepare":
            self.shards = tasks.prepare_run(db, cfg, run_id, self.sources, now, force=True)
        elif name == "ingest_shard":
            for shard in self.shards:
                tasks.ingest_shard(db, cfg, run_id, shard, now)
        elif name == "load":
            tasks.load_batch(db, cfg, run_id)
        else:
            assert tasks.report_run(db, run_id, now)["status"] == "ok"

    def stages(self, names: tuple[str, ...] = STAGES) -> None:
        for name in names:
            self.stage(name)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.05)


def kill_inside_load(pg: CrashableServer, run: Run) -> None:
    """Hold `duplicates` (written after the articles) locked, let the load block on it
    mid-transaction, then kill the server."""
    blocker = psycopg2.connect(run.db_url, application_name="crash-test-blocker")
    failures: list[BaseException] = []

    def load() -> None:
        try:
            run.stage("load")
        except BaseException as exc:  # noqa: BLE001 - the kill is expected to fail it
            failures.append(exc)

    loader = threading.Thread(target=load, name="load-to-kill", daemon=True)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE duplicates IN ACCESS EXCLUSIVE MODE")
        loader.start()
        waiting = """SELECT count(*) FROM pg_stat_activity a
                     JOIN pg_locks w ON w.pid = a.pid AND NOT w.granted
                          AND w.relation = 'duplicates'::regclass
                     JOIN pg_locks l ON l.pid = a.pid AND l.granted
                          AND l.relation = 'articles'::regclass AND l.mode = 'RowExclusiveLock'
                     WHERE a.application_name = 'news-pipeline' AND a.wait_event_type = 'Lock'"""
        wait_for(lambda: not loader.is_alive() or scalar(run.db_url, waiting) == 1,
                 "the load to block on duplicates after writing articles")
        assert loader.is_alive(), f"the load ended before blocking: {failures}"
        pg.crash()
        loader.join(20)
        assert not loader.is_alive(), "the load did not fail when its server died"
        # the lost connection (an OperationalError, or InterfaceError from the rollback)
        assert len(failures) == 1 and isinstance(failures[0], psycopg2.Error), failures
    finally:
        try:
            blocker.close()
        except psycopg2.Error:
            pass


# --- what must hold ---------------------------------------------------------------------


def stored_guids(db_url: str) -> set[str]:
    return {g for (g,) in query(db_url, """SELECT guid FROM articles
                                            UNION SELECT guid FROM duplicates
                                            UNION SELECT entry->>'guid' FROM quarantine""")}


def assert_validators_not_ahead(db_url: str, srv: FeedServer, served: int) -> None:
    """Every validator a feed stores names a served body whose entries are all stored."""
    stored = stored_guids(db_url)
    for url, etag, modified, body_hash in query(
            db_url, "SELECT url, etag, last_modified, body_hash FROM feeds ORDER BY url"):
        path = url.removeprefix(srv.url(""))
        bodies = [body(path, g) for g in range(served)]
        for name, value in (("etag", etag), ("last_modified", modified), ("body_hash", body_hash)):
            if value is None:
                continue
            described = [b for b in bodies if getattr(b, name) == value]
            assert described, f"{path}: stored {name} {value!r} names no served body"
            for b in described:
                missing = b.guids - stored
                assert not missing, (f"{path}: {name} describes generation {b.generation}, "
                                     f"whose entries {sorted(missing)} are not stored")


def assert_nothing_lost_or_duplicated(db_url: str, generations: int, loaded_runs: list[str],
                                      status_of: dict[str, str] | None = None) -> None:
    """Every entry of the generations served is one article; each re-served entry is one
    duplicate seen once; the runs that loaded counted each article once, each with its
    status (`status_of`, else ok); nothing waits."""
    served = {guid(slug_of(p), n) for p in FEEDS for g in range(generations) for n in numbers(g)}
    per_guid = dict(query(db_url, "SELECT guid, count(*) FROM articles GROUP BY guid"))
    assert set(per_guid) == served, (f"lost: {sorted(served - set(per_guid))}, "
                                     f"unexpected: {sorted(set(per_guid) - served)}")
    assert all(n == 1 for n in per_guid.values()), per_guid
    assert scalar(db_url, "SELECT count(*) FROM quarantine") == 0
    re_served = {guid(slug_of(p), 3 * g - 1) for p in FEEDS for g in range(1, generations)}
    duplicates = query(db_url, "SELECT guid, rule, times_seen FROM duplicates")
    assert sorted(duplicates) == sorted((g, "same_identity_key", 1) for g in re_served)
    runs = query(db_url, "SELECT run_id, status, (counts->>'new')::int FROM ingest_runs "
                         "WHERE loaded_at IS NOT NULL ORDER BY started_at")
    assert [(run_id, status) for run_id, status, _ in runs] == [(r, (status_of or {}).get(r, "ok"))
                                                                 for r in loaded_runs]
    assert sum(new for *_, new in runs) == len(served)
    assert scalar(db_url, "SELECT count(*) FROM staged_entries") == 0


def assert_feeds_describe(db_url: str, srv: FeedServer, generation: int) -> None:
    """After a loaded run, each feed's validators name exactly that generation's body."""
    for url, etag, modified, body_hash in query(
            db_url, "SELECT url, etag, last_modified, body_hash FROM feeds"):
        path = url.removeprefix(srv.url(""))
        b, options = body(path, generation), FEEDS[path]
        sends = options.get("validators", True)
        assert etag == (b.etag if sends and options.get("send_etag", True) else None), path
        assert modified == (b.last_modified if sends else None), path
        assert body_hash == b.body_hash, path


# --- the tests --------------------------------------------------------------------------


def test_staging_tables_are_logged(pg: CrashableServer, crash_db: str) -> None:
    persistence = dict(query(crash_db, """SELECT relname, relpersistence FROM pg_class
                                          WHERE relname IN ('staged_entries', 'fetch_log')"""))
    assert persistence == {"staged_entries": "p", "fetch_log": "p"}


# Resuming (Airflow retries the failed task) finds only what the stages before committed:
# every boundary. Restarting (a cleared run) re-fetches: before anything was validated,
# after validation committed, and after a load rolled back.
CASES = [(point, "resume") for point in KILL_POINTS] + [
    (point, "restart") for point in ("ingest_shard", "inside_load")]


@pytest.mark.parametrize(("kill_point", "retry"), CASES, ids=[f"{k}-{r}" for k, r in CASES])
def test_a_server_crash_loses_and_duplicates_nothing(
    pg: CrashableServer, feed_server: FeedServer, crash_db: str, crash_settings: Settings,
    kill_point: str, retry: str,
) -> None:
    srv, feeds = feed_server, sources(feed_server)
    serve(srv, 1)
    crashed = Run(crash_db, crash_settings, feeds, "run-1")
    if kill_point == "inside_load":
        crashed.stages(STAGES[:STAGES.index("load")])
        kill_inside_load(pg, crashed)
        done = STAGES.index("ingest_shard")
    else:
        done = STAGES.index(kill_point)
        crashed.stages(STAGES[:done + 1])
        pg.crash()
    pg.start()
    assert_validators_not_ahead(crash_db, srv, served=2)
    if STAGES[done] != "prepare":  # what the completed stages committed survived the crash
        staged = "SELECT count(*) FROM fetch_log WHERE run_id = 'run-1' AND staged"
        assert scalar(crash_db, staged) == len(FEEDS)

    crashed.stages(STAGES[done + 1:] if retry == "resume" else STAGES)
    assert_validators_not_ahead(crash_db, srv, served=2)
    assert_feeds_describe(crash_db, srv, 1)

    serve(srv, 2)  # new content: a 304 or an unchanged body would hide lost entries
    Run(crash_db, crash_settings, feeds, "run-2").stages()
    assert_validators_not_ahead(crash_db, srv, served=3)
    assert_feeds_describe(crash_db, srv, 2)
    assert_nothing_lost_or_duplicated(crash_db, 3, ["run-0", "run-1", "run-2"])


def test_a_run_whose_staging_was_pruned_loads_none_of_it_and_its_feeds_are_fetched_again(
    feed_server: FeedServer, crash_db: str, crash_settings: Settings,
) -> None:
    """A run left unloaded for days (its staged data pruned by a later run's prepare) and
    then resumed loads none of what it fetched: nothing it staged is left, and loading
    would move the validators to a body whose entries were never stored. Each such fetch
    becomes its feed's error in that run, saying why; the feeds are fetched again."""
    srv, feeds = feed_server, sources(feed_server)
    serve(srv, 1)
    stale = Run(crash_db, crash_settings, feeds, "run-1")
    stale.stages(STAGES[:STAGES.index("ingest_shard") + 1])
    later = Run(crash_db, crash_settings, feeds, "run-2")
    later.shards = tasks.prepare_run(crash_db, crash_settings, "run-2", feeds,
                                      tasks.utcnow() + timedelta(days=3), force=True)
    assert scalar(crash_db, "SELECT count(*) FROM staged_entries WHERE run_id = 'run-1'") == 0

    articles_before = scalar(crash_db, "SELECT count(*) FROM articles")
    stale.stage("load")
    assert scalar(crash_db, "SELECT count(*) FROM articles") == articles_before
    assert query(crash_db, "SELECT DISTINCT outcome, error_kind, error FROM fetch_log WHERE run_id = 'run-1'") == [
        ("error", "internal_error", load.UNSTAGED_ERROR)]
    assert_validators_not_ahead(crash_db, srv, served=2)
    assert_feeds_describe(crash_db, srv, 0)
    # the run ends failed (its lost staging is not every feed failing), each feed's error saying why
    reported = tasks.report_run(crash_db, "run-1", tasks.utcnow())
    assert (reported["status"], reported["totals"]["lost_to_tasks"]) == ("tasks_failed", len(feeds))

    later.stages(STAGES[1:])  # still generation 1: a 304 here would have lost it
    assert_validators_not_ahead(crash_db, srv, served=2)
    assert_nothing_lost_or_duplicated(crash_db, 2, ["run-0", "run-1", "run-2"],
                                      {"run-1": "tasks_failed"})
