#!/usr/bin/env bash
# Runs the shell examples of README.md verbatim, in order, against a fresh `freshet up`, and
# fails if any of them fails: the README's promise that a newcomer sees every command work.
#
#   FRESHET_BIN=target/release/freshet bash scripts/readme-examples.sh
#
# Every line of every ```sh block runs in one bash (so `export` carries over), in a temporary
# directory (so `./freshet-data` is fresh), with `freshet` on PATH. Before the first block the
# script starts `freshet up` on the default ports (127.0.0.1:9092 and :8000, which must be
# free), as the README's first command does. How a line is judged:
#
# - `curl` fails on a connection error, a 5xx, and a 4xx, except that a line whose comment
#   names a 4xx (`# 401 each`, `# 423 ...`) must get exactly that; `curl -N` on a stream runs 3 s.
# - A server line (`freshet up|broker|tracker|guard`, not ending in `&`) must still be running
#   after 6 s; `freshet up` is run after stopping the script's own one, which then restarts.
#   A server line ending in `&` replaces the running `freshet up` (the guard walkthrough).
# - Skipped, with the reason printed: `cargo ...` (CI builds and tests the workspace itself)
#   and `freshet bench broker|soak` (minutes each; see docs/BENCHMARKS.md).
#
# The SASL_SSL broker example needs `broker.pem` and `broker-key.pem`: the script makes a
# self-signed pair with openssl, as a reader would have their own. The users and ACL examples
# write to /var/lib/freshet as the README says (CI runs as root on a throwaway machine).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FRESHET_BIN="${FRESHET_BIN:-$ROOT/target/release/freshet}"
[[ -x "$FRESHET_BIN" ]] || { echo "readme: no freshet binary at $FRESHET_BIN" >&2; exit 2; }
WORK="$(mktemp -d)"
mkdir -p "$WORK/bin"
ln -s "$(cd "$(dirname "$FRESHET_BIN")" && pwd)/$(basename "$FRESHET_BIN")" "$WORK/bin/freshet"
export PATH="$WORK/bin:$PATH"
cd "$WORK"
SERVER_PID=""
failures=0
ran=0

log() { printf 'readme: %s\n' "$*" >&2; }

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null
    fi
    SERVER_PID=""
    # A walkthrough's own `freshet up &` is a child of this shell too.
    pkill -TERM -P $$ -f 'freshet up' 2>/dev/null
    sleep 1
}

wait_for_api() {
    for _ in $(seq 1 120); do
        if command curl -sf -o /dev/null http://127.0.0.1:8000/healthz; then return 0; fi
        sleep 0.5
    done
    log "freshet up did not answer on http://127.0.0.1:8000/healthz within 60 s"
    return 1
}

start_server() {
    freshet up >>"$WORK/up.log" 2>&1 &
    SERVER_PID=$!
    wait_for_api
}

trap 'stop_server; pkill -TERM -P $$ 2>/dev/null; rm -rf "$WORK"' EXIT

# curl as the README writes it, judged by its HTTP status (see the header).
curl() {
    local out status
    out="$(command curl -sS --max-time 30 -w '\n%{http_code}' "$@")" || return $?
    status="${out##*$'\n'}"
    printf '%s\n' "${out%$'\n'*}"
    if [[ "$status" == 000 || "$status" -ge 500 ]]; then
        log "HTTP $status"; return 1
    fi
    if [[ -n "${README_EXPECT_4XX:-}" && "$README_EXPECT_4XX" != *"$status"* ]]; then
        log "HTTP $status where the line expects ${README_EXPECT_4XX}"; return 1
    fi
    if [[ "$status" -ge 400 && -z "${README_EXPECT_4XX:-}" ]]; then
        log "HTTP $status"; return 1
    fi
}
export -f curl log

# The README's sh blocks, one logical line (continuations joined) per output line.
readme_lines() {
    awk '
        /^```sh$/ { inside = 1; next }
        /^```/    { inside = 0; next }
        inside {
            if (sub(/\\$/, "")) { pending = pending $0; next }
            print pending $0; pending = ""
        }' "$ROOT/README.md"
}

is_server() { [[ "$1" =~ ^([A-Z_]+=[^ ]+\ )*freshet\ (up|broker|tracker|guard)([[:space:]]|$) ]]; }

judge() {
    local line="$1" status=0
    if [[ "$line" =~ ^cargo\  ]]; then
        log "skip (CI builds and tests the workspace itself): $line"; return 0
    fi
    if [[ "$line" =~ ^freshet\ bench\ (broker|soak) ]]; then
        log "skip (minutes long, see docs/BENCHMARKS.md): $line"; return 0
    fi
    ran=$((ran + 1))
    log "run: $line"
    local allowed
    allowed="$(grep -oE '# .*' <<<"$line" | grep -oE '\b4[0-9][0-9]\b' | tr '\n' ' ')"
    if is_server "$line" && [[ "$line" =~ \&[[:space:]]*(#.*)?$ ]]; then
        stop_server
        eval "$line"
        wait_for_api || status=1
    elif is_server "$line"; then
        local restart=0
        if [[ "$line" =~ freshet\ up ]]; then stop_server; restart=1; fi
        timeout 6 bash -c "$line" >>"$WORK/servers.log" 2>&1
        status=$?
        if [[ $status == 124 ]]; then status=0; else log "exited with $status before 6 s"; tail -5 "$WORK/servers.log" >&2; fi
        if [[ $restart == 1 ]]; then start_server || status=1; fi
    elif [[ "$line" =~ curl\ -N ]]; then
        timeout 3 bash -c "$line" >/dev/null
        status=$?
        [[ $status == 124 ]] && status=0
    else
        README_EXPECT_4XX="$allowed" eval "$line"
        status=$?
    fi
    if [[ $status != 0 ]]; then
        log "FAILED ($status): $line"
        failures=$((failures + 1))
    fi
}

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=broker.example.com \
    -keyout broker-key.pem -out broker.pem 2>/dev/null \
    || log "openssl could not make broker.pem; the SASL_SSL broker example will fail"
start_server || exit 1
while IFS= read -r line; do
    [[ -z "${line// }" ]] && continue
    judge "$line" </dev/null
done < <(readme_lines)

log "$ran examples run, $failures failed"
[[ $failures == 0 ]]
