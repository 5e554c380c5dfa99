"""Airflow plugin: the News view (feeds, runs, stories, quarantine, quality) in Airflow's UI.

Its FastAPI app (news_ui.app) is mounted on Airflow's API server under /news: no second
web server. Two external views show it in the UI, inside an iframe: "News" in the
navigation, and "News run" as a tab of every DAG run (the ingest run's summary, failing
feeds, warnings and data quality). Only users logged in to Airflow whom the auth manager
lets read news_ingest's runs see it.

Set AIRFLOW__CORE__PLUGINS_FOLDER to this folder (scripts/run_airflow.sh does).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from news_ui.app import create_app

URL_PREFIX = "/news"


class NewsViewPlugin(AirflowPlugin):
    name = "news_view"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "News"}]
    external_views = [
        {"name": "News", "href": f"{URL_PREFIX}/feeds", "destination": "nav", "url_route": "news",
         "nav_top_level": True, "icon": f"{URL_PREFIX}/static/icon.svg"},
        # {DAG_ID} and {RUN_ID} are filled in by the UI (URL-encoded).
        {"name": "News run", "href": URL_PREFIX + "/dag-runs/{DAG_ID}/{RUN_ID}", "destination": "dag_run",
         "url_route": "news-run", "icon": f"{URL_PREFIX}/static/icon.svg"},
    ]
