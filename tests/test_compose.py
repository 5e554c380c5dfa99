"""docker-compose.yml cannot run here (no Docker engine): check what can be checked."""

import re

import yaml

from pipeline.config import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
README = PROJECT_ROOT / "README.md"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_compose_defines_the_services_the_readme_names():
    services = set(compose()["services"])
    named = set(re.findall(r"`((?:airflow|news|redis|metadata)[a-z-]*)`", readme_section("docker compose")))
    named -= {"news_db"}
    assert named, "the README names the compose services"
    assert named <= services
    assert {"news-db", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "airflow-worker"} <= services


def test_airflow_services_use_the_project_image_built_from_the_dockerfile():
    services = compose()["services"]
    for name, service in services.items():
        if name.startswith("airflow-"):
            assert service["build"] == "." and service["image"] == "news-pipeline-airflow:latest"
            env = service["environment"]
            assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env
            assert env["AIRFLOW_CONN_NEWS_DB"].startswith("postgresql://")
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}", dockerfile, re.M)
    assert "ARG AIRFLOW_VERSION=3.3" in dockerfile and "requirements.lock" in dockerfile


def test_compose_sets_the_variables_the_readme_documents():
    env = compose()["services"]["airflow-scheduler"]["environment"]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme_section("Configuration")))
    for variable in documented - {"DATABASE_URL", "NEWS_DATA_DIR", "FETCH_USER_AGENT",
                                  "FETCH_CONNECT_TIMEOUT", "FETCH_READ_TIMEOUT", "FETCH_TOTAL_TIMEOUT",
                                  "MAX_FETCH_SHARDS", "FETCH_POOL_SLOTS", "QUARANTINE_MIN_ENTRIES",
                                  "FUTURE_TOLERANCE_HOURS", "INGEST_WORKERS", "FETCH_PER_HOST",
                                  "FETCH_ALLOWED_NETWORKS", "FETCH_MIN_INTERVAL", "FETCH_MAX_INTERVAL",
                                  "FETCH_MAX_ENTRIES", "REDIRECT_CONFIRMATIONS", "ARCHIVE_RETENTION_DAYS"}:
        assert variable in env, f"{variable} is documented but not passed to the containers"
    compose_text = COMPOSE.read_text()
    for variable in re.findall(r"`([A-Z][A-Z0-9_]+)`", readme_section("docker compose")):
        assert variable in compose_text, variable


def test_ui_port_and_pool_match_make_run():
    services = compose()["services"]
    assert "8080:8080" in services["airflow-apiserver"]["ports"]
    init = " ".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init and "pools set feed_fetch" in init and "pipeline migrate" in init
