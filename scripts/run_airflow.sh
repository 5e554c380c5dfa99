#!/usr/bin/env bash
# `make run`: Airflow standalone (api-server + UI on :8080, scheduler, dag-processor,
# triggerer; LocalExecutor) with the news_ingest DAG unpaused, until Ctrl-C.
#
#   FEEDS=FILE  ingest another feed list (OPML or one URL per line)
#   DEMO=1      also serve the bundled sample feeds on 127.0.0.1:8765 and ingest those
#   AIRFLOW_PORT=N  the API server's port (default 8080; the tasks' execution API follows it)
#   EXECUTOR=celery WORKERS=N  the CeleryExecutor instead (`make run EXECUTOR=celery WORKERS=N`):
#               the same components started one by one (standalone runs LocalExecutor only)
#               and N `airflow celery worker` processes, named worker1@HOST ... workerN@HOST,
#               each running up to AIRFLOW__CELERY__WORKER_CONCURRENCY tasks (default 2; the
#               feed_fetch pool defaults to that times N). The broker is CELERY_BROKER_URL
#               (default redis://127.0.0.1:6379/0; it must answer before anything starts), the
#               result backend the metadata database. The workers record their names as the
#               task instances' hostname (scripts/celery_worker_name.py) and serve no logs: they
#               write them to $AIRFLOW_HOME/logs, which the API server reads.
#
#   scripts/run_airflow.sh --background  start it detached, return once the API server answers
#                                        (log: $AIRFLOW_HOME/airflow.log; fails after
#                                        START_TIMEOUT seconds, default 300, and stops it)
#   scripts/run_airflow.sh --stop        stop what --background started (its process group)
#
# The News view (plugins/: feeds, runs, stories, quarantine, quality) is mounted on the API
# server under /news and shows in the UI's navigation and as a tab of each DAG run.
#
# Airflow's metadata lives in the database `airflow` on the same PostgreSQL
# server as the news data (the embedded one unless DATABASE_URL is set), unless
# AIRFLOW__DATABASE__SQL_ALCHEMY_CONN says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
export PATH="$ROOT/.venv/bin:$PATH"

export AIRFLOW_HOME=${AIRFLOW_HOME:-$ROOT/.data/airflow}
PORT=${AIRFLOW_PORT:-8080}
PIDFILE=$AIRFLOW_HOME/airflow.pid
mkdir -p "$AIRFLOW_HOME"

case "${1:-}" in
    --stop)
        [[ -s $PIDFILE ]] || { echo "not running (no $PIDFILE)"; exit 0; }
        pgid=$(cat "$PIDFILE")
        running() {  # a process of the group is running (a zombie only waits for its reaper)
            ps -e -o pgid=,stat= | awk -v g="$pgid" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
        }
        kill -TERM -- "-$pgid" 2>/dev/null || true
        for _ in $(seq 60); do running || break; sleep 0.5; done
        kill -KILL -- "-$pgid" 2>/dev/null || true
        rm -f "$PIDFILE"
        echo "stopped"
        exit 0 ;;
    --background)
        log=$AIRFLOW_HOME/airflow.log
        setsid "$ROOT/scripts/run_airflow.sh" >"$log" 2>&1 < /dev/null &
        echo $! >"$PIDFILE"  # setsid's child leads its own process group: --stop ends the group
        for _ in $(seq "${START_TIMEOUT:-300}"); do
            if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/api/v2/monitor/health" 2>/dev/null; then
                echo "Airflow is up: http://localhost:$PORT (log: $log; stop: scripts/run_airflow.sh --stop)"
                exit 0
            fi
            kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "Airflow exited; see $log" >&2; tail -20 "$log" >&2; exit 1; }
            sleep 1
        done
        echo "Airflow did not answer within ${START_TIMEOUT:-300} s; see $log" >&2
        "$ROOT/scripts/run_airflow.sh" --stop >/dev/null
        exit 1 ;;
    "") ;;
    *) echo "usage: $0 [--background | --stop]" >&2; exit 2 ;;
esac

EXECUTOR=${EXECUTOR:-local}
case "${EXECUTOR,,}" in
    local | localexecutor) EXECUTOR=local; export AIRFLOW__CORE__EXECUTOR=LocalExecutor ;;
    celery | celeryexecutor) EXECUTOR=celery; export AIRFLOW__CORE__EXECUTOR=CeleryExecutor ;;
    *) echo "EXECUTOR is local or celery, not '$EXECUTOR'" >&2; exit 2 ;;
esac
WORKERS=${WORKERS:-2}
if [[ $EXECUTOR == celery && ! $WORKERS =~ ^[1-9][0-9]*$ ]]; then
    echo "WORKERS is a number of Celery workers (1 or more), not '$WORKERS'" >&2
    exit 2
fi

export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$ROOT/plugins
export AIRFLOW__API__PORT=$PORT
if [[ $PORT != 8080 ]]; then
    export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://localhost:$PORT/execution/}
fi
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-False}
export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-8}
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}
# A finished task's successors are scheduled within this many seconds (Airflow's default: 1,
# about a second lost at each of a run's four steps).
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=${AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME:-0.25}
export PYTHONPATH=$ROOT:$ROOT/dags${PYTHONPATH:+:$PYTHONPATH}

if [[ -z "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]]; then
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$("$PY" -m pipeline db-url --database airflow --sqlalchemy)
    export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
fi

pool_slots=${FETCH_POOL_SLOTS:-4}
if [[ $EXECUTOR == celery ]]; then
    export AIRFLOW__CELERY__BROKER_URL=${CELERY_BROKER_URL:-${AIRFLOW__CELERY__BROKER_URL:-redis://127.0.0.1:6379/0}}
    export AIRFLOW__CELERY__RESULT_BACKEND=${AIRFLOW__CELERY__RESULT_BACKEND:-db+$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}
    export AIRFLOW__CELERY__WORKER_CONCURRENCY=${AIRFLOW__CELERY__WORKER_CONCURRENCY:-2}
    pool_slots=${FETCH_POOL_SLOTS:-$((AIRFLOW__CELERY__WORKER_CONCURRENCY * WORKERS))}
    host=$(hostname -f 2>/dev/null || hostname)
    worker_names=()
    for i in $(seq "$WORKERS"); do worker_names+=("worker$i@$host"); done
    if ! "$PY" -c 'import sys, kombu; kombu.Connection(sys.argv[1], connect_timeout=3).ensure_connection(max_retries=1)' \
            "$AIRFLOW__CELERY__BROKER_URL" 2>/dev/null; then
        echo "no Celery broker answers at $AIRFLOW__CELERY__BROKER_URL: start a Redis there (README, \"Scale-out\")" \
             "or set CELERY_BROKER_URL" >&2
        exit 1
    fi
fi

children=()
cleanup() {  # TERM to what this script started; what outlives 30 s gets KILL
    for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 60); do
        alive=0
        for pid in "${children[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 1 ]] || return 0
        sleep 0.5
    done
    for pid in "${children[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

if [[ -n "${DEMO:-}" && "${DEMO}" != "0" ]]; then
    export FEEDS_FILE=$ROOT/.data/demo-feeds.txt
    export FETCH_ALLOWED_NETWORKS=${FETCH_ALLOWED_NETWORKS:+$FETCH_ALLOWED_NETWORKS,}127.0.0.1/32
    "$PY" -m pipeline demo-serve --port "${DEMO_PORT:-8765}" --write-feeds "$FEEDS_FILE" &
    children+=($!)
    for _ in $(seq 50); do [[ -s "$FEEDS_FILE" ]] && break; sleep 0.2; done
    [[ -s "$FEEDS_FILE" ]] || { echo "demo feed server did not start" >&2; exit 1; }
elif [[ -n "${FEEDS:-}" ]]; then
    export FEEDS_FILE=$(realpath "$FEEDS")
else
    export FEEDS_FILE=${FEEDS_FILE:-$ROOT/feeds/default.opml}
fi
[[ -r "$FEEDS_FILE" ]] || { echo "feed list not readable: $FEEDS_FILE" >&2; exit 1; }

echo "news database: $("$PY" -m pipeline db-url)"
"$PY" -m pipeline migrate
airflow db migrate >/dev/null
airflow pools set feed_fetch "$pool_slots" "Concurrent feed fetch tasks" >/dev/null

password_file=$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
(
    for _ in $(seq 120); do
        if curl -fsS -o /dev/null "http://localhost:$PORT/api/v2/monitor/health" 2>/dev/null; then break; fi
        sleep 1
    done
    echo
    echo "================================================================="
    echo " Airflow UI:  http://localhost:$PORT   (DAG: news_ingest, unpaused)"
    echo " News view:   http://localhost:$PORT/plugin/news   (and the \"News run\" tab of each run)"
    echo " Feed list:   $FEEDS_FILE"
    if [[ $EXECUTOR == celery ]]; then
        echo " Executor:    CeleryExecutor, $WORKERS workers (${worker_names[*]}), broker $AIRFLOW__CELERY__BROKER_URL"
    fi
    echo " Login:       user admin, password: $("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['admin'])" "$password_file" 2>/dev/null || echo "see $password_file")"
    echo " Query:       make psql   (or: .venv/bin/python -m pipeline db-url)"
    echo " Stop:        Ctrl-C"
    echo "================================================================="
) &
children+=($!)

if [[ $EXECUTOR == local ]]; then
    airflow standalone
    exit
fi

# CeleryExecutor: each component in the background, its output prefixed with its name;
# when one exits, the rest are stopped (the EXIT trap).
components=()
names=()
start() {  # NAME COMMAND...
    local name=$1
    shift
    "$@" > >(sed -u "s/^/$name | /") 2>&1 &
    children+=($!)
    components+=($!)
    names+=("$name")
}
start api-server airflow api-server
start scheduler airflow scheduler
start dag-processor airflow dag-processor
start triggerer airflow triggerer
for i in $(seq "$WORKERS"); do
    name=${worker_names[$((i - 1))]}
    start "worker$i" env CELERY_WORKER_NAME="$name" AIRFLOW__CORE__HOSTNAME_CALLABLE=celery_worker_name.hostname \
        PYTHONPATH="$ROOT/scripts:$PYTHONPATH" airflow celery worker --celery-hostname "$name" --skip-serve-logs
done
while :; do
    for i in "${!components[@]}"; do
        if ! kill -0 "${components[$i]}" 2>/dev/null; then
            echo "${names[$i]} exited: stopping the other components" >&2
            exit 1
        fi
    done
    sleep 2
done
