"""Test set-up: a real PostgreSQL and a real Airflow metadata database.

The server is `DATABASE_URL`'s when set, else the embedded one (pgserver)
under `.data/test`. Each test that asks for `db_url` gets a fresh database
cloned from a migrated template. Airflow's environment is set here, before
anything imports airflow.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from psycopg2 import sql

from pipeline import database
from pipeline.config import PROJECT_ROOT, Settings, normalize_db_url
from tests.helpers import settings_for_tests

SHARED = PROJECT_ROOT.parent / "shared"
_SESSION = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _server_admin_url() -> str:
    configured = os.environ.get("DATABASE_URL")
    if configured:
        parts = urlsplit(normalize_db_url(configured))
        return urlunsplit(parts._replace(path="/postgres"))
    return database.embedded_server_url(PROJECT_ROOT / ".data" / "test", "postgres")


ADMIN_URL = _server_admin_url()
TEMPLATE_DB = f"news_template_{_SESSION}"
AIRFLOW_DB = f"airflow_test_{_SESSION}"


def _url_for(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name))


# Airflow reads its configuration at import: set it before any test imports it.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _url_for(AIRFLOW_DB).replace(
            "postgresql://", "postgresql+psycopg2://", 1
        ),
        "GX_ANALYTICS_ENABLED": "false",
    }
)
# Airflow puts the DAG bundle's folder on sys.path when it parses DAGs (BundleDagBag): so do tests.
sys.path.append(str(PROJECT_ROOT / "dags"))
os.environ.pop("DATABASE_URL", None)  # tests pass URLs explicitly; the DAG test sets its own
os.environ.pop("AIRFLOW_CONN_NEWS_DB", None)


def _admin(statement: sql.Composable) -> None:
    conn = psycopg2.connect(ADMIN_URL)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _drop(name: str) -> None:
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    database.ensure_database(ADMIN_URL, TEMPLATE_DB)
    database.migrate(_url_for(TEMPLATE_DB))
    yield TEMPLATE_DB
    _drop(TEMPLATE_DB)


@pytest.fixture
def db_url(template_db: str) -> Iterator[str]:
    """A fresh, migrated news database for one test."""
    name = f"news_{_SESSION}_{uuid.uuid4().hex[:8]}"
    _admin(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    yield _url_for(name)
    _drop(name)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[str]:
    """Airflow's metadata database, migrated once per session."""
    database.ensure_database(ADMIN_URL, AIRFLOW_DB)
    from airflow.utils import db as airflow_db_utils

    airflow_db_utils.upgradedb()
    yield AIRFLOW_DB
    from airflow import settings as airflow_settings

    airflow_settings.dispose_orm(do_log=False)
    _drop(AIRFLOW_DB)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for tests: short timeouts, a private data dir."""
    return settings_for_tests(tmp_path)


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED / "corpora").is_dir():
        pytest.skip("../shared is absent")
    return SHARED

