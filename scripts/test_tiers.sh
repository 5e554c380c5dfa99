#!/usr/bin/env bash
# Run test tiers, each as its own pytest process, and report each tier's wall time.
#
#   scripts/test_tiers.sh unit integration     # the named tiers, in that order
#   scripts/test_tiers.sh all                  # every tier there is
#
# Tiers: unit (tests/unit: no database), integration (tests/integration but the crash
# test), crash (the crash-safety test: it kills private PostgreSQL servers), dag
# (tests/dag), distributed (tests/distributed: `make run EXECUTOR=celery WORKERS=2` and
# `make run` on the same loopback feeds, about 4 minutes; skipped, saying so, where no Redis
# answers at CELERY_BROKER_URL, default redis://127.0.0.1:6379/0), browser (tests/browser: headless Chromium
# through Selenium against `make run DEMO=1`'s Airflow, about a minute; skipped, saying why,
# where chromium or chromedriver is missing: .ci/run installs them), compose (the tests at
# the top of tests/), and any other tests/<dir> holding tests, as a tier named after it. A
# tier whose directory is absent is skipped, not failed. Every tier named runs even when
# one fails; the exit status is 1 if any failed.
# The integration tier runs on $WORKERS pytest-xdist workers (default 4: its tests wait on
# sockets, timeouts and PostgreSQL as much as they compute; WORKERS=0 runs it in one
# process); the unit tier on $UNIT_WORKERS (default 2, one per core here: its tests compute,
# and its time bounds hold with a core each; UNIT_WORKERS=0 runs it in one process), handed
# out by work stealing (its few long tests would otherwise end up queued on one worker); the
# other tiers run in one process (their timing assertions and Airflow's metadata database
# are simplest alone).
# Extra pytest options: PYTEST_ADDOPTS (pytest reads it), e.g. PYTEST_ADDOPTS="-x --durations=25".
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CRASH=tests/integration/test_crash_safety.py
KNOWN=(unit integration crash dag distributed browser compose)
WORKERS=${WORKERS:-4}
XDIST=""
UNIT_WORKERS=${UNIT_WORKERS:-2}
UNIT_XDIST=""
if "$PY" -c "import xdist" 2>/dev/null; then
    [[ $WORKERS != 0 ]] && XDIST="-n $WORKERS"
    [[ $UNIT_WORKERS != 0 ]] && UNIT_XDIST="-n $UNIT_WORKERS --dist worksteal"
fi

tier_args() {  # the pytest arguments of a tier, or nothing when it has no tests here
    case "$1" in
        unit) [[ -d tests/unit ]] && echo "tests/unit $UNIT_XDIST" ;;
        integration)
            [[ -d tests/integration ]] || return 0
            if [[ -f $CRASH ]]; then echo "tests/integration --ignore=$CRASH $XDIST"; else echo "tests/integration $XDIST"; fi ;;
        crash) [[ -f $CRASH ]] && echo "$CRASH" ;;
        compose) compgen -G "tests/test_*.py" | tr '\n' ' ' ;;
        *) [[ -d tests/$1 ]] && echo "tests/$1" ;;
    esac
    return 0
}

skip_reason() {  # why a tier cannot run here, or nothing
    case "$1" in
        distributed)
            local broker=${CELERY_BROKER_URL:-redis://127.0.0.1:6379/0}
            "$PY" -c 'import sys, kombu; kombu.Connection(sys.argv[1], connect_timeout=3).ensure_connection(max_retries=1)' \
                "$broker" 2>/dev/null \
                || echo "no Redis answers at $broker: start one (README, Scale-out) or set CELERY_BROKER_URL" ;;
    esac
    return 0
}

tiers=("$@")
if [[ ${#tiers[@]} -eq 0 || ${tiers[0]} == all ]]; then
    tiers=("${KNOWN[@]}")
    for dir in tests/*/; do  # a new tier directory runs without editing this script
        name=$(basename "$dir")
        [[ " ${KNOWN[*]} " == *" $name "* ]] && continue
        compgen -G "${dir}test_*.py" >/dev/null && tiers+=("$name")
    done
fi

declare -a report
failed=0
for tier in "${tiers[@]}"; do
    args=$(tier_args "$tier")
    if [[ -z ${args// } ]]; then
        report+=("tier $tier: skipped (no tests/$tier here)")
        echo "== tier $tier: skipped (absent)"
        continue
    fi
    reason=$(skip_reason "$tier")
    if [[ -n $reason ]]; then
        report+=("tier $tier: skipped ($reason)")
        echo "== tier $tier: skipped ($reason)"
        continue
    fi
    echo "== tier $tier: pytest $args"
    start=$EPOCHREALTIME
    # shellcheck disable=SC2086  # $args is a word list on purpose
    "$PY" -m pytest -q $args
    status=$?
    seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
    case $status in
        0) outcome=passed ;;
        5) outcome="no tests collected" ;;
        *) outcome="FAILED (pytest exit $status)"; failed=1 ;;
    esac
    echo "tier $tier: $seconds s, $outcome"
    report+=("tier $tier: $seconds s, $outcome")
done

echo
echo "== test tiers"
printf '%s\n' "${report[@]}"
exit $failed
