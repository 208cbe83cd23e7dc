#!/usr/bin/env bash
# Property-based API testing: schemathesis `--checks all` against a fresh `freshet up`, from its
# own /api/openapi.json. Fails on any finding (a 5xx, a status or body the spec does not list,
# valid data refused, invalid data accepted, a deleted resource still served, ...).
#
#   bash .ci/schemathesis.sh                  install (if needed) and run
#   bash .ci/schemathesis.sh --install-only   install schemathesis and stop (.ci/run does this early)
#
# Builds nothing: the binary is $FRESHET_BIN (default target/release/freshet). Installs
# schemathesis (pinned) into .ci/venv-schemathesis. Freshet gets a temporary data dir and free
# ports; it is stopped (and its log printed if the run failed) on the way out.
#
# Environment knobs:
#   FRESHET_BIN                  freshet binary
#   SCHEMATHESIS_SEED            the run's seed (default 1: the run is the same every time)
#   SCHEMATHESIS_MAX_EXAMPLES    test cases per operation and phase (default 100: ~75 s on 2 cores)
#   SCHEMATHESIS_TIMEOUT         seconds before the run is killed and fails (default 300)
#   SCHEMATHESIS_REPORT_DIR      where the JUnit report goes (default target/schemathesis)
set -euo pipefail

SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
SEED="${SCHEMATHESIS_SEED:-1}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
RUN_TIMEOUT="${SCHEMATHESIS_TIMEOUT:-300}"
STARTUP_TIMEOUT=60

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.ci/venv-schemathesis"
REPORT_DIR="${SCHEMATHESIS_REPORT_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/schemathesis}"
export DEBIAN_FRONTEND=noninteractive

LOG_PREFIX=schemathesis
# shellcheck source=lib.sh
source "$ROOT/.ci/lib.sh"

# --- schemathesis in its own venv --------------------------------------------------------
PYTHON_BOOT="${PYTHON:-python3}"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    log "creating venv $VENV with $PYTHON_BOOT ($("$PYTHON_BOOT" --version 2>&1))"
    rm -rf "$VENV"
    if ! "$PYTHON_BOOT" -m venv "$VENV"; then
        # Debian's own python3 needs python3-venv (ensurepip) for this.
        log "venv failed; installing python3-venv and retrying"
        rm -rf "$VENV"
        retry 3 "${SUDO[@]}" apt-get update -q
        retry 3 "${SUDO[@]}" apt-get install -y -q --no-install-recommends python3-venv
        "$PYTHON_BOOT" -m venv "$VENV"
    fi
fi
# Keep the venv out of git status whatever the repository's .gitignore says.
printf '*\n' >"$VENV/.gitignore"
if [[ "$("$VENV/bin/schemathesis" --version 2>/dev/null || true)" != *" $SCHEMATHESIS_VERSION" ]]; then
    log "pip install schemathesis==$SCHEMATHESIS_VERSION"
    retry 3 "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
        "schemathesis==$SCHEMATHESIS_VERSION"
fi
log "$("$VENV/bin/schemathesis" --version)"
if [[ "${1:-}" == --install-only ]]; then exit 0; fi

# --- freshet binary ----------------------------------------------------------------------
FRESHET_BIN="${FRESHET_BIN:-$ROOT/target/release/freshet}"
if [[ ! -x "$FRESHET_BIN" ]]; then
    log "freshet binary not found or not executable: $FRESHET_BIN"
    log "build it first (cargo build --release -p freshet) or set FRESHET_BIN"
    exit 2
fi

# --- freshet up on free ports --------------------------------------------------------------
WORK="$(mktemp -d)"
FRESHET_LOG="$WORK/freshet.log"
FRESHET_PID=""
stop_freshet() {
    local status=$?
    if [[ -n "$FRESHET_PID" ]] && kill -0 "$FRESHET_PID" 2>/dev/null; then
        kill -TERM "$FRESHET_PID" 2>/dev/null || true
        for _ in $(seq 60); do
            kill -0 "$FRESHET_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$FRESHET_PID" 2>/dev/null || true
        wait "$FRESHET_PID" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$FRESHET_LOG" ]]; then
        log "freshet log (last 60 lines):"
        tail -n 60 "$FRESHET_LOG" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap stop_freshet EXIT

ADMIN_TOKEN="schemathesis-$RANDOM$RANDOM"
# A login rate and failure limit far above what the run sends: with the defaults most login
# and registration requests would be answered 429, and the accounts schemathesis guesses
# passwords for would be blocked (423), so the run would test the limits, not the routes
# (crates/api/tests/it/guard.rs and guard_e2e.rs test the limits).
log "starting $FRESHET_BIN up (data in $WORK)"
FRESHET_LOG_FORMAT=text "$FRESHET_BIN" up \
    --data-dir "$WORK/data" \
    --kafka-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 \
    --admin-token "$ADMIN_TOKEN" \
    --login-rate 1000000 --login-burst 1000000 \
    --max-failures 1000000 \
    >"$FRESHET_LOG" 2>&1 &
FRESHET_PID=$!

healthy() { # healthy URL: /healthz answers 200
    "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=2)' \
        "$1" >/dev/null 2>&1
}

API=""
for _ in $(seq $((STARTUP_TIMEOUT * 5))); do
    API="$(sed -n 's|^freshet: HTTP API on \(http://[0-9.:]*\) .*|\1|p' "$FRESHET_LOG" | head -n 1)"
    if [[ -n "$API" ]] && healthy "$API"; then
        break
    fi
    if ! kill -0 "$FRESHET_PID" 2>/dev/null; then
        log "freshet exited before serving"
        exit 1
    fi
    API=""
    sleep 0.2
done
if [[ -z "$API" ]]; then
    log "freshet did not serve /healthz within ${STARTUP_TIMEOUT}s"
    exit 1
fi
log "freshet serves $API"

# --- the run --------------------------------------------------------------------------------
mkdir -p "$REPORT_DIR"
log "schemathesis run $API/api/openapi.json --checks all --seed $SEED --max-examples $MAX_EXAMPLES"
set +e
# The live tail (`/records/stream`, server-sent events) is left out: its answer never ends
# while the client listens, so every call would wait for the run's timeout. Its errors and
# events are tested in crates/api/tests/it/records_search.rs.
# From the temporary dir, with no example database: nothing is written to the repository and
# no earlier run's examples are replayed, so a seed always means the same run.
(cd "$WORK" && timeout --kill-after=10 "$RUN_TIMEOUT" "$VENV/bin/schemathesis" --no-color run \
    "$API/api/openapi.json" \
    --checks all \
    --seed "$SEED" \
    --max-examples "$MAX_EXAMPLES" \
    --generation-database none \
    --exclude-path-regex '/records/stream$' \
    --header "Authorization: Bearer $ADMIN_TOKEN" \
    --report junit --report-junit-path "$REPORT_DIR/junit.xml")
STATUS=$?
set -e
case $STATUS in
    0) log "no findings" ;;
    124 | 137) log "the run took longer than ${RUN_TIMEOUT}s" ;;
    *) log "schemathesis found failures (exit $STATUS); report: $REPORT_DIR/junit.xml" ;;
esac
exit "$STATUS"
