# Sourced by compat/run.sh and compat/secure.sh: finding the broker binary and the Python
# interpreter, stopping the suite's broker, and removing the work directory on exit. The
# caller sets ROOT and LOG_PREFIX (the word its messages start with) before sourcing, and WORK
# (a directory of its own) before `clean_up_on_exit`; BROKER_PID is the broker's pid while one
# runs.
# shellcheck shell=bash

BROKER_PID=""

# find_freshet_bin: FRESHET_BIN made absolute (default: the release build), or exit 2.
find_freshet_bin() {
    if [[ -z "${FRESHET_BIN:-}" ]]; then
        FRESHET_BIN="$ROOT/target/release/freshet"
    elif [[ "$FRESHET_BIN" != /* ]]; then
        FRESHET_BIN="$PWD/$FRESHET_BIN"
    fi
    if [[ ! -x "$FRESHET_BIN" ]]; then
        echo "$LOG_PREFIX: broker binary not found or not executable: $FRESHET_BIN" >&2
        echo "$LOG_PREFIX: build it first (cargo build --release -p freshet) or set FRESHET_BIN" >&2
        exit 2
    fi
}

# find_python: PYTHON, else the venv of .ci/install-compat.sh, else python3.
find_python() {
    if [[ -z "${PYTHON:-}" ]]; then
        if [[ -x "$ROOT/.ci/venv/bin/python" ]]; then
            PYTHON="$ROOT/.ci/venv/bin/python"
        else
            PYTHON="$(command -v python3 || true)"
        fi
    fi
}

# stop_broker: SIGTERM, up to 10 s for a clean shutdown, then SIGKILL.
stop_broker() {
    local pid="$BROKER_PID" i
    BROKER_PID=""
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$LOG_PREFIX: broker pid $pid ignored SIGTERM for 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_broker
    if [[ "${COMPAT_KEEP_LOGS:-0}" == 1 ]]; then
        echo "$LOG_PREFIX: logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
# clean_up_on_exit: stop the broker and remove WORK however the script ends.
clean_up_on_exit() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
