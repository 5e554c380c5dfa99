# The Airflow image for docker-compose.yml: the official image with this project installed.
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11
ARG AIRFLOW_VERSION

WORKDIR /opt/news-pipeline
COPY --chown=airflow:root requirements.lock pyproject.toml ./
COPY --chown=airflow:root pipeline ./pipeline
# Pinned dependencies, and Airflow held at the image's version.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r requirements.lock -e .
COPY --chown=airflow:root sql ./sql
COPY --chown=airflow:root feeds ./feeds
COPY --chown=airflow:root dags /opt/airflow/dags

ENV FEEDS_FILE=/opt/news-pipeline/feeds/default.opml \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GX_ANALYTICS_ENABLED=false
WORKDIR /opt/airflow
