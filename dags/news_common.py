"""What the news DAGs share: the articles asset, how tasks find settings and the
database, which errors are worth a retry, and when a run must show failed.

Imported by the DAG files (Airflow puts the DAG folder on sys.path); holds no DAG itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset
from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

# Emitted by news_ingest's load task; news_table_checks runs when it is updated.
ARTICLES = Asset(name="news_articles", uri="news://news_db/public/articles")


def now() -> datetime:
    return datetime.now(UTC)


def news_run_id(dag_run: Any) -> str:
    """This DAG run's id in the news database (`pipeline.run_ids`: the two ingest DAGs
    share Airflow's run ids at every quarter hour)."""
    from pipeline.run_ids import ingest_run_id

    return ingest_run_id(str(dag_run.dag_id), str(dag_run.run_id))


def is_past_run(at: datetime, dag_run: Any, replay_after_s: int) -> bool:
    """A backfill, or a run whose interval ended more than `replay_after_s` ago: it replays
    the interval's archived bodies instead of fetching today's."""
    run_type = str(getattr(dag_run, "run_type", "") or "")
    return run_type.endswith("backfill") or (now() - at).total_seconds() > replay_after_s


def run_time(data_interval_end: datetime | None, dag_run: Any = None) -> datetime:
    """A run's time, not the wall clock's: the end of its data interval (a scheduled run,
    a backfill), else when it was triggered (a manual run has no data interval)."""
    instant = data_interval_end if data_interval_end is not None else getattr(dag_run, "run_after", None)
    if instant is None:
        return now()
    return datetime.fromtimestamp(instant.timestamp(), UTC)  # a plain datetime, not pendulum's


def settings() -> Any:
    """The task's settings: `Settings.from_env()`, the same as the CLI's."""
    from pipeline.config import Settings

    return Settings.from_env()


def schedules() -> tuple[str, str]:
    """The main and the hot lane's schedules, for the DAG file: INGEST_SCHEDULE and
    HOT_INGEST_SCHEDULE (their defaults are `Settings`'), read alone, so that a bad value of
    another setting fails the tasks that read it, naming it, not the DAG file's import."""
    import os

    from pipeline.config import ENV_NAMES, Settings

    names = (ENV_NAMES["ingest_schedule"], ENV_NAMES["hot_ingest_schedule"])
    found = Settings.from_env({name: os.environ[name] for name in names if name in os.environ})
    return found.ingest_schedule, found.hot_ingest_schedule


def db_url(current: Any) -> str:
    """The news database: `resolve_database_url`, told how to look up the `news_db` Airflow
    connection, which it tries first (then DATABASE_URL, then the embedded server)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from pipeline.database import resolve_database_url

    def news_db() -> str | None:
        try:
            return str(Connection.get("news_db").get_uri())
        except AirflowNotFoundException:
            return None

    return resolve_database_url(current, news_db)


class TerminalErrors(RetryPolicy):
    """Fail a task at once on the pipeline's terminal errors (a `PipelineError` that is not
    `transient`: a breached quality threshold, bad settings), which a retry would only
    repeat. Anything else keeps the task's retries."""

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int,
                 context: Any = None) -> RetryDecision:
        from pipeline.errors import PipelineError

        if isinstance(exception, PipelineError) and not exception.transient:
            return RetryDecision.fail(f"{type(exception).__name__} is terminal: a retry repeats it")
        return RetryDecision.default()


def failed_tasks(ti: Any) -> list[str]:
    """The other tasks of this run that failed (`task` or `task_<map index>`), read through
    the Task SDK (a task has no access to the metadata database)."""
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    return sorted(task for task, state in states.items()
                  if state == "failed" and task != ti.task_id)


def run_failure(summary: dict[str, Any], failed: list[str]) -> str | None:
    """Why a run must end failed, or None: its recorded status is not `ok` (validation past
    the fail level, nothing loaded, or tasks failed) or one of its tasks failed. A warning
    is no failure."""
    reasons = []
    if summary["status"] == "validation_failed":
        reasons.append(f"validation failed: {summary['validation_error']}")
    elif summary["status"] == "tasks_failed":
        if not failed:  # a task of an earlier try (its feeds lost), not one of this run's now
            reasons.append(f"run tasks_failed: {summary['totals'].get('lost_to_tasks')} feeds lost to failed tasks")
    elif summary["status"] != "ok":
        reasons.append(f"run {summary['status']}: the batch was not loaded")
    return with_failed_tasks("; ".join(reasons), failed) or None


def with_failed_tasks(reason: str, failed: list[str]) -> str:
    """`reason`, and the run's failed tasks, if any."""
    return "; ".join(filter(None, [reason, "failed tasks: " + ", ".join(failed) if failed else ""]))
