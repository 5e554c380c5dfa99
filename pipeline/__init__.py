"""News ingestion: fetch feeds, normalize, deduplicate, validate, load into PostgreSQL.

A plain library with one module per stage. It never imports Airflow, so the
same code runs from the CLI (`python -m pipeline`), from tests and from the
DAGs in `dags/`.
"""
