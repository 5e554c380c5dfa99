"""
### news_ingest

Fetches the feed list (`FEEDS_FILE`), then parses, normalizes, deduplicates,
validates (Great Expectations) and loads the entries into the news database.

* **prepare**: registers the feeds, picks those due at the run's time (the end of its
  data interval; each feed's next check follows its publication rate, with `Retry-After`,
  `Cache-Control`, `Expires`, `<ttl>` as floors and its error streak; trigger with
  `{"force": true}` to fetch all now), the most urgent first when more are due than
  `RUN_MAX_FEEDS`, and splits them into shards. A run for a past interval (a backfill, or
  a manual run whose interval ended more than `PAST_RUN_REPLAY_AFTER` ago) fetches
  nothing: it replays every body archived in its interval through today's stages, in
  fetch order (each feed's earlier bodies in runs of their own, its latest in this run's
  shards), idempotently. Migrations run at
  start-up (`make run`, the compose init service), never here.
* **ingest_shard** (mapped, one task per shard, in the `feed_fetch` pool): one pass over
  the shard, in memory: HTTP with conditional GET (each feed's outcome to `fetch_log`,
  each body to the archive), parse, normalize; the entries are staged once. Shards
  progress independently.
* **load**: the run's one decider and writer: dedup with each feed's identity rule,
  validation (quarantine), then the load in one transaction. It runs when every shard is
  done, also after a failed one: the other shards' entries land, and each feed the failed
  shard fetched but did not stage is its error in the run (`internal_error`), its state
  unmoved, so the next run fetches it again.
* **report**: the run summary, and the run's verdict. It runs whatever happened upstream
  and, being the only leaf, sets the run's state: it fails, naming the reason in its log,
  when validation failed past the fail level, when the batch was not loaded, when every
  feed failed (a systemic fault) or when any task failed; a validation warning is logged
  and returned, and the run stays green.

Errors the pipeline marks terminal (a breached threshold, bad settings, a database whose
migrations were not applied) fail their task at once (`TerminalErrors`); other failures
are retried first.

Tasks pass only shard numbers and counts through XCom; the entries move through the
staging table keyed by the run id (`news_run_id`: Airflow's for this DAG, prefixed with
the DAG id for the hot lane, whose runs at each quarter hour have this DAG's ids). The
code lives in `pipeline/` (`pipeline.tasks`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import news_common as common
from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

from pipeline.run_ids import HOT_INGEST_DAG, MAIN_INGEST_DAG  # a module of constants: no import cost

FETCH_POOL = "feed_fetch"

HOT_DOC = """
### news_ingest_hot

The hot lane: the same tasks as `news_ingest`, on its own, shorter schedule
(`HOT_INGEST_SCHEDULE`, every 3 minutes by default), covering only **hot** feeds: those
whose publication rate asks for a shorter interval than the main schedule's
(`HOT_FEED_INTERVAL`; `feed_health.hot`). A feed that publishes hundreds of stories an
hour through a 20-item window would lose most of them between two main runs; a hot run
is small (a few feeds), so it finishes well within its period and does not wait for a
long main run's fetches (only its load queues behind the load lock, one batch at a time).
"""


def news_ingest() -> None:
    @task
    def prepare(params: dict[str, Any] | None = None, data_interval_start: datetime | None = None,
                data_interval_end: datetime | None = None, dag_run: Any = None) -> list[int]:
        from pipeline import tasks
        from pipeline.feedlist import read_feed_list

        cfg = common.settings()
        run_id = common.news_run_id(dag_run)
        at = common.run_time(data_interval_end, dag_run)
        if data_interval_start is not None and common.is_past_run(at, dag_run, cfg.replay_after_s):
            start = common.run_time(data_interval_start)
            print(f"a past interval [{start}, {at}): its archived bodies go through today's stages")
            from pipeline import maintenance

            return maintenance.replay_interval(common.db_url(cfg), cfg, run_id, start, at, common.now)
        sources = read_feed_list(cfg.feeds_file)
        print(f"feed list {cfg.feeds_file}: {len(sources)} feeds")
        force = bool((params or {}).get("force"))
        lane = str((params or {}).get("lane") or "all")
        return tasks.prepare_run(common.db_url(cfg), cfg, run_id, sources, at, force=force, lane=lane)

    # multiple_outputs=False: a task returning a dict pushes it as one XCom, not one per key.
    @task(pool=FETCH_POOL, map_index_template="shard {{ task.op_kwargs['shard'] }}", multiple_outputs=False)
    def ingest_shard(shard: int, data_interval_end: datetime | None = None, dag_run: Any = None
                     ) -> dict[str, Any]:
        from pipeline import tasks

        cfg = common.settings()
        at = common.run_time(data_interval_end, dag_run)
        return tasks.ingest_shard(common.db_url(cfg), cfg, common.news_run_id(dag_run), shard, at).to_dict()

    @task(trigger_rule="all_done", outlets=[common.ARTICLES], multiple_outputs=False)
    def load(data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
        """Past the validation fail level it lands the good and quarantined rows, then raises
        ValidationThresholdExceeded (terminal: no retry). Its time (first seen, loaded, the
        future-date tolerance) is the run's, like the fetches'."""
        from pipeline import tasks

        cfg = common.settings()
        at = common.run_time(data_interval_end, dag_run)
        try:
            result = tasks.load_batch(common.db_url(cfg), cfg, common.news_run_id(dag_run), lambda: at,
                                      validation_child=True)
        finally:
            tasks.end_validation(cfg)
        print(f"Data Docs: {result.data_docs}")
        return result.to_dict()

    @task(trigger_rule="all_done", retries=0, multiple_outputs=False)
    def report(dag_run: Any = None, ti: Any = None) -> dict[str, Any]:
        from pipeline import tasks
        from pipeline.errors import EveryFeedFailed
        from pipeline.report_table import format_report

        failed = common.failed_tasks(ti)
        try:
            summary = tasks.report_run(common.db_url(common.settings()), common.news_run_id(dag_run),
                                       common.now(), failed)
        except EveryFeedFailed as exc:  # systemic (network down) or every body broken
            raise AirflowFailException(common.with_failed_tasks(str(exc), failed)) from exc
        failure = common.run_failure(summary, failed)
        # The Task SDK cannot set a run's note: the run's "News run" tab (plugins/) shows this too.
        print(format_report(summary, failure))
        if failure:
            raise AirflowFailException(failure)  # terminal, and this leaf sets the run's state
        return {"status": summary["status"], "totals": summary["totals"],
                "validation_warning": summary.get("validation_warning")}

    shards = prepare()
    ingest_shard.expand(shard=shards) >> load() >> report()


def _ingest_dag(dag_id: str, schedule: str, lane: str, doc: str, timeout: timedelta) -> Any:
    """The ingest DAG for one lane: the same tasks, its own schedule."""
    return dag(
        dag_id=dag_id,
        schedule=CronDataIntervalTimetable(schedule, timezone="UTC"),
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timeout,
        default_args={
            "retries": 2,
            "retry_delay": timedelta(seconds=20),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=10),
            "retry_policy": common.TerminalErrors(),
        },
        tags=["news"] + (["hot"] if lane == "hot" else []),
        doc_md=doc,
        params={
            "force": Param(False, type="boolean",
                           description="Fetch every feed of this lane now, even those whose next check is later."),
            "lane": Param(lane, enum=["all", "hot"],
                          description="all: every due feed; hot: only the feeds too fast for the main schedule."),
        },
    )(news_ingest)()


MAIN_SCHEDULE, HOT_SCHEDULE = common.schedules()
_ingest_dag(MAIN_INGEST_DAG, MAIN_SCHEDULE, "all", __doc__, timedelta(minutes=60))
_ingest_dag(HOT_INGEST_DAG, HOT_SCHEDULE, "hot", HOT_DOC, timedelta(minutes=10))
