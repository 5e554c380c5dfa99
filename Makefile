# The executable documentation. `make run` and `make test` do all the set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
FEEDS ?=
DEMO ?=

.PHONY: help venv test run demo bench psql migrate lock lint clean-data

help:
	@echo "make run    - start Airflow (UI http://localhost:8080) with the ingest DAG unpaused"
	@echo "              FEEDS=FILE for another feed list, DEMO=1 to ingest the bundled sample feeds"
	@echo "make test   - create .venv, install the pinned dependencies, run the whole suite"
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

test: venv
	$(PY) -m pytest -q

run: venv
	FEEDS="$(FEEDS)" DEMO="$(DEMO)" scripts/run_airflow.sh

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

lint: venv
	$(VENV)/bin/ruff check pipeline dags tests bench || true

clean-data:
	rm -rf .data
