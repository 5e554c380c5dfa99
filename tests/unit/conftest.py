"""The unit tier needs no database: a unit test that asks for one fails, naming the tier it
belongs in (tests/integration)."""

import pytest


@pytest.fixture(scope="session")
def admin_url() -> str:
    pytest.fail("a unit test asked for PostgreSQL (db_url, template_db, airflow_db): move it to tests/integration")
