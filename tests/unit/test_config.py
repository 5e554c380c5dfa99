"""Settings: each environment variable reaches its field, bad values are refused by name,
the defaults are the README's, and the news database's URL is resolved in one place."""

from __future__ import annotations

import ipaddress
import os
import pickle
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline import database
from pipeline.config import (
    DEFAULT_FEEDS_FILE,
    DEFAULT_USER_AGENT,
    ENV_NAMES,
    PROJECT_ROOT,
    Settings,
)
from pipeline.errors import ConfigError

# field: (environment variable, a value as text, the value the field then holds)
MAPPING = {
    "database_url": ("DATABASE_URL", "postgres://u@db:5432/news", "postgresql://u@db:5432/news"),
    "news_db_connection": ("AIRFLOW_CONN_NEWS_DB", "postgresql+psycopg2://a@h/n", "postgresql://a@h/n"),
    "data_dir": ("NEWS_DATA_DIR", "/srv/news", Path("/srv/news")),
    "feeds_file": ("FEEDS_FILE", "/srv/feeds.opml", Path("/srv/feeds.opml")),
    "user_agent": ("FETCH_USER_AGENT", "bot/2", "bot/2"),
    "connect_timeout": ("FETCH_CONNECT_TIMEOUT", "1.5", 1.5),
    "read_timeout": ("FETCH_READ_TIMEOUT", "7", 7.0),
    "total_timeout": ("FETCH_TOTAL_TIMEOUT", "90", 90.0),
    "max_body_bytes": ("FETCH_MAX_BYTES", "2048", 2048),
    "fetch_concurrency": ("FETCH_CONCURRENCY", "4", 4),
    "per_host_concurrency": ("FETCH_PER_HOST", "3", 3),
    "host_delay_s": ("FETCH_HOST_DELAY", "0.5", 0.5),
    "host_timeout_cutoff": ("FETCH_HOST_TIMEOUTS", "5", 5),
    "allowed_networks": ("FETCH_ALLOWED_NETWORKS", "127.0.0.0/8, ::1/128",
                         (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))),
    "min_interval_s": ("FETCH_MIN_INTERVAL", "60", 60),
    "max_interval_s": ("FETCH_MAX_INTERVAL", "3600", 3600),
    "error_backoff_s": ("FETCH_ERROR_BACKOFF", "300", 300),
    "window_fill": ("POLL_WINDOW_FILL", "0.5", 0.5),
    "hot_interval_s": ("HOT_FEED_INTERVAL", "300", 300),
    "ingest_schedule": ("INGEST_SCHEDULE", "0 * * * *", "0 * * * *"),
    "hot_ingest_schedule": ("HOT_INGEST_SCHEDULE", "*/5 * * * *", "*/5 * * * *"),
    "run_max_feeds": ("RUN_MAX_FEEDS", "100", 100),
    "replay_after_s": ("PAST_RUN_REPLAY_AFTER", "0", 0),
    "max_entries_per_feed": ("FETCH_MAX_ENTRIES", "10", 10),
    "redirect_confirmations": ("REDIRECT_CONFIRMATIONS", "1", 1),
    "versions_per_feed_per_run": ("VERSIONS_PER_FEED_PER_RUN", "0", 0),
    "archive_retention_days": ("ARCHIVE_RETENTION_DAYS", "7", 7),
    "fetch_log_retention_days": ("FETCH_LOG_RETENTION_DAYS", "30", 30),
    "validation_retention_days": ("VALIDATION_RETENTION_DAYS", "14", 14),
    "duplicates_retention_days": ("DUPLICATES_RETENTION_DAYS", "60", 60),
    "versions_retention_days": ("VERSIONS_RETENTION_DAYS", "730", 730),
    "partition_months_ahead": ("PARTITION_MONTHS_AHEAD", "6", 6),
    "shard_size": ("FEEDS_PER_SHARD", "10", 10),
    "max_shards": ("MAX_FETCH_SHARDS", "16", 16),
    "workers": ("INGEST_WORKERS", "3", 3),
    "quarantine_warn_ratio": ("QUARANTINE_WARN_RATIO", "0.25", 0.25),
    "quarantine_fail_ratio": ("QUARANTINE_FAIL_RATIO", "1", 1.0),
    "feed_quarantine_warn_ratio": ("FEED_QUARANTINE_WARN_RATIO", "0", 0.0),
    "feed_quarantine_fail_ratio": ("FEED_QUARANTINE_FAIL_RATIO", "0.75", 0.75),
    "quarantine_min_entries": ("QUARANTINE_MIN_ENTRIES", "0", 0),
    "max_undated_share": ("MAX_UNDATED_SHARE", "0.3", 0.3),
    "max_title_chars": ("MAX_TITLE_CHARS", "200", 200),
    "data_docs_keep": ("DATA_DOCS_KEEP", "5", 5),
    "data_docs": ("DATA_DOCS", " Always ", "always"),
    "future_tolerance_hours": ("FUTURE_TOLERANCE_HOURS", "48", 48),
    "feed_parser": ("FEED_PARSER", " FeedParser ", "feedparser"),
}


def test_every_field_has_its_environment_variable():
    assert ENV_NAMES == {field: variable for field, (variable, _, _) in MAPPING.items()}


@pytest.mark.parametrize("field", sorted(MAPPING))
def test_each_variable_sets_its_field_and_only_it(field):
    variable, raw, expected = MAPPING[field]
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, field) == expected
    defaults = Settings()
    assert {f: getattr(settings, f) for f in ENV_NAMES if f != field} == \
        {f: getattr(defaults, f) for f in ENV_NAMES if f != field}


def test_the_field_names_are_not_environment_variables():
    assert Settings.from_env({"fetch_concurrency": "3", "feed_concurrency": "x"}).fetch_concurrency == 32


def test_an_empty_variable_counts_as_unset():
    assert Settings.from_env({variable: "" for variable in ENV_NAMES.values()}) == Settings()


@pytest.mark.parametrize("variable, raw", [
    ("FETCH_CONNECT_TIMEOUT", "0"),
    ("FETCH_CONNECT_TIMEOUT", "121"),
    ("FETCH_READ_TIMEOUT", "601"),
    ("FETCH_TOTAL_TIMEOUT", "soon"),
    ("FETCH_MAX_BYTES", "1023"),
    ("FETCH_MAX_BYTES", "1.5"),
    ("FETCH_CONCURRENCY", "0"),
    ("FETCH_PER_HOST", "-1"),
    ("FETCH_ALLOWED_NETWORKS", "10.0.0.0/8,not-a-network"),
    ("FETCH_MIN_INTERVAL", "0"),
    ("FETCH_MAX_INTERVAL", "0"),
    ("FETCH_MAX_ENTRIES", "0"),
    ("REDIRECT_CONFIRMATIONS", "0"),
    ("VERSIONS_PER_FEED_PER_RUN", "-1"),
    ("ARCHIVE_RETENTION_DAYS", "0"),
    ("FETCH_LOG_RETENTION_DAYS", "0"),
    ("VERSIONS_RETENTION_DAYS", "-1"),
    ("PARTITION_MONTHS_AHEAD", "0"),
    ("PARTITION_MONTHS_AHEAD", "25"),
    ("FEEDS_PER_SHARD", "0"),
    ("MAX_FETCH_SHARDS", "0"),
    ("INGEST_WORKERS", "0"),
    ("QUARANTINE_WARN_RATIO", "1.1"),
    ("QUARANTINE_FAIL_RATIO", "-0.1"),
    ("FEED_QUARANTINE_WARN_RATIO", "nan"),
    ("FEED_QUARANTINE_FAIL_RATIO", "half"),
    ("QUARANTINE_MIN_ENTRIES", "-1"),
    ("MAX_UNDATED_SHARE", "2"),
    ("MAX_TITLE_CHARS", "0"),
    ("DATA_DOCS_KEEP", "0"),
    ("FUTURE_TOLERANCE_HOURS", "-1"),
    ("FEED_PARSER", "lxml"),
    ("AIRFLOW_CONN_NEWS_DB", '{"login": "u", "password": "s3cret"'),
])
def test_a_bad_value_is_a_config_error_naming_its_variable(variable, raw):
    with pytest.raises(ConfigError, match=re.escape(variable)):
        Settings.from_env({variable: raw})


def test_a_bad_secret_is_not_repeated_in_the_error():
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"AIRFLOW_CONN_NEWS_DB": '{"password": "s3cret"'})
    assert "s3cret" not in str(raised.value)
    assert "s3cret" not in repr(Settings.from_env({"DATABASE_URL": "postgresql://u:s3cret@h/n"}))


def test_every_bad_value_is_named_at_once():
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"FETCH_CONCURRENCY": "0", "FEED_PARSER": "lxml"})
    assert "FETCH_CONCURRENCY" in str(raised.value) and "FEED_PARSER" in str(raised.value)


def test_the_shard_count_is_capped_not_refused():
    assert Settings.from_env({"MAX_FETCH_SHARDS": "5000"}).max_shards == 1024


def test_the_airflow_connection_json_form_becomes_a_url():
    raw = '{"conn_type": "postgres", "login": "u", "password": "p", "host": "h", "port": 5433, "schema": "n"}'
    assert Settings.from_env({"AIRFLOW_CONN_NEWS_DB": raw}).news_db_connection == "postgresql://u:p@h:5433/n"


def _readme_defaults() -> dict[str, str]:
    """`variable: default` from the README's configuration table (`A` / `B` rows split)."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    found = {}
    for row in table.splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        variables = re.findall(r"`([A-Z_]+)`", cells[0])
        values = [v.strip() for v in re.sub(r" s$", "", cells[1]).split(" / ")]
        if len(values) == 1:
            values *= len(variables)
        assert len(values) == len(variables), row
        found.update(zip(variables, values, strict=True))
    return found


def _as_documented(field: str, value: object) -> str:
    if field in ("database_url", "news_db_connection"):
        return {"database_url": "embedded server", "news_db_connection": "unset"}[field] if value is None else "?"
    if field == "allowed_networks":
        return "none" if value == () else "?"
    if field == "workers":
        return "CPU count" if value == (os.cpu_count() or 1) else "?"
    if field == "user_agent":
        return "`news-pipeline/0.1 (...)`" if value == DEFAULT_USER_AGENT else "?"
    if isinstance(value, Path):
        return f"`{value.relative_to(PROJECT_ROOT)}`"
    if field in ("feed_parser", "data_docs", "ingest_schedule", "hot_ingest_schedule"):
        return f"`{value}`"
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_the_defaults_are_the_readmes():
    documented = _readme_defaults()
    defaults = Settings()
    assert {variable: documented.get(variable) for variable in ENV_NAMES.values()} == \
        {variable: _as_documented(field, getattr(defaults, field)) for field, variable in ENV_NAMES.items()}


def test_defaults_are_the_same_by_every_path(monkeypatch):
    for variable in ENV_NAMES.values():
        monkeypatch.delenv(variable, raising=False)
    assert Settings() == Settings.from_env() == Settings.from_env({})
    assert Settings().workers == (os.cpu_count() or 1)
    assert Settings().feeds_file == DEFAULT_FEEDS_FILE


def test_only_from_env_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("FETCH_CONCURRENCY", "3")
    assert Settings().fetch_concurrency == 32
    assert Settings(per_host_concurrency=1).fetch_concurrency == 32
    assert Settings.from_env().fetch_concurrency == 3
    assert Settings.from_env({}).fetch_concurrency == 32  # a mapping given replaces the environment


def test_overrides_win_over_the_environment_and_are_checked():
    settings = Settings.from_env({"FETCH_CONCURRENCY": "3", "FETCH_PER_HOST": "1"}, fetch_concurrency=5)
    assert (settings.fetch_concurrency, settings.per_host_concurrency) == (5, 1)
    with pytest.raises(ConfigError, match="FETCH_CONCURRENCY"):
        Settings.from_env({}, fetch_concurrency=0)
    with pytest.raises(ConfigError, match="no_such_setting"):
        Settings.from_env({}, no_such_setting=1)


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="FETCH_PER_HOST"):
        Settings(per_host_concurrency=0)


def test_replace_changes_a_copy_and_validates():
    settings = Settings(data_dir=Path("/tmp/x"), fetch_concurrency=4)
    changed = settings.replace(read_timeout=3, feed_parser="FEEDPARSER")
    assert (changed.read_timeout, changed.feed_parser) == (3.0, "feedparser")
    assert (changed.data_dir, changed.fetch_concurrency) == (Path("/tmp/x"), 4)
    assert (settings.read_timeout, settings.feed_parser) == (20.0, "auto")
    with pytest.raises(ConfigError, match="FETCH_READ_TIMEOUT"):
        settings.replace(read_timeout=0)
    with pytest.raises(ConfigError, match="MAX_FETCH_SHARDS"):
        settings.replace(max_shards=0)
    assert settings.replace(max_shards=4096).max_shards == 1024
    with pytest.raises(ConfigError, match="connect_timeout_s"):
        settings.replace(connect_timeout_s=1)
    assert settings.replace() == settings


def test_allowing_adds_networks():
    settings = Settings(allowed_networks=("10.0.0.0/8",)).allowing("127.0.0.1/32", "::1/128")
    assert settings.allowed_networks == tuple(
        ipaddress.ip_network(n) for n in ("10.0.0.0/8", "127.0.0.1/32", "::1/128"))
    with pytest.raises(ValueError):
        settings.allowing("nonsense")


def test_settings_are_frozen_hashable_and_picklable():
    settings = Settings.from_env({"FETCH_ALLOWED_NETWORKS": "127.0.0.0/8", "DATABASE_URL": "postgresql://h/n"})
    with pytest.raises(ValidationError):
        settings.fetch_concurrency = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert hash(settings) == hash(Settings.from_env({"FETCH_ALLOWED_NETWORKS": "127.0.0.0/8",
                                                     "DATABASE_URL": "postgresql://h/n"}))


def test_the_database_url_is_resolved_in_one_order(monkeypatch, tmp_path):
    monkeypatch.setattr(database, "embedded_server_url", lambda data_dir: f"embedded:{data_dir}")
    both = Settings.from_env({"DATABASE_URL": "postgres://env/db", "AIRFLOW_CONN_NEWS_DB": "postgres://conn/db"})
    assert database.resolve_database_url(both, lambda: "postgres://airflow/db") == "postgresql://airflow/db"
    assert database.resolve_database_url(both, lambda: None) == "postgresql://env/db"
    assert database.resolve_database_url(both) == "postgresql://env/db"
    conn_only = Settings.from_env({"AIRFLOW_CONN_NEWS_DB": "postgres://conn/db"})
    assert database.resolve_database_url(conn_only) == "postgresql://conn/db"
    nothing = Settings(data_dir=tmp_path)
    assert database.resolve_database_url(nothing, lambda: None) == f"embedded:{tmp_path}"
