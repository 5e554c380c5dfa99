"""Settings: one typed object built from the environment and checked at start-up.

Every tunable of the pipeline is read here and nowhere else. Secrets (the
database URL) come from the environment or, in Airflow, from the `news_db`
connection, which the DAG resolves and passes in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.dates import DEFAULT_FUTURE_TOLERANCE
from pipeline.errors import ConfigError

DEFAULT_TOLERANCE_HOURS = int(DEFAULT_FUTURE_TOLERANCE.total_seconds() // 3600)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_FEEDS_FILE = PROJECT_ROOT / "feeds" / "default.opml"
DEFAULT_USER_AGENT = (
    "news-pipeline/0.1 (+https://github.com/news-pipeline/news-pipeline; feed ingestion bot)"
)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be within [{lo}, {hi}], got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple:
    from pipeline.netguard import parse_networks

    try:
        return parse_networks(env.get(name))
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated CIDRs: {exc}") from exc


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


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline can be told. Build with `Settings.from_env()`."""

    database_url: str | None = None
    data_dir: Path = PROJECT_ROOT / ".data"
    feeds_file: Path = DEFAULT_FEEDS_FILE
    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0
    max_body_bytes: int = 10 * 1024 * 1024
    fetch_concurrency: int = 32
    per_host_concurrency: int = 2
    allowed_networks: tuple = ()  # CIDRs the SSRF guard lets through (FETCH_ALLOWED_NETWORKS)
    min_interval_s: int = 600
    max_interval_s: int = 86_400
    max_entries_per_feed: int = 500
    redirect_confirmations: int = 3
    versions_per_feed_per_run: int = 50
    archive_retention_days: int = 30
    shard_size: int = 50
    max_shards: int = 256
    workers: int = 1
    quarantine_warn_ratio: float = 0.1
    quarantine_fail_ratio: float = 0.5
    feed_quarantine_warn_ratio: float = 0.2
    feed_quarantine_fail_ratio: float = 0.9
    quarantine_min_entries: int = 20
    max_undated_share: float = 0.5
    max_title_chars: int = 1000
    data_docs_keep: int = 30
    future_tolerance_hours: int = DEFAULT_TOLERANCE_HOURS
    feed_parser: str = "auto"  # "auto": the lxml fast path, feedparser for what it refuses

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        database_url = env.get("DATABASE_URL") or None
        if database_url is None and env.get("AIRFLOW_CONN_NEWS_DB"):
            database_url = airflow_conn_to_url(env["AIRFLOW_CONN_NEWS_DB"])
        settings = cls(
            database_url=normalize_db_url(database_url) if database_url else None,
            data_dir=Path(env.get("NEWS_DATA_DIR") or PROJECT_ROOT / ".data"),
            feeds_file=Path(env.get("FEEDS_FILE") or DEFAULT_FEEDS_FILE),
            user_agent=env.get("FETCH_USER_AGENT") or DEFAULT_USER_AGENT,
            connect_timeout=_float(env, "FETCH_CONNECT_TIMEOUT", 5.0, 0.1, 120),
            read_timeout=_float(env, "FETCH_READ_TIMEOUT", 20.0, 0.1, 600),
            total_timeout=_float(env, "FETCH_TOTAL_TIMEOUT", 60.0, 0.1, 3600),
            max_body_bytes=_int(env, "FETCH_MAX_BYTES", 10 * 1024 * 1024, minimum=1024),
            fetch_concurrency=_int(env, "FETCH_CONCURRENCY", 32, minimum=1),
            per_host_concurrency=_int(env, "FETCH_PER_HOST", 2, minimum=1),
            allowed_networks=_networks(env, "FETCH_ALLOWED_NETWORKS"),
            min_interval_s=_int(env, "FETCH_MIN_INTERVAL", 600, minimum=1),
            max_interval_s=_int(env, "FETCH_MAX_INTERVAL", 86_400, minimum=1),
            max_entries_per_feed=_int(env, "FETCH_MAX_ENTRIES", 500, minimum=1),
            redirect_confirmations=_int(env, "REDIRECT_CONFIRMATIONS", 3, minimum=1),
            versions_per_feed_per_run=_int(env, "VERSIONS_PER_FEED_PER_RUN", 50),
            archive_retention_days=_int(env, "ARCHIVE_RETENTION_DAYS", 30, minimum=1),
            shard_size=_int(env, "FEEDS_PER_SHARD", 50, minimum=1),
            max_shards=min(_int(env, "MAX_FETCH_SHARDS", 256, minimum=1), 1024),
            quarantine_warn_ratio=_float(env, "QUARANTINE_WARN_RATIO", 0.1, 0.0, 1.0),
            quarantine_fail_ratio=_float(env, "QUARANTINE_FAIL_RATIO", 0.5, 0.0, 1.0),
            feed_quarantine_warn_ratio=_float(env, "FEED_QUARANTINE_WARN_RATIO", 0.2, 0.0, 1.0),
            feed_quarantine_fail_ratio=_float(env, "FEED_QUARANTINE_FAIL_RATIO", 0.9, 0.0, 1.0),
            max_undated_share=_float(env, "MAX_UNDATED_SHARE", 0.5, 0.0, 1.0),
            max_title_chars=_int(env, "MAX_TITLE_CHARS", 1000, minimum=1),
            data_docs_keep=_int(env, "DATA_DOCS_KEEP", 30, minimum=1),
            workers=_int(env, "INGEST_WORKERS", os.cpu_count() or 1, minimum=1),
            quarantine_min_entries=_int(env, "QUARANTINE_MIN_ENTRIES", 20),
            future_tolerance_hours=_int(env, "FUTURE_TOLERANCE_HOURS", DEFAULT_TOLERANCE_HOURS),
            feed_parser=_choice(env, "FEED_PARSER", "auto", ("auto", "feedparser")),
        )
        return replace(settings, **overrides) if overrides else settings  # type: ignore[arg-type]

    def allowing(self, *cidrs: str) -> Settings:
        """These settings with more networks opened to the fetcher (e.g. loopback for a demo)."""
        from pipeline.netguard import parse_networks

        return replace(self, allowed_networks=self.allowed_networks + parse_networks(",".join(cidrs)))
