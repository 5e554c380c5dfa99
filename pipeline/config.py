"""Settings: one typed object built from the environment and checked at start-up.

Every tunable of the pipeline is declared here and nowhere else, each exactly once:
its type, its bounds, its default and the environment variable it is read from.

* `Settings.from_env()` is the one path that reads the environment (or a mapping
  given in its place); `Settings(field=value, ...)` uses the defaults and the values
  given, nothing else, so code and tests that build settings are not steered by the
  process environment.
* Every path validates, `settings.replace(...)` included, and a bad value raises
  `ConfigError` naming its environment variable.

The news database's URL is *resolved* in one place,
`pipeline.database.resolve_database_url`; here are only the environment variables
it may come from (DATABASE_URL, AIRFLOW_CONN_NEWS_DB).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pipeline.dates import DEFAULT_FUTURE_TOLERANCE
from pipeline.errors import ConfigError

DEFAULT_TOLERANCE_HOURS = int(DEFAULT_FUTURE_TOLERANCE.total_seconds() // 3600)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_FEEDS_FILE = PROJECT_ROOT / "feeds" / "default.opml"
DEFAULT_USER_AGENT = (
    "news-pipeline/0.1 (+https://github.com/news-pipeline/news-pipeline; feed ingestion bot)"
)
MAX_SHARDS_CAP = 1024  # Airflow's map indexes: MAX_FETCH_SHARDS is capped here, not refused

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def airflow_conn_to_url(raw: str) -> str:
    """Turn an `AIRFLOW_CONN_*` value (URI or JSON form) into a libpq URL."""
    raw = raw.strip()
    if raw.startswith("{"):
        spec = json.loads(raw)
        user = spec.get("login") or ""
        password = spec.get("password") or ""
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        port = f":{spec['port']}" if spec.get("port") else ""
        return f"postgresql://{auth}{spec.get('host', '')}{port}/{spec.get('schema', '')}"
    return normalize_db_url(raw)


def normalize_db_url(url: str) -> str:
    """Accept the `postgres://` spelling Airflow uses and SQLAlchemy driver suffixes."""
    for prefix in ("postgres://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def _db_url(value: Any) -> Any:
    return normalize_db_url(value.strip()) if isinstance(value, str) and value.strip() else None


def _conn_url(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return airflow_conn_to_url(value)
    except (ValueError, AttributeError) as exc:  # bad JSON, or JSON that is no object
        raise ValueError(f"not a connection URI or JSON object: {exc}") from exc


def _networks(value: Any) -> Any:
    """CIDRs as text ("10.0.0.0/8, ::1/128") or an iterable of networks or CIDRs."""
    from pipeline.netguard import parse_networks

    if value is None or isinstance(value, str):
        return parse_networks(value)
    return tuple(ipaddress.ip_network(net, strict=False) if isinstance(net, str) else net
                 for net in value)


def _choice(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _ratio(default: float, alias: str) -> Any:
    return Field(default, ge=0.0, le=1.0, validation_alias=alias)


class _MappingEnv(EnvSettingsSource):
    """pydantic-settings' environment source over a mapping: `os.environ` or one `from_env` is given."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Only the documented names (not the field names validate_by_name would add); empty: unset.
        return {name: value for name, value in self._env.items() if name in _FIELD_OF and value != ""}


class Settings(BaseSettings):
    """Everything the pipeline can be told. Build with `Settings.from_env()`.

    Frozen (hashable, picklable: the CLI hands it to forked workers); derive changed
    settings with `replace()` or `allowing()`, which validate like `from_env`.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        case_sensitive=True,  # environment variable names exactly as documented
        env_ignore_empty=True,  # VAR= counts as unset: the default applies
        validate_default=True,
        validate_by_name=True,  # Settings(connect_timeout=...) as well as the env names
        validate_by_alias=True,
    )

    # The news database as DATABASE_URL names it (None: see resolve_database_url).
    database_url: Annotated[str | None, BeforeValidator(_db_url)] = Field(
        None, validation_alias="DATABASE_URL", repr=False)
    # The `news_db` Airflow connection from the environment, as a libpq URL; used when
    # DATABASE_URL is unset (outside Airflow: inside, the DAG asks Airflow itself).
    news_db_connection: Annotated[str | None, BeforeValidator(_conn_url)] = Field(
        None, validation_alias="AIRFLOW_CONN_NEWS_DB", repr=False)
    data_dir: Path = Field(PROJECT_ROOT / ".data", validation_alias="NEWS_DATA_DIR")
    feeds_file: Path = Field(DEFAULT_FEEDS_FILE, validation_alias="FEEDS_FILE")
    user_agent: str = Field(DEFAULT_USER_AGENT, min_length=1, validation_alias="FETCH_USER_AGENT")
    connect_timeout: float = Field(5.0, ge=0.1, le=120, validation_alias="FETCH_CONNECT_TIMEOUT")
    read_timeout: float = Field(20.0, ge=0.1, le=600, validation_alias="FETCH_READ_TIMEOUT")
    total_timeout: float = Field(60.0, ge=0.1, le=3600, validation_alias="FETCH_TOTAL_TIMEOUT")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, validation_alias="FETCH_MAX_BYTES")
    fetch_concurrency: int = Field(32, ge=1, validation_alias="FETCH_CONCURRENCY")
    per_host_concurrency: int = Field(2, ge=1, validation_alias="FETCH_PER_HOST")
    # Seconds between the starts of two requests to one host, across every worker (0: none;
    # FETCH_PER_HOST alone bounds a host's load, as in feed readers; raise it for a publisher
    # that asks for a crawl delay).
    host_delay_s: float = Field(0.0, ge=0.0, le=60, validation_alias="FETCH_HOST_DELAY")
    # A host whose fetches time out this many times in a row in one shard (a tarpit, or a
    # server that is down but accepts connections) is tried no more in that shard: its
    # other feeds fail at once, saying why (0: never cut off).
    host_timeout_cutoff: int = Field(3, ge=0, validation_alias="FETCH_HOST_TIMEOUTS")
    # CIDRs the SSRF guard lets through; comma-separated in the environment.
    allowed_networks: Annotated[tuple[Network, ...], NoDecode, BeforeValidator(_networks)] = Field(
        (), validation_alias="FETCH_ALLOWED_NETWORKS")
    # Bounds of a feed's polling interval, which follows its publication rate in between.
    min_interval_s: int = Field(120, ge=1, validation_alias="FETCH_MIN_INTERVAL")
    max_interval_s: int = Field(86_400, ge=1, validation_alias="FETCH_MAX_INTERVAL")
    # The first wait after a failed fetch; it doubles with each error in a row (up to the max).
    error_backoff_s: int = Field(600, ge=1, validation_alias="FETCH_ERROR_BACKOFF")
    # Share of the entries a feed serves that it may publish between two polls.
    window_fill: float = Field(0.33, gt=0.0, le=1.0, validation_alias="POLL_WINDOW_FILL")
    # A feed whose interval is shorter than this is hot: the hot DAG (HOT_INGEST_SCHEDULE)
    # polls it between the main runs. Keep it at the main schedule's period.
    hot_interval_s: int = Field(900, ge=1, validation_alias="HOT_FEED_INTERVAL")
    # The ingest DAGs' schedules (cron, read by the DAG file: `news_common.schedules`): the
    # main lane's data intervals, and the hot lane's.
    ingest_schedule: str = Field("*/15 * * * *", min_length=1, validation_alias="INGEST_SCHEDULE")
    hot_ingest_schedule: str = Field("*/3 * * * *", min_length=1, validation_alias="HOT_INGEST_SCHEDULE")
    # At most this many feeds in one run; past it, the most urgent go first (fairly across
    # hosts) and the rest are deferred to the next run.
    run_max_feeds: int = Field(50_000, ge=1, validation_alias="RUN_MAX_FEEDS")
    # A DAG run whose data interval ended longer ago than this (a backfill, a manual run
    # for a past interval) re-processes the bodies archived in its interval, fetching nothing.
    replay_after_s: int = Field(3600, ge=0, validation_alias="PAST_RUN_REPLAY_AFTER")
    max_entries_per_feed: int = Field(500, ge=1, validation_alias="FETCH_MAX_ENTRIES")
    redirect_confirmations: int = Field(3, ge=1, validation_alias="REDIRECT_CONFIRMATIONS")
    versions_per_feed_per_run: int = Field(50, ge=0, validation_alias="VERSIONS_PER_FEED_PER_RUN")
    archive_retention_days: int = Field(30, ge=1, validation_alias="ARCHIVE_RETENTION_DAYS")
    # History kept, by table (the maintenance DAG drops month partitions wholly older).
    fetch_log_retention_days: int = Field(180, ge=1, validation_alias="FETCH_LOG_RETENTION_DAYS")
    validation_retention_days: int = Field(90, ge=1, validation_alias="VALIDATION_RETENTION_DAYS")
    duplicates_retention_days: int = Field(365, ge=1, validation_alias="DUPLICATES_RETENTION_DAYS")
    versions_retention_days: int = Field(365, ge=1, validation_alias="VERSIONS_RETENTION_DAYS")
    # Month partitions created ahead of the current month by the maintenance DAG.
    partition_months_ahead: int = Field(3, ge=1, le=24, validation_alias="PARTITION_MONTHS_AHEAD")
    # Feeds per shard task: each shard pays a fixed cost (connections, an HTTP client and its
    # threads, a handful of statements; in the DAG a task's start-up, about half a second of
    # CPU), so fewer, larger shards run faster: 250 gives the 1,000-feed bench 4 shards, one
    # per slot of the default `feed_fetch` pool (with 100, its 10 tasks took the DAG 24.0 s
    # against 20.9 s, the CLI's time the same). A shard's memory does not grow with its size.
    # The CLI asks for at least 5 shards per worker, in a multiple of its workers
    # (`tasks.shard_count`): its shards cost no task start, and small ones balance the work.
    shard_size: int = Field(250, ge=1, validation_alias="FEEDS_PER_SHARD")
    max_shards: Annotated[int, AfterValidator(lambda n: min(n, MAX_SHARDS_CAP))] = Field(
        256, ge=1, validation_alias="MAX_FETCH_SHARDS")
    # Processes the CLI parses and normalizes shards on (the DAG maps shards as tasks and
    # ignores it). One default for every path: this machine's CPU count.
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, validation_alias="INGEST_WORKERS")
    quarantine_warn_ratio: float = _ratio(0.1, "QUARANTINE_WARN_RATIO")
    quarantine_fail_ratio: float = _ratio(0.5, "QUARANTINE_FAIL_RATIO")
    feed_quarantine_warn_ratio: float = _ratio(0.2, "FEED_QUARANTINE_WARN_RATIO")
    feed_quarantine_fail_ratio: float = _ratio(0.9, "FEED_QUARANTINE_FAIL_RATIO")
    quarantine_min_entries: int = Field(20, ge=0, validation_alias="QUARANTINE_MIN_ENTRIES")
    max_undated_share: float = _ratio(0.5, "MAX_UNDATED_SHARE")
    max_title_chars: int = Field(1000, ge=1, validation_alias="MAX_TITLE_CHARS")
    data_docs_keep: int = Field(30, ge=1, validation_alias="DATA_DOCS_KEEP")
    # Which runs get a Data Docs page: "failures" (a run with a failed expectation: rendering
    # the site is most of GX's cost for a small run; every run's results are in SQL and the
    # News view's Quality page) or "always".
    data_docs: Annotated[Literal["failures", "always"], BeforeValidator(_choice)] = Field(
        "failures", validation_alias="DATA_DOCS")
    future_tolerance_hours: int = Field(DEFAULT_TOLERANCE_HOURS, ge=0, validation_alias="FUTURE_TOLERANCE_HOURS")
    # "auto": the lxml fast path, feedparser for what it refuses; "feedparser": feedparser only.
    feed_parser: Annotated[Literal["auto", "feedparser"], BeforeValidator(_choice)] = Field(
        "auto", validation_alias="FEED_PARSER")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(exc) from exc

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Direct construction reads only the values given: the environment is `from_env`'s."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `env` (default: the process environment), then `overrides` by field name."""
        found = _MappingEnv(cls, os.environ if env is None else env)()
        return cls(**{**{_FIELD_OF[key]: value for key, value in found.items()}, **overrides})

    def replace(self, **changes: Any) -> Settings:
        """These settings with `changes` (by field name), validated like the originals."""
        return type(self)(**{**dict(self), **changes})

    def allowing(self, *cidrs: str) -> Settings:
        """These settings with more networks opened to the fetcher (e.g. loopback for a demo)."""
        from pipeline.netguard import parse_networks

        return self.replace(allowed_networks=self.allowed_networks + parse_networks(",".join(cidrs)))


ENV_NAMES: dict[str, str] = {name: str(field.validation_alias) for name, field in Settings.model_fields.items()}
_FIELD_OF = {env: name for name, env in ENV_NAMES.items()}


def _config_error(exc: ValidationError) -> ConfigError:
    """One ConfigError for every bad value, each named by its environment variable."""
    problems = []
    for error in exc.errors(include_url=False):
        key = str(error["loc"][0]) if error["loc"] else ""
        name = _FIELD_OF.get(key, key)
        if name in ENV_NAMES:
            shown = "" if not Settings.model_fields[name].repr else f", got {error['input']!r}"  # secrets
            problems.append(f"{ENV_NAMES[name]} ({name}): {error['msg']}{shown}")
        else:
            problems.append(f"{key}: {error['msg']}")
    return ConfigError("invalid settings: " + "; ".join(problems))
