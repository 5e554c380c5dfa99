"""
### news_ingest

Fetches the feed list (`FEEDS_FILE`), then parses, normalizes, deduplicates,
validates (Great Expectations) and loads the entries into the news database.

* **prepare**: registers the feeds, picks those due (each feed's next check comes from
  `Retry-After`, `Cache-Control`, `Expires`, `<ttl>` and its error streak; trigger with
  `{"force": true}` to fetch all now) and splits them into shards.
* **fetch** (mapped, one task per shard, in the `feed_fetch` pool): HTTP with
  conditional GET; each feed's outcome goes to `fetch_log`.
* **parse**, **normalize** (mapped per shard), **dedup**, **validate**, **load**.
* **report**: the run summary; fails when every feed failed (a systemic fault).

Tasks pass only shard numbers and counts through XCom; the data moves
through staging tables keyed by the run id. The code lives in `pipeline/`.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

ARTICLES = Asset(name="news_articles", uri="news://news_db/public/articles")
FETCH_POOL = "feed_fetch"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _settings() -> Any:
    from pipeline.config import Settings

    return Settings.from_env()


def _db_url(settings: Any) -> str:
    """The `news_db` Airflow connection when defined, else the pipeline's own default."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from pipeline.config import normalize_db_url
    from pipeline.database import database_url

    try:
        return normalize_db_url(Connection.get("news_db").get_uri())
    except AirflowNotFoundException:
        return database_url(settings)


@dag(
    dag_id="news_ingest",
    schedule=CronDataIntervalTimetable(os.environ.get("INGEST_SCHEDULE", "*/15 * * * *"), timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=60),
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
    },
    tags=["news"],
    doc_md=__doc__,
    params={
        "force": Param(False, type="boolean",
                       description="Fetch every subscribed feed now, even those whose next check is later."),
    },
)
def news_ingest() -> None:
    @task
    def prepare(run_id: str | None = None, params: dict[str, Any] | None = None) -> list[int]:
        from pipeline import database, stages
        from pipeline.feedlist import read_feed_list

        settings = _settings()
        url = _db_url(settings)
        database.migrate(url)
        sources = read_feed_list(settings.feeds_file)
        print(f"feed list {settings.feeds_file}: {len(sources)} feeds")
        force = bool((params or {}).get("force"))
        return stages.prepare_run(url, settings, str(run_id), sources, _now(), force=force)

    @task(pool=FETCH_POOL, map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def fetch(shard: int, run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages

        settings = _settings()
        return stages.fetch_shard(_db_url(settings), settings, str(run_id), shard, _now())

    @task(map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def parse(shard: int, run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages

        settings = _settings()
        return stages.parse_shard(_db_url(settings), settings, str(run_id), shard)

    @task(map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def normalize(shard: int, run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages

        return stages.normalize_shard(_db_url(_settings()), str(run_id), shard)

    @task
    def dedup(run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages

        return stages.dedup_run(_db_url(_settings()), str(run_id))

    @task
    def validate(run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages
        from pipeline.errors import ValidationThresholdExceeded

        settings = _settings()
        try:
            return stages.validate_run(_db_url(settings), settings, str(run_id), _now())
        except ValidationThresholdExceeded as exc:  # terminal: retrying gives the same answer
            raise AirflowFailException(str(exc)) from exc

    @task(trigger_rule="all_done", outlets=[ARTICLES])
    def load(run_id: str | None = None) -> dict[str, Any]:
        """Runs after a failed validate too: good and quarantined rows still land."""
        from pipeline import stages

        settings = _settings()
        return stages.load_run(_db_url(settings), settings, str(run_id), _now())

    @task(trigger_rule="all_done", retries=0)
    def report(run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages
        from pipeline.errors import SystemicFetchFailure

        try:
            summary = stages.report_run(_db_url(_settings()), str(run_id), _now())
        except SystemicFetchFailure as exc:
            raise AirflowFailException(str(exc)) from exc
        for feed in summary["feeds"]:
            if feed["outcome"] in ("error", "disabled"):
                print(f"{feed['outcome']}: {feed['url']}: {feed['error']}")
        for feed in summary["attention"]:
            print(f"needs attention ({feed['status']}, {feed['error_streak']} errors): "
                  f"{feed['url']}: {feed['reason']}")
        print(f"run {run_id} {summary['status']}: {summary['totals']}")
        return summary["totals"]

    shards = prepare()
    fetched = fetch.expand(shard=shards)
    parsed = parse.expand(shard=shards)
    normalized = normalize.expand(shard=shards)
    fetched >> parsed >> normalized
    normalized >> dedup() >> validate() >> load() >> report()


news_ingest()
