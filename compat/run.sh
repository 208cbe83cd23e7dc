#!/usr/bin/env bash
# Client-interop suites: runs each external Kafka client against a fresh Freshet broker.
#
#   bash compat/run.sh [kcat|confluent-kafka|kafka-python|aiokafka|kafkajs ...]   (default: all)
#
# Builds nothing. The broker binary is $FRESHET_BIN (default: target/release/freshet under the
# repository root). The clients come from .ci/install-compat.sh (kcat from Debian, the Python
# clients in .ci/venv, kafkajs in compat/kafkajs/node_modules).
#
# Each suite gets its own broker: a new temporary data dir, listening on 127.0.0.1:0; the port
# is read from the broker's stderr. Open transactions are checked against their timeout every
# 500 ms (--transaction-abort-interval-ms), so a suite's timed-out transaction is aborted within
# seconds. The suite runs with BOOTSTRAP=127.0.0.1:PORT and FRESHET_BIN (absolute, exported: the
# kafka-python suite runs `$FRESHET_BIN generate` against its broker) under a hard timeout, then
# the broker is stopped. Ends with one line per suite and `N passed, M failed`.
#
# Environment knobs:
#   FRESHET_BIN                  broker binary
#   PYTHON                       interpreter for the Python suites (default .ci/venv/bin/python)
#   COMPAT_SUITE_TIMEOUT         seconds per suite before it is killed (default 300)
#   COMPAT_STARTUP_TIMEOUT       seconds to wait for the broker's listen line (default 30)
#   COMPAT_BROKER_ARGS           extra broker flags (word-split)
#   FRESHET_LOG                  broker log filter (default info); the broker log of a failed
#                                suite is printed (tail), all logs kept if COMPAT_KEEP_LOGS=1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPAT="$ROOT/compat"
LOG_PREFIX=compat
# shellcheck source=lib.sh
source "$COMPAT/lib.sh"
ALL_SUITES=(kcat confluent-kafka kafka-python aiokafka kafkajs)
SUITE_TIMEOUT="${COMPAT_SUITE_TIMEOUT:-300}"
STARTUP_TIMEOUT="${COMPAT_STARTUP_TIMEOUT:-30}"

usage() {
    local IFS='|'
    echo "usage: $0 [${ALL_SUITES[*]}]..." >&2
    exit 2
}

# --- suite selection --------------------------------------------------------------------
SUITES=()
if [[ $# -eq 0 ]]; then
    SUITES=("${ALL_SUITES[@]}")
else
    for arg in "$@"; do
        case "$arg" in
            kcat | confluent-kafka | kafka-python | aiokafka | kafkajs) SUITES+=("$arg") ;;
            confluent_kafka) SUITES+=(confluent-kafka) ;;
            kafka_python) SUITES+=(kafka-python) ;;
            -h | --help) usage ;;
            *) echo "compat: unknown suite '$arg'" >&2; usage ;;
        esac
    done
fi

# --- broker binary --------------------------------------------------------------------
find_freshet_bin
# The suites may run the binary themselves (kafka-python runs `freshet generate`).
export FRESHET_BIN

# --- Python interpreter -----------------------------------------------------------------
find_python

suite_cmd() { # prints nothing; sets CMD array for suite $1
    case "$1" in
        kcat) CMD=(bash "$COMPAT/kcat.sh") ;;
        confluent-kafka) CMD=("$PYTHON" -u "$COMPAT/confluent_kafka_test.py") ;;
        kafka-python) CMD=("$PYTHON" -u "$COMPAT/kafka_python_test.py") ;;
        aiokafka) CMD=("$PYTHON" -u "$COMPAT/aiokafka_test.py") ;;
        kafkajs) CMD=(node "$COMPAT/kafkajs/test.js") ;;
    esac
}

suite_prereq() { # echoes a reason and returns 1 if the suite's client is missing
    case "$1" in
        kcat) command -v kcat >/dev/null 2>&1 || { echo "kcat is not installed (run .ci/install-compat.sh)"; return 1; } ;;
        confluent-kafka | kafka-python | aiokafka)
            local mod=confluent_kafka
            [[ "$1" == kafka-python ]] && mod=kafka
            [[ "$1" == aiokafka ]] && mod=aiokafka
            [[ -n "$PYTHON" ]] || { echo "no python3 found"; return 1; }
            "$PYTHON" -c "import $mod" >/dev/null 2>&1 ||
                { echo "python module '$mod' missing for $PYTHON (run .ci/install-compat.sh)"; return 1; }
            ;;
        kafkajs)
            command -v node >/dev/null 2>&1 || { echo "node is not installed"; return 1; }
            [[ -d "$COMPAT/kafkajs/node_modules/kafkajs" ]] ||
                { echo "compat/kafkajs/node_modules missing (run .ci/install-compat.sh)"; return 1; }
            ;;
    esac
}

# --- broker lifecycle -------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/freshet-compat.XXXXXX")"
BROKER_PORT=""
clean_up_on_exit

# start_broker DIR LOG: starts the broker, waits for its listen line, sets BROKER_PID/PORT.
start_broker() {
    local dir="$1" log="$2" deadline line
    mkdir -p "$dir/data"
    # shellcheck disable=SC2086 # COMPAT_BROKER_ARGS is meant to be word-split
    env -u FRESHET_ADVERTISED_ADDR -u FRESHET_KAFKA_LISTEN -u FRESHET_DATA_DIR \
        FRESHET_LOG="${FRESHET_LOG:-info}" \
        "$FRESHET_BIN" broker \
        --kafka-listen 127.0.0.1:0 \
        --data-dir "$dir/data" \
        --auto-create-topics true \
        --default-partitions 3 \
        --transaction-abort-interval-ms 500 \
        ${COMPAT_BROKER_ARGS:-} \
        </dev/null >"$log" 2>&1 &
    BROKER_PID=$!
    deadline=$((SECONDS + STARTUP_TIMEOUT))
    BROKER_PORT=""
    while ((SECONDS < deadline)); do
        line="$(grep -m1 -o 'Kafka protocol on 127\.0\.0\.1:[0-9]\+' "$log" 2>/dev/null || true)"
        if [[ -n "$line" ]]; then
            BROKER_PORT="${line##*:}"
            break
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "compat: broker exited during startup; its output:" >&2
            sed 's/^/  broker| /' "$log" >&2
            BROKER_PID=""
            return 1
        fi
        sleep 0.05
    done
    if [[ -z "$BROKER_PORT" ]]; then
        echo "compat: broker printed no 'Kafka protocol on 127.0.0.1:PORT' line within ${STARTUP_TIMEOUT}s; its output:" >&2
        sed 's/^/  broker| /' "$log" >&2
        return 1
    fi
    # The listen line is printed after bind; still, confirm the port accepts connections.
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "compat: broker announced port $BROKER_PORT but it does not accept connections" >&2
    return 1
}

# --- run the suites -------------------------------------------------------------------
echo "compat: broker $FRESHET_BIN ($("$FRESHET_BIN" --version 2>/dev/null || echo 'version unknown'))"
echo "compat: suites: ${SUITES[*]}; per-suite timeout ${SUITE_TIMEOUT}s"

PASSED=0
FAILED=0
RESULTS=()
for suite in "${SUITES[@]}"; do
    dir="$WORK/$suite"
    mkdir -p "$dir"
    log="$dir/broker.log"
    echo
    echo "=== compat suite: $suite"
    start_ts=$SECONDS
    status=""
    if ! reason="$(suite_prereq "$suite")"; then
        status="FAIL ($reason)"
    elif ! start_broker "$dir" "$log"; then
        status="FAIL (broker did not start)"
    else
        echo "compat: broker pid $BROKER_PID on 127.0.0.1:$BROKER_PORT, data in $dir/data"
        suite_cmd "$suite"
        set +e
        (cd "$COMPAT" && BOOTSTRAP="127.0.0.1:$BROKER_PORT" \
            timeout -k 10 "$SUITE_TIMEOUT" "${CMD[@]}" </dev/null) 2>&1 |
            sed -u "s/^/  $suite| /"
        rc=${PIPESTATUS[0]}
        set -e
        broker_alive=1
        kill -0 "$BROKER_PID" 2>/dev/null || broker_alive=0
        stop_broker
        if [[ $rc -eq 0 && $broker_alive -eq 1 ]]; then
            status="PASS"
        elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
            status="FAIL (timed out after ${SUITE_TIMEOUT}s)"
        elif [[ $broker_alive -eq 0 ]]; then
            status="FAIL (broker died during the suite; suite exit $rc)"
        else
            status="FAIL (exit $rc)"
        fi
        if [[ "$status" != PASS ]]; then
            echo "compat: last 60 lines of the broker log ($log):"
            tail -n 60 "$log" | sed 's/^/  broker| /'
        fi
    fi
    elapsed=$((SECONDS - start_ts))
    if [[ "$status" == PASS ]]; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
    fi
    echo "=== compat suite: $suite: $status (${elapsed}s)"
    RESULTS+=("$(printf '%-16s %s (%ss)' "$suite" "$status" "$elapsed")")
done

echo
echo "compat results:"
for r in "${RESULTS[@]}"; do
    echo "  $r"
done
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
