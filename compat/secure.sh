#!/usr/bin/env bash
# Secured client-interop matrix: each external Kafka client against a Freshet broker with TLS,
# SASL and ACLs (see docs/COMPATIBILITY.md and docs/SECURITY.md).
#
#   bash compat/secure.sh [kcat|confluent-kafka|kafka-python|aiokafka|kafkajs|restart ...]
#                                                                        (default: all)
#
# Builds nothing. The broker binary is $FRESHET_BIN (default: target/release/freshet under the
# repository root); the clients come from .ci/install-compat.sh, the certificates from
# compat/certs.sh (made here, in a temporary directory, once per run).
#
# Each suite gets its own broker on a new data dir, with three listeners on 127.0.0.1 (ports
# picked by the kernel and read from the broker's start-up lines):
#   SASL_SSL        TLS + SASL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)
#   SASL_PLAINTEXT  SASL without TLS
#   SSL             TLS with client certificates signed by the test CA (principal User:<CN>)
# and --authorizer acl --super-users User:admin (and --auto-create-topics true, which only
# admin may use: kcat has no other way to create a topic). While it runs, `freshet users add`
# adds admin and alice, and `freshet acls add` gives User:alice (the SASL user and the SSL
# certificate CN=alice alike) Read+Write on topic `granted` and Read on groups prefixed
# `alice-`, and nothing on topic `secret`. The suite's client program (compat/secure_*.py,
# compat/secure_kcat.sh, compat/kafkajs/secure.js) first creates both topics as admin, then
# for each combination SASL_SSL+SCRAM-SHA-256, SASL_SSL+SCRAM-SHA-512, SASL_PLAINTEXT+PLAIN
# and SSL+client certificate (every client here supports all four) checks:
#   produce-consume   alice produces to `granted` and consumes it back in group alice-...
#   bad-credentials   a wrong password (SSL: a self-signed CN=alice certificate) fails fast
#                     with the client's authentication error
#   topic-denied      producing to `secret` fails with TOPIC_AUTHORIZATION_FAILED
#   group-denied      consuming `granted` in a group alice may not read fails with
#                     GROUP_AUTHORIZATION_FAILED
#   metadata-hides    listing topics shows `granted` but not `secret`
# The `restart` suite sets up a broker the same way, has confluent-kafka produce and consume
# as alice, restarts the broker on the same data dir, and runs the confluent-kafka checks
# again: the users and ACLs must have survived.
#
# Each client program prints `ok N - ...` per verified step and one machine-readable line per
# check, `RESULT|client|combination|check|PASS/FAIL/SKIP|detail`; the runner ends with the
# table of those, a line per suite and `N passed, M failed` (suites).
#
# Environment knobs:
#   FRESHET_BIN                 broker binary
#   PYTHON                      interpreter for the Python clients (default .ci/venv/bin/python)
#   SECURE_SUITE_TIMEOUT        seconds per suite before it is killed (default 150)
#   COMPAT_STARTUP_TIMEOUT      seconds to wait for the broker's listen lines (default 30)
#   SECURE_COMBOS               combinations to run, comma-separated, of sasl_ssl-scram256,
#                               sasl_ssl-scram512, sasl_plaintext-plain, ssl-cert (default all)
#   SECURE_FAST_SECONDS         how soon bad credentials must be reported (default 10)
#   SECURE_SASL_SSL_CLIENT_CERT 0 (default): SASL_SSL clients present no certificate; 1: they
#                               present one no ACL names (see below)
#   FRESHET_LOG                 broker log filter (default info; freshet_broker=debug shows
#                               every request); the log of a failed suite is printed (tail),
#                               all logs kept if COMPAT_KEEP_LOGS=1
#   Client debug logs: LIBRDKAFKA_DEBUG=security,broker,protocol (kcat, confluent-kafka),
#   KAFKA_PYTHON_DEBUG=1, AIOKAFKA_DEBUG=1, KAFKAJS_LOG_LEVEL=DEBUG.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPAT="$ROOT/compat"
LOG_PREFIX=secure
# shellcheck source=lib.sh
source "$COMPAT/lib.sh"
ALL_SUITES=(kcat confluent-kafka kafka-python aiokafka kafkajs restart)
SUITE_TIMEOUT="${SECURE_SUITE_TIMEOUT:-150}"
STARTUP_TIMEOUT="${COMPAT_STARTUP_TIMEOUT:-30}"
PROTOCOLS=(SASL_SSL SASL_PLAINTEXT SSL)

log() { echo "secure: $*"; }

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
            kcat | confluent-kafka | kafka-python | aiokafka | kafkajs | restart) SUITES+=("$arg") ;;
            confluent_kafka) SUITES+=(confluent-kafka) ;;
            kafka_python) SUITES+=(kafka-python) ;;
            -h | --help) usage ;;
            *) echo "secure: unknown suite '$arg'" >&2; usage ;;
        esac
    done
fi

# --- broker binary, interpreter, openssl ----------------------------------------------
find_freshet_bin
find_python
command -v openssl >/dev/null 2>&1 || {
    echo "secure: openssl is not installed (run .ci/install-compat.sh)" >&2
    exit 2
}

suite_cmd() { # sets CMD array for suite $1
    case "$1" in
        kcat) CMD=(bash "$COMPAT/secure_kcat.sh") ;;
        confluent-kafka | restart) CMD=("$PYTHON" -u "$COMPAT/secure_confluent_kafka.py") ;;
        kafka-python) CMD=("$PYTHON" -u "$COMPAT/secure_kafka_python.py") ;;
        aiokafka) CMD=("$PYTHON" -u "$COMPAT/secure_aiokafka.py") ;;
        kafkajs) CMD=(node "$COMPAT/kafkajs/secure.js") ;;
    esac
}

suite_prereq() { # echoes a reason and returns 1 if the suite's client is missing
    local mod=""
    case "$1" in
        kcat) command -v kcat >/dev/null 2>&1 || { echo "kcat is not installed (run .ci/install-compat.sh)"; return 1; } ;;
        confluent-kafka | restart) mod=confluent_kafka ;;
        kafka-python) mod=kafka ;;
        aiokafka) mod=aiokafka ;;
        kafkajs)
            command -v node >/dev/null 2>&1 || { echo "node is not installed"; return 1; }
            [[ -d "$COMPAT/kafkajs/node_modules/kafkajs" ]] ||
                { echo "compat/kafkajs/node_modules missing (run .ci/install-compat.sh)"; return 1; }
            ;;
    esac
    if [[ -n "$mod" ]]; then
        [[ -n "$PYTHON" ]] || { echo "no python3 found"; return 1; }
        "$PYTHON" -c "import $mod" >/dev/null 2>&1 ||
            { echo "python module '$mod' missing for $PYTHON (run .ci/install-compat.sh)"; return 1; }
    fi
}

# --- work dir, certificates, credentials ----------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/freshet-secure.XXXXXX")"
declare -A PORT=()
clean_up_on_exit

CERTS="$WORK/certs"
log "making the CA, broker and client certificates with compat/certs.sh in $CERTS"
if ! bash "$COMPAT/certs.sh" "$CERTS" alice admin sasl-client >"$WORK/certs.log" 2>&1; then
    sed 's/^/  certs| /' "$WORK/certs.log" >&2
    echo "secure: compat/certs.sh failed" >&2
    exit 1
fi
# A certificate that claims CN=alice but that the test CA never signed: the SSL listener must
# refuse it (the SSL counterpart of a wrong password).
mkdir -p "$CERTS/rogue"
if ! openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj "/CN=alice" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=clientAuth" \
    -keyout "$CERTS/rogue/alice.key" -out "$CERTS/rogue/alice.crt" >>"$WORK/certs.log" 2>&1; then
    sed 's/^/  certs| /' "$WORK/certs.log" >&2
    echo "secure: making the self-signed rogue certificate failed" >&2
    exit 1
fi
# --tls-client-ca requires certificates on the SSL listener only (as Kafka scopes
# ssl.client.auth since KIP-684), so SASL_SSL clients present none by default, as most
# deployments run. SECURE_SASL_SSL_CLIENT_CERT=1 makes them present CN=sasl-client, a
# principal with no ACL, so a broker that took the certificate's principal instead of the
# SASL user's would fail the checks.
SASL_SSL_CLIENT_CERT="${SECURE_SASL_SSL_CLIENT_CERT:-0}"
ADMIN_PASSWORD="admin-$(openssl rand -hex 8)"
ALICE_PASSWORD="alice-$(openssl rand -hex 8)"

# --- broker lifecycle -------------------------------------------------------------------
# start_broker DATA LOG: starts the broker on DATA, waits for a start-up line per listener,
# sets BROKER_PID and PORT[protocol].
start_broker() {
    local data="$1" log="$2" deadline proto line missing
    mkdir -p "$data"
    env -u FRESHET_ADVERTISED_ADDR -u FRESHET_KAFKA_LISTEN -u FRESHET_DATA_DIR \
        -u FRESHET_TLS_CERT -u FRESHET_TLS_KEY -u FRESHET_TLS_CLIENT_CA -u FRESHET_AUTHORIZER \
        -u FRESHET_SUPER_USERS -u FRESHET_ALLOW_ANONYMOUS \
        FRESHET_LOG="${FRESHET_LOG:-info}" \
        "$FRESHET_BIN" broker \
        --kafka-listen SASL_SSL://127.0.0.1:0 \
        --kafka-listen SASL_PLAINTEXT://127.0.0.1:0 \
        --kafka-listen SSL://127.0.0.1:0 \
        --tls-cert "$CERTS/broker.crt" --tls-key "$CERTS/broker.key" \
        --tls-client-ca "$CERTS/ca.crt" \
        --authorizer acl --super-users User:admin \
        --data-dir "$data" \
        --auto-create-topics true --default-partitions 1 \
        </dev/null >>"$log" 2>&1 &
    BROKER_PID=$!
    PORT=()
    deadline=$((SECONDS + STARTUP_TIMEOUT))
    while ((SECONDS < deadline)); do
        missing=0
        for proto in "${PROTOCOLS[@]}"; do
            [[ -n "${PORT[$proto]:-}" ]] && continue
            line="$(grep -o "Kafka protocol on 127\.0\.0\.1:[0-9]\+ ($proto," "$log" 2>/dev/null | tail -n 1 || true)"
            if [[ -n "$line" ]]; then
                line="${line% (*}"
                PORT[$proto]="${line##*:}"
            else
                missing=1
            fi
        done
        [[ $missing -eq 0 ]] && break
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "secure: broker exited during startup; its output:" >&2
            sed 's/^/  broker| /' "$log" >&2
            BROKER_PID=""
            return 1
        fi
        sleep 0.05
    done
    if [[ $missing -ne 0 ]]; then
        echo "secure: broker did not print a 'Kafka protocol on 127.0.0.1:PORT (PROTOCOL, ...' line for each of ${PROTOCOLS[*]} within ${STARTUP_TIMEOUT}s; its output:" >&2
        sed 's/^/  broker| /' "$log" >&2
        return 1
    fi
    for proto in "${PROTOCOLS[@]}"; do # the lines come after bind; still, check each port
        until (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$proto]}") 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                echo "secure: broker announced $proto on port ${PORT[$proto]} but it does not accept connections" >&2
                return 1
            fi
            sleep 0.05
        done
    done
}

# fr ARGS...: a freshet admin command (users, acls) on the suite's data dir, output to $SETUP_LOG.
fr() {
    env -u FRESHET_DATA_DIR "$FRESHET_BIN" "$@" --data-dir "$DATA" >>"$SETUP_LOG" 2>&1 || {
        echo "secure: 'freshet $*' failed:" >&2
        sed 's/^/  setup| /' "$SETUP_LOG" >&2
        return 1
    }
}

# setup_security: users and ACLs, added with the CLI while the broker runs.
setup_security() {
    FRESHET_USER_PASSWORD="$ADMIN_PASSWORD" fr users add admin || return 1
    FRESHET_USER_PASSWORD="$ALICE_PASSWORD" fr users add alice || return 1
    fr acls add --allow-principal User:alice --operation Read --operation Write --topic granted || return 1
    fr acls add --allow-principal User:alice --operation Read --group alice- \
        --resource-pattern-type prefixed || return 1
    # The broker reads ACL changes within a second; give it that before the first client.
    sleep 1.2
}

# run_client SUITE PHASE: runs the suite's client program against the running broker.
run_client() {
    local suite="$1" phase="$2" rc
    suite_cmd "$suite"
    set +e
    (cd "$COMPAT" &&
        SASL_SSL_BOOTSTRAP="127.0.0.1:${PORT[SASL_SSL]}" \
        SASL_PLAINTEXT_BOOTSTRAP="127.0.0.1:${PORT[SASL_PLAINTEXT]}" \
        SSL_BOOTSTRAP="127.0.0.1:${PORT[SSL]}" \
        CERTS_DIR="$CERTS" SASL_SSL_CLIENT_CERT="$SASL_SSL_CLIENT_CERT" ADMIN_PASSWORD="$ADMIN_PASSWORD" ALICE_PASSWORD="$ALICE_PASSWORD" \
        SECURE_PHASE="$phase" SECURE_SUITE="$suite" PYTHONDONTWRITEBYTECODE=1 \
        timeout -k 10 "$SUITE_TIMEOUT" "${CMD[@]}" </dev/null) 2>&1 |
        tee -a "$RESULTS_RAW" | grep -v '^RESULT|' | sed -u "s/^/  $suite| /"
    rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

# --- run the suites -------------------------------------------------------------------
log "broker $FRESHET_BIN ($("$FRESHET_BIN" --version 2>/dev/null || echo 'version unknown'))"
log "suites: ${SUITES[*]}; per-suite timeout ${SUITE_TIMEOUT}s"

RESULTS_RAW="$WORK/results.raw"
: >"$RESULTS_RAW"
PASSED=0
FAILED=0
SUITE_LINES=()
for suite in "${SUITES[@]}"; do
    dir="$WORK/$suite"
    DATA="$dir/data"
    SETUP_LOG="$dir/setup.log"
    blog="$dir/broker.log"
    mkdir -p "$dir"
    echo
    echo "=== secure suite: $suite"
    start_ts=$SECONDS
    status=""
    rc=0
    if ! reason="$(suite_prereq "$suite")"; then
        status="FAIL ($reason)"
    elif ! start_broker "$DATA" "$blog"; then
        status="FAIL (broker did not start)"
    else
        log "broker pid $BROKER_PID: SASL_SSL 127.0.0.1:${PORT[SASL_SSL]}, SASL_PLAINTEXT 127.0.0.1:${PORT[SASL_PLAINTEXT]}, SSL 127.0.0.1:${PORT[SSL]}; data in $DATA"
        if ! setup_security; then
            status="FAIL (users/ACLs setup failed)"
        else
            log "users admin, alice; ACLs: alice Read+Write topic granted, Read groups alice-*"
            if [[ "$suite" == restart ]]; then
                run_client "$suite" before-restart || rc=$?
                if [[ $rc -eq 0 ]]; then
                    log "restarting the broker on $DATA"
                    stop_broker
                    blog="$dir/broker-restarted.log"
                    if ! start_broker "$DATA" "$blog"; then
                        status="FAIL (broker did not restart)"
                    else
                        log "broker restarted: pid $BROKER_PID: SASL_SSL 127.0.0.1:${PORT[SASL_SSL]}, SASL_PLAINTEXT 127.0.0.1:${PORT[SASL_PLAINTEXT]}, SSL 127.0.0.1:${PORT[SSL]}"
                        run_client "$suite" after-restart || rc=$?
                    fi
                fi
            else
                run_client "$suite" matrix || rc=$?
            fi
        fi
        if [[ -z "$status" ]]; then
            broker_alive=1
            kill -0 "$BROKER_PID" 2>/dev/null || broker_alive=0
            if [[ $rc -eq 0 && $broker_alive -eq 1 ]]; then
                status="PASS"
            elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
                status="FAIL (timed out after ${SUITE_TIMEOUT}s)"
            elif [[ $broker_alive -eq 0 ]]; then
                status="FAIL (broker died during the suite; client exit $rc)"
            else
                status="FAIL (exit $rc)"
            fi
        fi
        stop_broker
        if [[ "$status" != PASS ]]; then
            echo "secure: last 80 lines of the broker log ($blog):"
            tail -n 80 "$blog" | sed 's/^/  broker| /'
        fi
    fi
    elapsed=$((SECONDS - start_ts))
    if [[ "$status" == PASS ]]; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
    fi
    echo "=== secure suite: $suite: $status (${elapsed}s)"
    SUITE_LINES+=("$(printf '%-16s %s (%ss)' "$suite" "$status" "$elapsed")")
done

# --- the matrix -----------------------------------------------------------------------
echo
echo "secure matrix (client x combination x check; details in the ok/FAIL lines above):"
"${PYTHON:-python3}" - "$RESULTS_RAW" <<'PY' || true
import sys
checks = ["produce-consume", "bad-credentials", "topic-denied", "group-denied", "metadata-hides"]
rows, seen = {}, []
for line in open(sys.argv[1], errors="replace"):
    parts = line.rstrip("\n").split("|", 5)
    if len(parts) < 5 or parts[0] != "RESULT":
        continue
    _, client, combo, check, status = parts[:5]
    key = (client, combo)
    if key not in rows:
        rows[key] = {}
        seen.append(key)
    if check not in checks:
        checks.append(check)
    rows[key][check] = status
width = max([len(f"{c} {m}") for c, m in seen] + [24])
print("  " + "client / combination".ljust(width) + "".join(f" {c:>16}" for c in checks))
for key in seen:
    label = f"{key[0]} {key[1]}"
    print("  " + label.ljust(width) + "".join(f" {rows[key].get(c, '-'):>16}" for c in checks))
counts = {}
for r in rows.values():
    for s in r.values():
        counts[s] = counts.get(s, 0) + 1
print(f"  checks: {counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, {counts.get('SKIP', 0)} SKIP")
PY

echo
echo "secure results:"
for r in "${SUITE_LINES[@]}"; do
    echo "  $r"
done
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
