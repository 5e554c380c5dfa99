# The executable documentation. `make run` and `make test` do all the set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
FEEDS ?=
DEMO ?=
# `make run EXECUTOR=celery WORKERS=N`: the CeleryExecutor, N workers (scripts/run_airflow.sh)
EXECUTOR ?= local
WORKERS ?= 2

.PHONY: help venv test test-fast check lint typecheck run demo bench psql migrate lock clean-data

help:
	@echo "make run    - start Airflow (UI http://localhost:8080) with the ingest DAG unpaused"
	@echo "              FEEDS=FILE for another feed list, DEMO=1 to ingest the bundled sample feeds,"
	@echo "              EXECUTOR=celery WORKERS=N for the CeleryExecutor with N workers (Redis broker:"
	@echo "              CELERY_BROKER_URL, default redis://127.0.0.1:6379/0)"
	@echo "make test   - create .venv, install the pinned dependencies; lint, typecheck, then every"
	@echo "              test tier (unit, integration, crash, dag, compose, ...), each timed"
	@echo "make test-fast - lint, typecheck, the unit and integration tiers (the edit-test loop)"
	@echo "make lint / make typecheck - ruff (with Airflow's AIR rules) / mypy on pipeline and dags"
	@echo "make demo   - serve the sample feeds on loopback and ingest them once (CLI)"
	@echo "make bench  - end-to-end throughput, peak memory and feedparser's parse-only rate"
	@echo "make psql   - psql on the news database"

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock -e . 2>&1 \
		| grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import airflow, great_expectations, feedparser, psycopg2, pgserver" >/dev/null 2>&1 \
		|| { echo "dependency install failed"; exit 1; }
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

# Checks first (fail fast: seconds), then each tier as its own pytest process with its
# wall time; every tier runs, and the target fails if any did. TIERS=... picks tiers.
TIERS ?= all
test: check
	scripts/test_tiers.sh $(TIERS)

# The edit-test loop (its target: at most 3 minutes here; 2.5-3.3 minutes on 2026-12-08): 3 examples per hostile-input property instead
# of 12 (the same derandomized examples every run), the parse-path equivalence on every third
# corpus body, every fifth file of feedparser's corpus in the one-run hostile test, the
# analytics views at 200,000 articles. `make test` runs them all at full size.
test-fast: check
	HOSTILE_EXAMPLES=$${HOSTILE_EXAMPLES:-3} EQUIVALENCE_EVERY=$${EQUIVALENCE_EVERY:-3} \
	FEEDPARSER_CORPUS_EVERY=$${FEEDPARSER_CORPUS_EVERY:-5} \
	ANALYTICS_TEST_DIVISOR=$${ANALYTICS_TEST_DIVISOR:-5} scripts/test_tiers.sh unit integration

check: lint typecheck

run: venv
	FEEDS="$(FEEDS)" DEMO="$(DEMO)" EXECUTOR="$(EXECUTOR)" WORKERS="$(WORKERS)" scripts/run_airflow.sh

demo: venv
	$(PY) -m pipeline demo --port 8766

bench: venv
	$(PY) -m bench.run

psql: venv
	$(PY) -m pipeline psql

migrate: venv
	$(PY) -m pipeline migrate

# Re-resolve the pins from requirements.in (needs uv: pip install uv).
lock:
	uv pip compile requirements.in -o requirements.lock --python-version 3.11

# tests/ and bench/ are not linted yet (about 70 findings, in files edited elsewhere): the
# conftest files are, and `$(VENV)/bin/ruff check tests bench` lists the rest.
LINT_PATHS := pipeline dags $(wildcard tests/conftest.py tests/*/conftest.py)
lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)

typecheck: venv
	$(VENV)/bin/mypy pipeline dags

clean-data:
	rm -rf .data
