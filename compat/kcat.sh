#!/usr/bin/env bash
# kcat interop suite (Debian's kcat, i.e. librdkafka 2.0.x: the old-librdkafka canary).
#
#   BOOTSTRAP=127.0.0.1:9092 bash compat/kcat.sh
#
# Covers: metadata listing (-L), keyed produce with acks=all (-P -K:), consume everything from
# the beginning (-C -o beginning -e) and compare keys/values/offsets, and a balanced consumer
# group (-G) that auto-commits: a first member consumes part of the topic and commits on close,
# a second member must resume exactly after the committed offsets, and a third must find
# nothing left. kcat has no offset-fetch command, so the committed offsets are checked through
# these resumptions. Exit code 0 = pass.
# Knobs: COMPAT_RECORDS (default 60), COMPAT_STEP_TIMEOUT seconds (default 60),
#        KCAT_DEBUG=protocol,broker,cgrp (passed to kcat -d).
set -euo pipefail

: "${BOOTSTRAP:?BOOTSTRAP must be set to host:port of the broker}"
N="${COMPAT_RECORDS:-60}"
K=$((N / 3)) # records the first group member consumes and commits
STEP_TIMEOUT="${COMPAT_STEP_TIMEOUT:-60}"
RUN_ID="$(date +%s)-$$-$RANDOM"
TOPIC="compat-kcat-$RUN_ID"
GROUP="compat-kcat-group-$RUN_ID"
PARTITIONS=3 # the broker's default for auto-created topics (compat/run.sh passes it)

TMP="$(mktemp -d "${TMPDIR:-/tmp}/compat-kcat.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

COMMON=(-b "$BOOTSTRAP" -m 10 -X socket.timeout.ms=10000 -X api.version.request=true)
if [[ -n "${KCAT_DEBUG:-}" ]]; then
    COMMON+=(-d "$KCAT_DEBUG")
fi
FMT='%p\t%o\t%k\t%s\n' # partition, offset, key, value

STEP=0
ok() {
    STEP=$((STEP + 1))
    echo "ok $STEP - $*"
}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# kc LABEL ARGS...: runs kcat with a timeout, stdout to $TMP/LABEL.out, stderr to
# $TMP/LABEL.err; fails the suite with a clear message on timeout or error exit.
kc() {
    local label="$1" rc=0
    shift
    timeout -k 5 "$STEP_TIMEOUT" kcat "${COMMON[@]}" "$@" >"$TMP/$label.out" 2>"$TMP/$label.err" || rc=$?
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "--- kcat $label stderr (last 40 lines):" >&2
        tail -n 40 "$TMP/$label.err" >&2
        fail "kcat $label timed out after ${STEP_TIMEOUT}s (kcat $*)"
    elif [[ $rc -ne 0 ]]; then
        echo "--- kcat $label stderr (last 40 lines):" >&2
        tail -n 40 "$TMP/$label.err" >&2
        fail "kcat $label exited with $rc (kcat $*)"
    fi
}

# keyvals FILE: the sorted key<TAB>value pairs of a consumed-records file.
keyvals() { cut -f3,4 "$1" | sort; }

echo "# kcat: $(kcat -V 2>&1 | grep -m1 '^Version' || echo unknown)"
echo "# topic $TOPIC, group $GROUP, $N records, bootstrap $BOOTSTRAP"

# 1. Metadata: the broker is listed.
kc meta-brokers -L
grep -Eq '^ *1 brokers?:' "$TMP/meta-brokers.out" ||
    { cat "$TMP/meta-brokers.out" >&2; fail "kcat -L did not list exactly 1 broker"; }
grep -Eq "broker [0-9-]+ at $BOOTSTRAP" "$TMP/meta-brokers.out" ||
    { cat "$TMP/meta-brokers.out" >&2; fail "kcat -L does not show a broker at $BOOTSTRAP"; }
ok "metadata lists the broker at $BOOTSTRAP"

# 2. Produce N keyed records (auto-creates the topic), acks=all.
for ((i = 0; i < N; i++)); do
    printf 'key-%03d:value-%03d-%s\n' "$i" "$i" "$RUN_ID"
done >"$TMP/input.txt"
kc produce -P -t "$TOPIC" -K: -X acks=all -X message.timeout.ms=30000 -l "$TMP/input.txt"
if grep -q 'Delivery failed' "$TMP/produce.err"; then
    cat "$TMP/produce.err" >&2
    fail "kcat -P reported delivery failures"
fi
tr ':' '\t' <"$TMP/input.txt" | sort >"$TMP/expected.kv"
ok "produced $N keyed records with acks=all"

# 3. Metadata: the topic appears with its partition count, each partition led by the broker.
kc meta-topic -L -t "$TOPIC"
grep -q "topic \"$TOPIC\" with $PARTITIONS partitions:" "$TMP/meta-topic.out" ||
    { cat "$TMP/meta-topic.out" >&2; fail "kcat -L -t $TOPIC does not show $PARTITIONS partitions"; }
if grep -qi 'error' "$TMP/meta-topic.out"; then
    cat "$TMP/meta-topic.out" >&2
    fail "kcat -L -t $TOPIC shows an error"
fi
got_parts="$(grep -Ec '^ +partition [0-9]+, leader [0-9]+' "$TMP/meta-topic.out" || true)"
[[ "$got_parts" -eq $PARTITIONS ]] ||
    { cat "$TMP/meta-topic.out" >&2; fail "expected $PARTITIONS partitions with a leader, got $got_parts"; }
ok "metadata lists topic $TOPIC with $PARTITIONS partitions"

# 4. Consume everything from the beginning and compare.
kc consume-all -C -t "$TOPIC" -o beginning -e -f "$FMT"
got="$(wc -l <"$TMP/consume-all.out")"
[[ "$got" -eq "$N" ]] || fail "consume from beginning returned $got records, expected $N"
keyvals "$TMP/consume-all.out" >"$TMP/all.kv"
if ! diff -u "$TMP/expected.kv" "$TMP/all.kv" >"$TMP/all.diff"; then
    head -n 40 "$TMP/all.diff" >&2
    fail "consumed keys/values differ from produced ones"
fi
# Offsets within each partition must run 0,1,2,... without gaps or repeats.
if ! awk -F'\t' '{ if ($2 != next_off[$1] + 0) { printf "partition %s: offset %s, expected %d\n", $1, $2, next_off[$1] + 0; bad = 1 } next_off[$1] = $2 + 1 }
                  END { exit bad }' "$TMP/consume-all.out" >&2; then
    fail "offsets are not contiguous from 0 in each partition"
fi
ok "consumed all $N records from the beginning: keys, values and offsets match"

# 5. Consumer group: member 1 consumes K records; kcat stores their offsets and the
#    consumer's close commits them (enable.auto.commit).
GROUP_OPTS=(-G "$GROUP" -X auto.offset.reset=earliest -X enable.auto.commit=true
    -X auto.commit.interval.ms=500 -X enable.partition.eof=true -f "$FMT")
kc group-1 "${GROUP_OPTS[@]}" -c "$K" "$TOPIC"
got="$(wc -l <"$TMP/group-1.out")"
[[ "$got" -eq "$K" ]] || fail "group member 1 got $got records, expected $K (-c $K)"
keyvals "$TMP/group-1.out" >"$TMP/g1.kv"
extra="$(comm -13 "$TMP/expected.kv" "$TMP/g1.kv" | head -n 5)"
[[ -z "$extra" ]] || fail "group member 1 got records that were never produced: $extra"
ok "group $GROUP member 1 consumed $K records and committed on close"

# 6. Member 2 (same group) must resume after the committed offsets: exactly the other N-K.
kc group-2 "${GROUP_OPTS[@]}" -e "$TOPIC"
got="$(wc -l <"$TMP/group-2.out")"
keyvals "$TMP/group-2.out" >"$TMP/g2.kv"
dups="$(comm -12 "$TMP/g1.kv" "$TMP/g2.kv" | head -n 5)"
[[ -z "$dups" ]] ||
    fail "group member 2 re-consumed records member 1 committed (committed offsets not honoured): $dups"
sort "$TMP/g1.kv" "$TMP/g2.kv" >"$TMP/g12.kv"
if ! diff -u "$TMP/expected.kv" "$TMP/g12.kv" >"$TMP/g12.diff"; then
    head -n 40 "$TMP/g12.diff" >&2
    fail "group members 1+2 did not together consume every record exactly once (member 2 got $got, expected $((N - K)))"
fi
ok "group member 2 resumed after the committed offsets: got the remaining $((N - K)) records"

# 7. Member 3 (same group) finds nothing left: member 2's offsets were committed too.
kc group-3 "${GROUP_OPTS[@]}" -e "$TOPIC"
got="$(wc -l <"$TMP/group-3.out")"
[[ "$got" -eq 0 ]] || fail "group member 3 got $got records, expected 0 (member 2's commits lost)"
ok "group member 3 found no records left: all offsets committed"

echo "kcat suite: PASS ($STEP checks)"
