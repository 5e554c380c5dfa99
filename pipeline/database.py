"""Where the news database is, how to connect to it, and how to migrate it.

With `DATABASE_URL` (or an Airflow `news_db` connection) that server is used;
`resolve_database_url` decides which, for every caller. With nothing configured,
an embedded PostgreSQL (the `pgserver` package) is started under `<data_dir>/pg`
and kept running between runs, so the CLI, the tests and Airflow's task
processes all share it.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from pipeline.config import PROJECT_ROOT, Settings, normalize_db_url
from pipeline.errors import SchemaOutOfDate

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "news"
MIGRATIONS_DIR = PROJECT_ROOT / "sql" / "migrations"
VIEWS_DIR = PROJECT_ROOT / "sql" / "views"
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_MIGRATION_LOCK = 715_001  # pg_advisory_lock key: one migrator at a time


def embedded_server_url(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded server under `data_dir/pg`; return a URL to `database`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        import pgserver

        logging.getLogger("pgserver").setLevel(logging.WARNING)

        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(data_dir / "pg", cleanup_mode=None)
    ensure_database(server.get_uri("postgres"), database)
    return server.get_uri(database)


def ensure_database(admin_url: str, database: str) -> None:
    """Create `database` on the server behind `admin_url` unless it exists."""
    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                except psycopg2.errors.DuplicateDatabase:
                    pass  # created concurrently by another process
    finally:
        conn.close()


def drop_database(admin_url: str, database: str) -> None:
    """Drop `database` on the server behind `admin_url` if it exists, closing its sessions."""
    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    finally:
        conn.close()


def sibling_url(url: str, database: str) -> str:
    """The URL of another database on the same server (created if missing)."""
    parts = urlsplit(url)
    sibling = urlunsplit(parts._replace(path="/" + database))
    ensure_database(url, database)
    return sibling


def resolve_database_url(settings: Settings, news_db_connection: Callable[[], str | None] | None = None) -> str:
    """The news database's URL, decided here for every caller (CLI, DAG tasks, bench); the first found:

    1. `news_db_connection()`: the DAG's tasks pass a lookup of the `news_db` Airflow
       connection (UI, secrets backend or AIRFLOW_CONN_NEWS_DB), which returns None when
       it is not defined; this package never imports Airflow itself;
    2. `settings.database_url` (DATABASE_URL);
    3. `settings.news_db_connection` (AIRFLOW_CONN_NEWS_DB read without Airflow, by the CLI);
    4. the embedded server under `settings.data_dir`, started if need be.
    """
    found = news_db_connection() if news_db_connection is not None else None
    url = normalize_db_url(found) if found else configured_database_url(settings)
    return url or embedded_server_url(settings.data_dir)


def configured_database_url(settings: Settings) -> str | None:
    """The news database's URL the settings name (2. and 3. of `resolve_database_url`), or
    None: for a caller that has no use for a server it would have to start (the fetch's
    host limits, held within the process when no database is named). Both are normalized
    as the settings are read."""
    return settings.database_url or settings.news_db_connection


@contextmanager
def connect(url: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection whose block is one transaction: committed on success, rolled back on error."""
    conn = psycopg2.connect(url, application_name="news-pipeline")
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def migration_files() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file name must look like 001_name.sql: {path.name}")
        found.append((int(match.group(1)), path))
    versions = [v for v, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 001, 002, ... without gaps: {versions}")
    return found


def migrate(url: str) -> list[int]:
    """Apply pending migrations, each in its own transaction, then re-create the views.

    Returns the versions applied by this call. Safe to run concurrently: a
    session advisory lock serializes migrators.
    """
    applied_now: list[int] = []
    conn = psycopg2.connect(url, application_name="news-pipeline-migrate")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute(
                """CREATE TABLE IF NOT EXISTS schema_version (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            conn.commit()
            cur.execute("SELECT version FROM schema_version")
            done = {row[0] for row in cur.fetchall()}
            for version, path in migration_files():
                if version in done:
                    continue
                cur.execute(path.read_text(encoding="utf-8"))
                cur.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                    (version, path.name),
                )
                conn.commit()
                applied_now.append(version)
                log.info("applied migration %s", path.name)
            for path in sorted(VIEWS_DIR.glob("*.sql")):
                cur.execute(path.read_text(encoding="utf-8"))
            conn.commit()
            cur.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    finally:
        conn.close()
    return applied_now


def require_schema(cur: psycopg2.extensions.cursor) -> None:
    """Refuse to run on a database whose migrations are not all applied. Migrations run at
    start-up (`make run`, the compose init service, the CLI), never inside a DAG run."""
    latest = len(migration_files())
    cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    applied = 0
    if cur.fetchone()[0]:
        cur.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        applied = cur.fetchone()[0]
    if applied < latest:
        raise SchemaOutOfDate(
            f"the news database is at schema version {applied}, the code needs {latest}: "
            "run `python -m pipeline migrate` (make run and the compose init service do)")
