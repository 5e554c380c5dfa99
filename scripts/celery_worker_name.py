"""The hostname Airflow records on the task instances a Celery worker runs, when
scripts/run_airflow.sh starts several workers on one machine.

Airflow's Task SDK records `[core] hostname_callable()` as the task instance's `hostname`
(the machine's FQDN by default): every worker of one machine would show the same. Each
worker that run_airflow.sh starts gets `CELERY_WORKER_NAME` (its Celery node name,
`worker2@host`, the name Flower and `celery inspect` show) and this callable, so the UI
and the metadata database say which worker ran each task. Without the variable it is the
FQDN, as Airflow's own. It imports nothing from Airflow or the pipeline.

Those workers share the machine's log folder with the API server and serve no logs of
their own (`--skip-serve-logs`): the name is not used to fetch logs.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("CELERY_WORKER_NAME") or socket.getfqdn()
