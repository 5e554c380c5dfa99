"""
### news_maintenance

Daily upkeep of the history tables partitioned by month (migration 017: `fetch_log`,
`validation_results`, `duplicates`, `article_versions`; README, "Retention and
partitioning"):

* **create_partitions**: this month's partition of each table and the next
  `PARTITION_MONTHS_AHEAD` months', so rows always land in their month's partition, not
  in DEFAULT; rows DEFAULT holds (maintenance was late, a clock far off) move into their
  month's partition;
* **drop_expired**: drops each table's partitions wholly older than its retention
  (`FETCH_LOG_RETENTION_DAYS`, `VALIDATION_RETENTION_DAYS`, `DUPLICATES_RETENTION_DAYS`,
  `VERSIONS_RETENTION_DAYS`), with their rows: a month with a row still within the
  retention is kept whole; DEFAULT is never dropped.

A DAG of its own, not a task of `news_ingest`: it is daily work, not every run's (the
ingest runs every 15 minutes, its hot lane every 3); its DDL takes brief exclusive locks
(given up after 10 s), better taken once a day than on the ingest's critical path; and
its failure (a lock not had) must not fail an ingest run. Times are the run's (the end of
its data interval), so a re-run of a day does what that day did.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import news_common as common
from airflow.sdk import dag, task


@dag(
    dag_id="news_maintenance",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["news", "maintenance"],
    doc_md=__doc__,
)
def news_maintenance() -> None:
    @task
    def create_partitions(data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, int]:
        from pipeline import maintenance

        cfg = common.settings()
        created = maintenance.create_partitions(common.db_url(cfg), cfg, common.run_time(data_interval_end, dag_run))
        print(f"partitions created: {created}")
        return {table: len(names) for table, names in created.items()}

    @task
    def drop_expired(data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, int]:
        from pipeline import maintenance

        cfg = common.settings()
        dropped = maintenance.drop_expired_partitions(common.db_url(cfg), cfg,
                                                      common.run_time(data_interval_end, dag_run))
        print(f"dropped: {dropped}")
        return {key: value if isinstance(value, int) else len(value) for key, value in dropped.items()}

    create_partitions() >> drop_expired()


news_maintenance()
