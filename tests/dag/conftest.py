"""Fixtures of the DAG tests: Airflow pointed at the test server, the DAG folder parsed once."""

from typing import Any

import pytest

from pipeline.config import PROJECT_ROOT


@pytest.fixture(scope="session", autouse=True)
def _airflow_on_the_test_server(airflow_metadata_url: str) -> str:
    """Every DAG test (and the subprocesses it starts) sees the metadata DB URL before airflow
    is imported: set by the root conftest's fixture, which starts the server if needed."""
    return airflow_metadata_url


@pytest.fixture(scope="session")
def dagbag(_airflow_on_the_test_server: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
