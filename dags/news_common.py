"""What the news DAGs share: the articles asset and how tasks find settings and the database.

Imported by the DAG files (Airflow puts the DAG folder on sys.path); holds no DAG itself.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import Asset

# Emitted by news_ingest's load task; news_table_checks runs when it is updated.
ARTICLES = Asset(name="news_articles", uri="news://news_db/public/articles")


def now() -> datetime:
    return datetime.now(timezone.utc)


def settings() -> Any:
    from pipeline.config import Settings

    return Settings.from_env()


def db_url(current: Any) -> str:
    """The `news_db` Airflow connection when defined, else the pipeline's own default."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from pipeline.config import normalize_db_url
    from pipeline.database import database_url

    try:
        return normalize_db_url(Connection.get("news_db").get_uri())
    except AirflowNotFoundException:
        return database_url(current)
