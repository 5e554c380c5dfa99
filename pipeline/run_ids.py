"""The news database's id for a run of an ingest DAG.

Airflow's run ids are unique within one DAG only. Both ingest DAGs run at every quarter
hour: news_ingest every 15 minutes, its hot lane news_ingest_hot every 3. So both have a
run called `scheduled__2026-12-06T15:00:00+00:00`. The news database keys a run, with its
plan, staged entries and fetches, by one id. If both DAGs used Airflow's id, the first
run to plan would keep the id and the other would run that plan instead of its own:
a main run holding the hot lane's plan fetches nothing. So runs of any other ingest DAG
carry their DAG's id. The main DAG's runs keep Airflow's id, as rows stored before this
rule do.
"""

from __future__ import annotations

MAIN_INGEST_DAG = "news_ingest"
HOT_INGEST_DAG = "news_ingest_hot"
INGEST_DAGS = (MAIN_INGEST_DAG, HOT_INGEST_DAG)


def ingest_run_id(dag_id: str, airflow_run_id: str) -> str:
    """The id under which the news database records the Airflow run `airflow_run_id` of `dag_id`."""
    return airflow_run_id if dag_id == MAIN_INGEST_DAG else f"{dag_id}:{airflow_run_id}"
