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


def test_compose_variables_and_the_readme_agree():
    compose_text = COMPOSE.read_text()
    # Every variable the README's compose section names is used by the compose file...
    for variable in re.findall(r"`([A-Z][A-Z0-9_]+)`", readme_section("docker compose")):
        assert variable in compose_text, variable
    # ...and every variable the compose file reads from the host is documented.
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", README.read_text()))
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", compose_text))
    assert interpolated and interpolated <= documented, interpolated - documented
    # The pipeline settings passed to the containers are ones the README documents.
    env = compose()["services"]["airflow-scheduler"]["environment"]
    pipeline_settings = {k for k in env if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    assert pipeline_settings <= documented, pipeline_settings - documented


def test_ui_port_and_pool_match_make_run():
    services = compose()["services"]
    assert "8080:8080" in services["airflow-apiserver"]["ports"]
    init = " ".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init and "pools set feed_fetch" in init and "pipeline migrate" in init
