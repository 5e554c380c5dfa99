"""
### news_table_checks

Runs whenever `news_ingest` loads articles (it is scheduled on the `news_articles`
asset). Validates the *stored* tables with Great Expectations' SQL data source: no
canonical URL twice, no future publication dates, every article's feed exists,
every recorded duplicate points at an existing article, every story-cluster member
(and the article naming its cluster) exists. Results go to
`validation_runs` / `validation_results` like the ingest's suites, with a Data
Docs page; the task fails when a check fails.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import news_common as common
from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException


@dag(
    dag_id="news_table_checks",
    schedule=[common.ARTICLES],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["news", "quality"],
    doc_md=__doc__,
)
def news_table_checks() -> None:
    @task
    def check_tables(run_id: str | None = None) -> dict[str, Any]:
        from pipeline import maintenance

        cfg = common.settings()
        result = maintenance.check_table(common.db_url(cfg), cfg, str(run_id), common.now())
        print(f"{result['articles']} articles checked; Data Docs: {result['data_docs']}")
        if not result["success"]:
            raise AirflowFailException("table checks failed: " + "; ".join(result["failed"]))
        return result

    check_tables()


news_table_checks()
