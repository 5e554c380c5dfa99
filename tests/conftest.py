"""Test set-up: a real PostgreSQL and a real Airflow metadata database, started lazily.

Nothing here starts or contacts a server at import: the unit tier runs without one. The
server is `DATABASE_URL`'s when set, else the embedded one (pgserver) under `.data/test`,
started by the first fixture that needs it (`admin_url`). Each test that asks for `db_url`
gets a fresh database cloned from a migrated template.

Airflow's environment is set here, at import, before anything imports airflow; its
metadata database URL is not known until a server runs, so `airflow_metadata_url` sets
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN (the DAG tier's conftest requests it for every DAG
test, before any of them imports airflow).
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import queue
import shutil
import sys
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from psycopg2 import sql

from pipeline import database
from pipeline.config import PROJECT_ROOT, Settings, normalize_db_url
from tests.helpers import database_url, drop_database, settings_for_tests

SHARED = PROJECT_ROOT.parent / "shared"
_SESSION = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
TEMPLATE_DB = f"news_template_{_SESSION}"
AIRFLOW_DB = f"airflow_test_{_SESSION}"
# Read once, then removed: tests pass URLs explicitly; the DAG tests set their own.
_CONFIGURED_DB_URL = os.environ.pop("DATABASE_URL", None) or None
os.environ.pop("AIRFLOW_CONN_NEWS_DB", None)
# What a test runs in a subprocess (`python -m pipeline ...`) and does not give a data dir
# gets this session's own, not the project's `.data`: its GX project is not shared with
# other sessions (or xdist workers) running at the same time.
_SUBPROCESS_DATA_DIR = tempfile.mkdtemp(prefix="news-data-")
atexit.register(shutil.rmtree, _SUBPROCESS_DATA_DIR, ignore_errors=True)
os.environ["NEWS_DATA_DIR"] = _SUBPROCESS_DATA_DIR

# Airflow reads its configuration at import: set it before any test imports it. The
# metadata database is set by `airflow_metadata_url`; until then airflow would see none
# of the caller's (a stray import gets a SQLite file in this private home, never a real DB).
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "GX_ANALYTICS_ENABLED": "false",
    }
)
os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
# Airflow puts the DAG bundle's folder on sys.path when it parses DAGs (BundleDagBag): so do tests.
sys.path.append(str(PROJECT_ROOT / "dags"))


@cache
def _server_admin_url() -> str:
    """The server's `postgres` database; the first call starts the embedded server if needed."""
    if _CONFIGURED_DB_URL:
        parts = urlsplit(normalize_db_url(_CONFIGURED_DB_URL))
        return urlunsplit(parts._replace(path="/postgres"))
    data_dir = PROJECT_ROOT / ".data" / "test"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "start.lock", "w") as lock:  # xdist workers: one starts it, the rest reuse it
        fcntl.flock(lock, fcntl.LOCK_EX)
        return database.embedded_server_url(data_dir, "postgres")


def _admin(admin_url: str, statement: sql.Composable) -> None:
    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


class _Dropper:
    """Drops databases on a thread of its own. DROP DATABASE makes PostgreSQL checkpoint
    (1-2 s on this server, more when other sessions dirty it): no test waits for that."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.names: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._work, name="drop-test-databases", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (name := self.names.get()) is not None:
            try:
                drop_database(self.admin_url, name)
            except Exception as exc:  # noqa: BLE001 - reported at the end of the session
                self.errors.append(f"{name}: {exc}")

    def drop(self, name: str) -> None:
        self.names.put(name)

    def close(self, timeout: float = 300) -> None:
        self.names.put(None)
        self.thread.join(timeout)
        if self.thread.is_alive() or self.errors:
            warnings.warn(f"test databases left behind: {self.errors or 'the drops did not finish'}",
                          stacklevel=1)


@pytest.fixture(scope="session")
def admin_url() -> str:
    """The test server's admin URL: the server starts here, on first use."""
    return _server_admin_url()


@pytest.fixture(scope="session")
def _dropper(admin_url: str) -> Iterator[_Dropper]:
    dropper = _Dropper(admin_url)
    yield dropper
    dropper.close()


@pytest.fixture(scope="session")
def template_db(admin_url: str, _dropper: _Dropper) -> Iterator[str]:
    database.ensure_database(admin_url, TEMPLATE_DB)
    database.migrate(database_url(admin_url, TEMPLATE_DB))
    yield TEMPLATE_DB
    _dropper.drop(TEMPLATE_DB)


@pytest.fixture
def db_url(admin_url: str, template_db: str, _dropper: _Dropper) -> Iterator[str]:
    """A fresh, migrated news database for one test (dropped in the background after it)."""
    name = f"news_{_SESSION}_{uuid.uuid4().hex[:8]}"
    _admin(admin_url, sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                     sql.Identifier(template_db)))
    yield database_url(admin_url, name)
    _dropper.drop(name)


@pytest.fixture(scope="session")
def airflow_metadata_url(admin_url: str) -> str:
    """Points Airflow at this session's metadata database (not created here: `airflow_db`)."""
    url = database_url(admin_url, AIRFLOW_DB).replace("postgresql://", "postgresql+psycopg2://", 1)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url
    if "airflow.settings" in sys.modules:  # imported before this fixture ran: re-read the setting
        from airflow import settings as airflow_settings

        airflow_settings.configure_vars()
        airflow_settings.reconfigure_orm()
    return url


def _airflow_template_name() -> str:
    """The migrated metadata database kept on the test server for this install of Airflow
    (its distributions, their versions and its migration files: what `upgradedb` builds).
    Dropping it (`ALTER DATABASE ... IS_TEMPLATE false`, then `DROP DATABASE`) only makes
    the next session build it again."""
    from importlib.metadata import distributions

    import airflow

    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions()
                       if (d.metadata["Name"] or "").lower().startswith("apache-airflow"))
    migrations = sorted(p.name for p in Path(airflow.__file__).parent.glob("migrations/versions/*.py"))
    return "airflow_migrated_" + hashlib.sha256("\n".join(installed + migrations).encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def airflow_db(admin_url: str, airflow_metadata_url: str) -> Iterator[str]:
    """Airflow's metadata database, migrated: cloned from the server's migrated copy for
    this install of Airflow, which the first session to need it builds (a migration takes
    15 s here; each tier and xdist worker needs one). A copy is named only once complete,
    and built by one session at a time (an advisory lock on the server)."""
    from airflow import settings as airflow_settings
    from airflow.utils import db as airflow_db_utils

    template = _airflow_template_name()
    lock = psycopg2.connect(admin_url)
    try:
        lock.autocommit = True
        with lock.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (template,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,))
            if cur.fetchone() is None:
                database.ensure_database(admin_url, AIRFLOW_DB)
                airflow_db_utils.upgradedb()
                airflow_settings.engine.dispose()  # no connection to it left open: it is copied
                building = f"{template}_building"
                drop_database(admin_url, building)  # a build another session did not finish
                cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(building),
                                                                            sql.Identifier(AIRFLOW_DB)))
                cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building),
                                                                            sql.Identifier(template)))
                # no session can open it (one would stop every clone), and any role may clone it
                cur.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    sql.Identifier(template)))
            else:
                cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(AIRFLOW_DB),
                                                                            sql.Identifier(template)))
            cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (template,))
    finally:
        lock.close()
    yield AIRFLOW_DB
    airflow_settings.dispose_orm(do_log=False)
    drop_database(admin_url, AIRFLOW_DB)


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `settings` fixture's data dir, one per session (per xdist worker): the Great
    Expectations project under it (`gx/`) is built once, not once per test."""
    return tmp_path_factory.mktemp("news-data")


@pytest.fixture
def settings(shared_data_dir: Path) -> Settings:
    """Settings for tests: short timeouts, the session's data dir (its GX project)."""
    return settings_for_tests(shared_data_dir)


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED / "corpora").is_dir():
        pytest.skip("../shared is absent")
    return SHARED
