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
* **report**: the run summary, and the run's verdict. It runs whatever happened upstream
  and, being the only leaf, sets the run's state: it fails, naming the reason in its log,
  when validation failed past the fail level, when the batch was not loaded, when every
  feed failed (a systemic fault) or when any task failed; a validation warning is logged
  and returned, and the run stays green.

Errors the pipeline marks terminal (a breached threshold, bad settings) fail their task
at once (`TerminalErrors`); other failures are retried first.

Tasks pass only shard numbers and counts through XCom; the data moves
through staging tables keyed by the run id. The code lives in `pipeline/`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import news_common as common
from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

FETCH_POOL = "feed_fetch"


@dag(
    dag_id="news_ingest",
    schedule=CronDataIntervalTimetable(os.environ.get("INGEST_SCHEDULE", "*/15 * * * *"), timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=60),
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "retry_policy": common.TerminalErrors(),
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

        cfg = common.settings()
        url = common.db_url(cfg)
        database.migrate(url)
        sources = read_feed_list(cfg.feeds_file)
        print(f"feed list {cfg.feeds_file}: {len(sources)} feeds")
        force = bool((params or {}).get("force"))
        return stages.prepare_run(url, cfg, str(run_id), sources, common.now(), force=force)

    @task(pool=FETCH_POOL, map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def fetch(shard: int, run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages

        cfg = common.settings()
        return stages.fetch_shard(common.db_url(cfg), cfg, str(run_id), shard, common.now())

    @task(map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def parse(shard: int, run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages

        cfg = common.settings()
        return stages.parse_shard(common.db_url(cfg), cfg, str(run_id), shard)

    @task(map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def normalize(shard: int, run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages

        cfg = common.settings()
        return stages.normalize_shard(common.db_url(cfg), cfg, str(run_id), shard)

    @task
    def dedup(run_id: str | None = None) -> dict[str, Any]:
        from pipeline import stages

        return stages.dedup_run(common.db_url(common.settings()), str(run_id))

    @task
    def validate(run_id: str | None = None) -> dict[str, Any]:
        """Past the fail level it raises ValidationThresholdExceeded (terminal: no retry)."""
        from pipeline import stages

        cfg = common.settings()
        result = stages.validate_run(common.db_url(cfg), cfg, str(run_id), common.now())
        print(f"Data Docs: {result['data_docs']}")
        return result

    @task(trigger_rule="all_done", outlets=[common.ARTICLES])
    def load(run_id: str | None = None) -> dict[str, Any]:
        """Runs after a failed validate too: good and quarantined rows still land."""
        from pipeline import stages

        cfg = common.settings()
        return stages.load_run(common.db_url(cfg), cfg, str(run_id), common.now())

    @task(trigger_rule="all_done", retries=0)
    def report(run_id: str | None = None, ti: Any = None) -> dict[str, Any]:
        from pipeline import stages
        from pipeline.errors import EveryFeedFailed

        try:
            summary = stages.report_run(common.db_url(common.settings()), str(run_id), common.now())
        except EveryFeedFailed as exc:  # systemic (network down) or every body broken
            raise AirflowFailException(str(exc)) from exc
        for feed in summary["feeds"]:
            if feed["outcome"] in ("error", "disabled"):
                print(f"{feed['outcome']}: {feed['url']}: {feed['error']}")
        for feed in summary["attention"]:
            print(f"needs attention ({feed['status']}, {feed['error_streak']} errors): "
                  f"{feed['url']}: {feed['reason']}")
        if summary.get("validation_warning"):
            print(f"validation warning: {summary['validation_warning']}")
        print(f"Data Docs: {summary.get('data_docs')}")
        print(f"run {run_id} {summary['status']}: {summary['totals']}")
        failure = common.run_failure(summary, common.failed_tasks(ti))
        if failure:
            raise AirflowFailException(failure)  # terminal, and this leaf sets the run's state
        return {"status": summary["status"], "totals": summary["totals"],
                "validation_warning": summary.get("validation_warning")}

    shards = prepare()
    fetched = fetch.expand(shard=shards)
    parsed = parse.expand(shard=shards)
    normalized = normalize.expand(shard=shards)
    fetched >> parsed >> normalized
    normalized >> dedup() >> validate() >> load() >> report()


news_ingest()
