#!/usr/bin/env bash
# kcat (Debian's, librdkafka 2.0.x) against a secured Freshet broker; run by compat/secure.sh.
#
#   bash compat/secure.sh kcat
#
# kcat takes librdkafka's settings from a properties file (-F), one per combination here, as a
# user would write it. Setup as admin: the broker auto-creates `granted` and `secret` when the
# super user produces to them, over the SSL listener with the CN=admin certificate (no SASL:
# see the SASL note in the report if it fails). Then, as alice, for SASL_SSL+SCRAM-SHA-256,
# SASL_SSL+SCRAM-SHA-512, SASL_PLAINTEXT+PLAIN and SSL+client certificate (librdkafka does
# them all):
#   produce-consume  kcat -P (acks=all) to `granted`; kcat -G alice-... -e reads the records back
#                    and commits on close; a second member of the group finds nothing left
#   bad-credentials  a wrong password: kcat logs "SASL authentication error" (SSL: a self-signed
#                    CN=alice certificate: the TLS failure) within SECURE_FAST_SECONDS
#   topic-denied     kcat -P to `secret`: "Delivery failed ... Topic authorization failed"
#   group-denied     kcat -G bob-... fails: "% ERROR: Consumer error: FindCoordinator response
#                    error: <broker's message>"; its cgrp debug line has GROUP_AUTHORIZATION_FAILED
#   metadata-hides   kcat -L shows topic "granted", not topic "secret"
# Prints `ok N - ...` and a RESULT|kcat|combination|check|PASS/FAIL|detail line per check.
# Knobs: SECURE_COMBOS, SECURE_FAST_SECONDS (default 10), COMPAT_STEP_TIMEOUT (default 30),
#        LIBRDKAFKA_DEBUG=security,broker,protocol (passed to kcat -d).
set -euo pipefail

for v in SASL_SSL_BOOTSTRAP SASL_PLAINTEXT_BOOTSTRAP SSL_BOOTSTRAP CERTS_DIR ADMIN_PASSWORD ALICE_PASSWORD; do
    [[ -n "${!v:-}" ]] || { echo "missing environment: $v (run through compat/secure.sh)" >&2; exit 2; }
done
FAST="${SECURE_FAST_SECONDS:-10}"
STEP_TIMEOUT="${COMPAT_STEP_TIMEOUT:-30}"
RUN_ID="$(date +%s)-$$"
GRANTED=granted
SECRET=secret
SASL_SSL_CERT=""
[[ "${SASL_SSL_CLIENT_CERT:-1}" == 1 ]] && SASL_SSL_CERT=sasl-client # see compat/secure.sh

TMP="$(mktemp -d "${TMPDIR:-/tmp}/secure-kcat.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

STEP=0
PASSED=0
FAILED=0
ok() {
    STEP=$((STEP + 1))
    echo "ok $STEP - $*"
}
result() { # COMBO CHECK STATUS DETAIL
    echo "RESULT|kcat|$1|$2|$3|$(tr '\n\t' '  ' <<<"$4")"
}

# conf FILE PROTOCOL MECHANISM USER PASSWORD CERT: a librdkafka properties file for kcat -F.
conf() {
    local file="$1" protocol="$2" mechanism="$3" user="$4" password="$5" cert="$6"
    {
        echo "security.protocol=$protocol"
        echo "socket.timeout.ms=10000"
        echo "reconnect.backoff.ms=200"
        echo "reconnect.backoff.max.ms=2000"
        if [[ "$protocol" == *SSL ]]; then
            echo "ssl.ca.location=$CERTS_DIR/ca.crt"
            echo "ssl.endpoint.identification.algorithm=https"
        fi
        if [[ -n "$cert" ]]; then
            echo "ssl.certificate.location=$CERTS_DIR/$cert.crt"
            echo "ssl.key.location=$CERTS_DIR/$cert.key"
        fi
        if [[ "$protocol" == SASL_* ]]; then
            echo "sasl.mechanisms=$mechanism"
            echo "sasl.username=$user"
            echo "sasl.password=$password"
        fi
    } >"$file"
    chmod 600 "$file"
}

# kc CONF LABEL ARGS...: kcat with CONF, stdout/stderr to $TMP/LABEL.{out,err}; returns its
# exit code (124 on timeout).
kc() {
    local cf="$1" label="$2" rc=0
    shift 2
    local debug=()
    [[ -n "${LIBRDKAFKA_DEBUG:-}" ]] && debug=(-d "$LIBRDKAFKA_DEBUG")
    timeout -k 5 "$STEP_TIMEOUT" kcat -F "$cf" -b "$BOOTSTRAP" "${debug[@]}" "$@" \
        >"$TMP/$label.out" 2>"$TMP/$label.err" || rc=$?
    return $rc
}

# kc_until PATTERN SECONDS CONF LABEL ARGS...: runs kcat until its stderr or stdout matches
# PATTERN (then stops it), it exits, or SECONDS pass. Sets UNTIL_SECONDS to when the pattern
# appeared; returns 0 if it did.
kc_until() {
    local pattern="$1" seconds="$2" cf="$3" label="$4" pid start now
    shift 4
    local debug=()
    [[ -n "${LIBRDKAFKA_DEBUG:-}" ]] && debug=(-d "$LIBRDKAFKA_DEBUG")
    start=$(date +%s%N)
    kcat -F "$cf" -b "$BOOTSTRAP" "${debug[@]}" "$@" </dev/null >"$TMP/$label.out" 2>"$TMP/$label.err" &
    pid=$!
    while :; do
        now=$(date +%s%N)
        if grep -Eq "$pattern" "$TMP/$label.err" "$TMP/$label.out" 2>/dev/null; then
            UNTIL_SECONDS=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
            kill -KILL "$pid" 2>/dev/null || true # SIGTERM would wait out kcat's -m
            wait "$pid" 2>/dev/null || true
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null || ((now - start > seconds * 1000000000)); then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            UNTIL_SECONDS=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
            return 1
        fi
        sleep 0.05
    done
}

tail_err() { tail -n 6 "$TMP/$1.err" | tr '\n' ' ' | cut -c1-600; }

# check_* COMBO_ID: each echoes the detail and returns 0 on success, or echoes why and
# returns 1. They use $CONF (alice's settings) and $BOOTSTRAP of the combination.

check_produce_consume() {
    local id="$1" group="alice-kcat-$1-$RUN_ID" got missing
    for i in 0 1 2 3 4; do echo "kcat-$id-$RUN_ID-$i"; done >"$TMP/$id.in"
    if ! kc "$CONF" "$id-produce" -P -t "$GRANTED" -X acks=all -X message.timeout.ms=20000 -l "$TMP/$id.in" ||
        grep -q 'Delivery failed\|ERROR' "$TMP/$id-produce.err"; then
        echo "kcat -P to $GRANTED failed: $(tail_err "$id-produce")"
        return 1
    fi
    local group_opts=(-G "$group" -X auto.offset.reset=earliest -X enable.auto.commit=true
        -X auto.commit.interval.ms=200 -X enable.partition.eof=true -f '%o\t%s\n' -e "$GRANTED")
    if ! kc "$CONF" "$id-consume" "${group_opts[@]}"; then
        echo "kcat -G $group failed: $(tail_err "$id-consume")"
        return 1
    fi
    missing="$(cut -f2 "$TMP/$id-consume.out" | sort | comm -13 - <(sort "$TMP/$id.in") | head -n 3)"
    if [[ -n "$missing" ]]; then
        echo "group $group did not get $(tr '\n' ' ' <<<"$missing") ($(wc -l <"$TMP/$id-consume.out") records; $(tail_err "$id-consume"))"
        return 1
    fi
    if ! kc "$CONF" "$id-consume2" "${group_opts[@]}"; then
        echo "second kcat -G $group failed: $(tail_err "$id-consume2")"
        return 1
    fi
    got="$(wc -l <"$TMP/$id-consume2.out")"
    if [[ "$got" -ne 0 ]]; then
        echo "a second member of $group got $got records: the first one's offsets were not committed"
        return 1
    fi
    echo "produced 5 records (acks=all) to $GRANTED, consumed them back in group $group (-e), which committed on close: a second member found nothing left"
}

check_bad_credentials() {
    local id="$1" cf="$TMP/$1-bad.conf" what pattern
    if [[ "$PROTOCOL" == SSL ]]; then
        conf "$cf" SSL "" "" "" rogue/alice
        what="self-signed CN=alice certificate"
        pattern='SSL|certificate|alert'
    else
        conf "$cf" "$PROTOCOL" "$MECHANISM" alice "not-$ALICE_PASSWORD" "$CLIENT_CERT"
        what="wrong password"
        pattern='SASL authentication error|Authentication failed'
    fi
    if ! kc_until "$pattern" "$FAST" "$cf" "$id-bad" -L -m "$FAST"; then
        echo "$what: no '$pattern' from kcat -L within ${UNTIL_SECONDS}s: $(tail_err "$id-bad")"
        return 1
    fi
    echo "$what: kcat logged \"$(grep -Eh -m1 "$pattern" "$TMP/$id-bad.err" "$TMP/$id-bad.out" | sed 's/^%[0-9]|[0-9.]*|//' | cut -c1-300)\" after ${UNTIL_SECONDS}s"
}

check_topic_denied() {
    local id="$1"
    echo "must not be stored" >"$TMP/$id.secret"
    kc "$CONF" "$id-secret" -P -t "$SECRET" -X message.timeout.ms=15000 -l "$TMP/$id.secret" || true
    if ! grep -q 'Topic authorization failed' "$TMP/$id-secret.err"; then
        echo "kcat -P to $SECRET: no 'Topic authorization failed': $(tail_err "$id-secret")"
        return 1
    fi
    echo "kcat -P to $SECRET: \"$(grep -h -m1 'Topic authorization failed' "$TMP/$id-secret.err" | sed 's/^%[0-9]|[0-9.]*|//' | cut -c1-200)\""
}

# kcat prints the consumer error with the broker's message only ("FindCoordinator response
# error: not authorized to describe group ..."); librdkafka's cgrp debug line names the code.
check_group_denied() {
    local id="$1" group="bob-kcat-$1-$RUN_ID"
    if ! kc_until 'Group authorization failed|GROUP_AUTHORIZATION_FAILED' "$STEP_TIMEOUT" "$CONF" "$id-bob" \
        -X debug=cgrp -G "$group" -X auto.offset.reset=earliest -f '%o\t%s\n' "$GRANTED"; then
        echo "kcat -G $group: no 'Group authorization failed' within ${UNTIL_SECONDS}s: $(tail_err "$id-bob")"
        return 1
    fi
    if [[ -s "$TMP/$id-bob.out" ]]; then
        echo "kcat -G $group consumed records: $(head -n 2 "$TMP/$id-bob.out")"
        return 1
    fi
    echo "kcat -G $group: \"$(grep -Eh -m1 'Group authorization failed|GROUP_AUTHORIZATION_FAILED' "$TMP/$id-bob.err" "$TMP/$id-bob.out" | sed 's/^%[0-9]|[0-9.]*|[A-Z]*|[^ ]* [^ ]* //' | cut -c1-200)\" after ${UNTIL_SECONDS}s; $(grep -h -m1 'ERROR' "$TMP/$id-bob.err" | cut -c1-200)"
}

check_metadata_hides() {
    local id="$1"
    if ! kc "$CONF" "$id-meta" -L -m 10; then
        echo "kcat -L failed: $(tail_err "$id-meta")"
        return 1
    fi
    if ! grep -q "topic \"$GRANTED\"" "$TMP/$id-meta.out"; then
        echo "kcat -L does not list $GRANTED: $(tr '\n' ' ' <"$TMP/$id-meta.out" | cut -c1-300)"
        return 1
    fi
    if grep -q "topic \"$SECRET\"" "$TMP/$id-meta.out"; then
        echo "kcat -L lists $SECRET"
        return 1
    fi
    echo "kcat -L lists topics: $(grep -o 'topic "[^"]*"' "$TMP/$id-meta.out" | tr '\n' ' ')"
}

echo "# kcat: $(kcat -V 2>&1 | grep -m1 '^Version' || echo unknown); phase ${SECURE_PHASE:-matrix}"

# --- setup: admin creates the topics (auto-creation) over SSL with the CN=admin certificate.
BOOTSTRAP="$SSL_BOOTSTRAP"
conf "$TMP/admin.conf" SSL "" "" "" admin
for topic in "$GRANTED" "$SECRET"; do
    echo "created by admin" >"$TMP/setup.in"
    if ! kc "$TMP/admin.conf" "setup-$topic" -P -t "$topic" -X acks=all -l "$TMP/setup.in" ||
        grep -q 'Delivery failed\|ERROR' "$TMP/setup-$topic.err"; then
        echo "FAIL: setup: admin could not create $topic: $(tail_err "setup-$topic")" >&2
        exit 1
    fi
done
kc "$TMP/admin.conf" setup-meta -L -m 10 || true
if ! grep -q "topic \"$SECRET\"" "$TMP/setup-meta.out"; then
    echo "FAIL: setup: admin's kcat -L does not list $SECRET" >&2
    exit 1
fi
ok "setup: admin (super user, SSL with the CN=admin certificate) created topics $GRANTED and $SECRET"

# --- the matrix
COMBOS=(sasl_ssl-scram256 sasl_ssl-scram512 sasl_plaintext-plain ssl-cert)
if [[ -n "${SECURE_COMBOS:-}" ]]; then
    IFS=, read -r -a COMBOS <<<"$SECURE_COMBOS"
fi
for id in "${COMBOS[@]}"; do
    case "$id" in
        sasl_ssl-scram256) LABEL=SASL_SSL+SCRAM-SHA-256 PROTOCOL=SASL_SSL MECHANISM=SCRAM-SHA-256 CLIENT_CERT="$SASL_SSL_CERT" BOOTSTRAP="$SASL_SSL_BOOTSTRAP" ;;
        sasl_ssl-scram512) LABEL=SASL_SSL+SCRAM-SHA-512 PROTOCOL=SASL_SSL MECHANISM=SCRAM-SHA-512 CLIENT_CERT="$SASL_SSL_CERT" BOOTSTRAP="$SASL_SSL_BOOTSTRAP" ;;
        sasl_plaintext-plain) LABEL=SASL_PLAINTEXT+PLAIN PROTOCOL=SASL_PLAINTEXT MECHANISM=PLAIN CLIENT_CERT="" BOOTSTRAP="$SASL_PLAINTEXT_BOOTSTRAP" ;;
        ssl-cert) LABEL=SSL+client-cert PROTOCOL=SSL MECHANISM="" CLIENT_CERT=alice BOOTSTRAP="$SSL_BOOTSTRAP" ;;
        *) echo "SECURE_COMBOS: unknown combination $id" >&2; exit 2 ;;
    esac
    CONF="$TMP/$id.conf"
    conf "$CONF" "$PROTOCOL" "$MECHANISM" alice "$ALICE_PASSWORD" "$CLIENT_CERT"
    for check in produce-consume bad-credentials topic-denied group-denied metadata-hides; do
        started=$SECONDS
        if detail="$("check_${check//-/_}" "$id")"; then
            ok "[$LABEL] $check: $detail ($((SECONDS - started))s)"
            result "$LABEL" "$check" PASS "$detail"
            PASSED=$((PASSED + 1))
        else
            echo "FAIL: [$LABEL] $check: $detail" >&2
            result "$LABEL" "$check" FAIL "$detail"
            FAILED=$((FAILED + 1))
        fi
    done
done

if [[ $FAILED -eq 0 ]]; then
    echo "kcat secure suite: PASS ($PASSED checks passed, 0 failed, 0 skipped)"
else
    echo "kcat secure suite: FAIL ($PASSED checks passed, $FAILED failed, 0 skipped)"
    exit 1
fi
