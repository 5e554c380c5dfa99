"""docker-compose.yml cannot run here (no Docker engine, no compose client): check what can
be checked, on the YAML as compose would read it, and run scripts/compose_secrets.py."""

import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from cryptography.fernet import Fernet

from pipeline.config import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
README = PROJECT_ROOT / "README.md"
SECRETS_SCRIPT = PROJECT_ROOT / "scripts" / "compose_secrets.py"
IMAGE_SCRIPT = "/opt/news-pipeline/scripts/compose_secrets.py"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")
PLACEHOLDER = re.compile(r"^\{secret:([a-z_]+)\}$")


def _load_secrets_module():
    spec = importlib.util.spec_from_file_location("compose_secrets", SECRETS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compose_secrets = _load_secrets_module()


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
    ui = [published(port, {}) for port in services["airflow-apiserver"]["ports"]]
    assert ui == [("127.0.0.1", "8080", "8080")]
    init = " ".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init and "pools set feed_fetch" in init and "pipeline migrate" in init


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}."""
    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = env.get(name)
        if op == ":?" and not value:
            raise KeyError(f"{name}: {arg}")
        if op == ":-" and not value or op == "-" and value is None:
            return arg
        return value or ""
    return re.sub(r"\$\{([A-Z][A-Z0-9_]*)(?:(:-|-|:\?)([^}]*))?\}", one, text)


def published(port: str, env: dict[str, str]) -> tuple[str, str, str]:
    """(host address, host port, container port) of a short-syntax port as compose reads it."""
    parts = interpolate(str(port), env).split(":")
    assert len(parts) == 3, f"{port}: name the host address (compose binds 0.0.0.0 otherwise)"
    return parts[0], parts[1], parts[2]


def test_every_published_port_binds_loopback_unless_the_user_says_otherwise():
    ports = [p for service in compose()["services"].values() for p in service.get("ports", [])]
    assert len(ports) == 2  # the news database and the UI
    assert {published(p, {})[0] for p in ports} == {"127.0.0.1"}
    assert {published(p, {"NEWS_BIND_ADDRESS": "0.0.0.0"})[0] for p in ports} == {"0.0.0.0"}
    assert "expose" not in COMPOSE.read_text()


def environments() -> list[tuple[str, str, str]]:
    return [(name, key, str(value)) for name, service in compose()["services"].items()
            for key, value in (service.get("environment") or {}).items()]


def test_no_secret_or_password_has_a_value_in_the_file():
    text = COMPOSE.read_text()
    for literal in ("change-me", "news:news@", "airflow:airflow@", "POSTGRES_PASSWORD:"):
        assert literal not in text, literal
    # No host variable that names a secret has a default: empty (generate) or required.
    for name, default in re.findall(r"\$\{([A-Z][A-Z0-9_]*):?-([^}]*)\}", text):
        assert not (SECRET_NAME.search(name) and default), name
    used = set()
    for service, key, value in environments():
        if key.endswith("_FILE") and SECRET_NAME.search(key.removesuffix("_FILE")):
            assert value.startswith("/secrets/") and value[len("/secrets/"):] in compose_secrets.SECRETS
            used.add(value[len("/secrets/"):])
        elif SECRET_NAME.search(key):
            host = re.fullmatch(r"\$\{([A-Z0-9_]+)(:-|:\?[^}]+)\}", value)
            if host:  # a host value, only for secrets-init to store on first start
                assert service == "secrets-init" and host.group(2) == ":-", (service, key)
            else:
                assert PLACEHOLDER.match(value), (service, key, value)
        if "://" in value:
            password = urlsplit(value).password
            assert password is None or PLACEHOLDER.match(password), (service, key)
        used.update(re.findall(r"\{secret:([a-z_]+)\}", value))
    # Every secret the file uses is one the script generates, and each is used.
    assert used == set(compose_secrets.SECRETS)


def test_every_service_reads_the_generated_secrets():
    services = compose()["services"]
    init = services["secrets-init"]
    assert init["entrypoint"] == ["python", IMAGE_SCRIPT, "generate", "/secrets"]
    assert "secrets:/secrets" in init["volumes"] and init["user"] == "0:0"
    for name, service in services.items():
        if name == "secrets-init":
            continue
        reads = any("{secret:" in str(v) for v in (service.get("environment") or {}).values())
        files = any(k.endswith("_FILE") for k in (service.get("environment") or {}))
        if not (reads or files):
            # the broker holds no secret and is not published; volumes-init only hands volumes over
            assert name in ("redis", "volumes-init"), name
            continue
        assert "secrets:/secrets:ro" in service["volumes"], name
        assert service["depends_on"]["secrets-init"] == {"condition": "service_completed_successfully"}
        if reads:  # filled in by the script, then the official image's entrypoint as before
            assert service["entrypoint"] == ["python", IMAGE_SCRIPT, "exec", "/secrets", "--",
                                             "/usr/bin/dumb-init", "--", "/entrypoint"], name
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert f"scripts/compose_secrets.py {IMAGE_SCRIPT.replace('/opt/news-pipeline/', './')}" in dockerfile


def test_secrets_are_generated_once_and_kept(tmp_path):
    first = compose_secrets.generate(tmp_path, {"NEWS_DB_PASSWORD": "p@ss/w:rd%"})
    assert "news_db_password: from NEWS_DB_PASSWORD" in first
    values = {name: (tmp_path / name).read_text() for name in compose_secrets.SECRETS}
    assert values["news_db_password"] == "p@ss/w:rd%"
    generated = [v for name, v in values.items() if name != "news_db_password"]
    assert len(set(generated)) == len(generated) and all(len(v) >= 32 for v in generated)
    Fernet(values["fernet_key"].encode())  # a valid key
    for name in values:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o440
        if os.geteuid() == 0:
            assert (tmp_path / name).stat().st_uid == compose_secrets.AIRFLOW_UID
    again = compose_secrets.generate(tmp_path, {"NEWS_DB_PASSWORD": "other", "AIRFLOW_FERNET_KEY": ""})
    assert {name: (tmp_path / name).read_text() for name in values} == values
    assert again == ["NEWS_DB_PASSWORD differs from the news_db_password set on first start: kept the "
                     "first (docker compose down -v to start over)"]


def run_exec(directory, env: dict[str, str]) -> subprocess.CompletedProcess:
    show = "import json, os; print(json.dumps({k: os.environ[k] for k in ('URL', 'KEY')}))"
    return subprocess.run([sys.executable, str(SECRETS_SCRIPT), "exec", str(directory), "--",
                           sys.executable, "-c", show], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=30)


def test_exec_fills_in_the_secrets_then_runs_the_command(tmp_path):
    compose_secrets.generate(tmp_path, {"NEWS_DB_PASSWORD": "p@ss/w:rd%"})
    done = run_exec(tmp_path, {"URL": "postgresql://news:{secret:news_db_password}@news-db:5432/news",
                               "KEY": "{secret:fernet_key}"})
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)
    url = urlsplit(env["URL"])
    assert unquote(url.password) == "p@ss/w:rd%" and url.hostname == "news-db"
    assert env["KEY"] == (tmp_path / "fernet_key").read_text()


@pytest.mark.parametrize("placeholder, message", [("{secret:nope}", "unknown secret"),
                                                  ("{secret:jwt_secret}", "is missing")])
def test_exec_refuses_to_start_without_its_secret(tmp_path, placeholder, message):
    done = run_exec(tmp_path, {"URL": "x", "KEY": placeholder})
    assert done.returncode == 2 and message in done.stderr and not done.stdout


AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker")


def test_workers_scale_by_construction():
    """`docker compose up --scale airflow-worker=3`: nothing on a worker may be unique to one
    container (compose refuses a container_name, or a fixed host port, on a scaled service)."""
    services = compose()["services"]
    assert not [name for name, service in services.items() if "container_name" in service]
    worker = services["airflow-worker"]
    assert not {"container_name", "hostname", "ports", "network_mode"} & set(worker), worker
    assert worker["command"] == "celery worker"
    env = worker["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" and env["DUMB_INIT_SETSID"] == "0"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert not [p for p in services["redis"].get("ports", [])], "the broker is not published"


def volume_mounts(service: dict) -> dict[str, str]:
    """target path -> named volume (or host path) of a service's short-syntax volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def test_logs_and_data_docs_are_on_volumes_every_airflow_service_shares():
    services = compose()["services"]
    declared = set(compose()["volumes"])
    for name in AIRFLOW_SERVICES:
        service = services[name]
        mounts = volume_mounts(service)
        data_dir = service["environment"]["NEWS_DATA_DIR"]  # the GX project and its Data Docs
        assert mounts["/opt/airflow/logs"] == "airflow-logs", name
        assert mounts[data_dir] == "news-data", name
        assert {"airflow-logs", "news-data"} <= declared
        assert service["depends_on"]["volumes-init"] == {"condition": "service_completed_successfully"}
    # A new named volume belongs to root: volumes-init hands both to the Airflow user first.
    init = services["volumes-init"]
    assert init["user"] == "0:0" and init["entrypoint"][:2] == ["chown", "50000:0"]
    assert set(init["entrypoint"][2:]) == set(volume_mounts(init)) == {
        "/opt/airflow/logs", services["airflow-worker"]["environment"]["NEWS_DATA_DIR"]}


def test_compose_loads_the_plugins_folder_as_make_run_does():
    services = compose()["services"]
    script = (PROJECT_ROOT / "scripts" / "run_airflow.sh").read_text()
    assert "export AIRFLOW__CORE__PLUGINS_FOLDER=$ROOT/plugins" in script
    assert (PROJECT_ROOT / "plugins" / "news_view_plugin.py").exists()
    for name in AIRFLOW_SERVICES + ("airflow-init",):
        folder = services[name]["environment"]["AIRFLOW__CORE__PLUGINS_FOLDER"]
        assert volume_mounts(services[name])[folder] == "./plugins", name
