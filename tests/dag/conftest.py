"""Fixtures of the DAG tests: the DAG folder, parsed once."""

import pytest

from pipeline.config import PROJECT_ROOT


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
