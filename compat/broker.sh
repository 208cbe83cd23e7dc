# Sourced by compat/run.sh and compat/secure.sh: stopping the suite's broker and removing the
# work directory on exit. The caller sets LOG_PREFIX (the word its messages start with) and
# WORK (a directory of its own) first; BROKER_PID is the broker's pid while one runs.
# shellcheck shell=bash

BROKER_PID=""

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
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
