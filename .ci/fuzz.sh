#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz + libFuzzer) of request decoding, record-batch validation
# and decompression: the targets in fuzz/ (docs/TESTING.md, "Fuzzing", says what each checks).
#
# Builds the targets once, then runs each for FRESHET_FUZZ_SECONDS (default 60) on a scratch
# copy of its committed seeds (fuzz/seeds/<target>, real clients' frames) plus its regression
# inputs (fuzz/regressions/<target>), so a run never modifies the repository. Fails if any
# target crashes (panic, abort, out-of-memory, an input taking over 10 s) and prints the input
# that did it; inputs are kept under FUZZ_ARTIFACTS (default target/fuzz-artifacts).
#
# Usage: `bash .ci/fuzz.sh` builds the targets (if needed) and runs them; `bash .ci/fuzz.sh build`
# only builds. .ci/run builds at the lowest CPU priority while the client suites, which mostly
# wait on I/O, run; the run at the end then finds the targets built.
#
# Environment:
#   FRESHET_FUZZ_SECONDS    run time per target (default 60)
#   FRESHET_FUZZ_TARGETS    targets to run (default "request_frame record_batch decompress")
#   FRESHET_FUZZ_SANITIZER  address (default) or none
#   FUZZ_ARTIFACTS          where crash inputs and logs are kept
#
# Why RUSTC_BOOTSTRAP=1: cargo-fuzz instruments with -Cpasses=sancov-module and -Cllvm-args
# (both stable), but turns AddressSanitizer on with -Zsanitizer=address, which rustc accepts only
# from a nightly toolchain or with RUSTC_BOOTSTRAP=1. CI (like this machine) has stable Rust
# only, so the variable is set for the cargo-fuzz commands and nothing else. With
# FRESHET_FUZZ_SANITIZER=none no unstable flag is used and it is not set.
#
# Build settings: opt-level 1 and 16 codegen units instead of cargo-fuzz's release defaults
# (opt-level 3, one codegen unit) cut the cold build's CPU time by about a third, which
# matters more to a one-minute run than the executions per second they cost.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
LOG_PREFIX=fuzz
# shellcheck source=lib.sh
source .ci/lib.sh

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET="${FRESHET_FUZZ_SECONDS:-60}"
read -r -a TARGETS <<<"${FRESHET_FUZZ_TARGETS:-request_frame record_batch decompress}"
SANITIZER="${FRESHET_FUZZ_SANITIZER:-address}"
ARTIFACTS="${FUZZ_ARTIFACTS:-${CARGO_TARGET_DIR:-$ROOT/target}/fuzz-artifacts}"
PHASE="${1:-run}"
case "$PHASE" in build | run) ;; *) echo "usage: $0 [build]" >&2; exit 2 ;; esac
started=$(date +%s)

# --- tools ---------------------------------------------------------------------------
if ! command -v c++ >/dev/null 2>&1; then
    # libfuzzer-sys compiles libFuzzer (C++) in its build script.
    log "apt-get install g++"
    retry 3 "${SUDO[@]}" apt-get update -q
    retry 3 "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends g++
fi
if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
    retry 3 cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# --- build ---------------------------------------------------------------------------
fuzz_flags=(--sanitizer "$SANITIZER" --codegen-units 16)
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1
cargo_fuzz() {
    if [[ "$SANITIZER" == none ]]; then
        cargo fuzz "$@"
    else
        RUSTC_BOOTSTRAP=1 cargo fuzz "$@"
    fi
}
log "building ${TARGETS[*]} (sanitizer: $SANITIZER)"
for target in "${TARGETS[@]}"; do
    cargo_fuzz build "${fuzz_flags[@]}" "$target"
done
built=$(date +%s)
log "tools and build took $((built - started)) s"
[[ "$PHASE" == build ]] && exit 0

# --- run -----------------------------------------------------------------------------
scratch="$(mktemp -d)"
# The targets' logs and brokers go here (tmpfs when there is one); a crashing input leaves its
# directory behind, so the whole of it is removed at the end.
shm=/dev/shm
[[ -d "$shm" && -w "$shm" ]] || shm="${TMPDIR:-/tmp}"
FRESHET_FUZZ_TMPDIR="$(mktemp -d "$shm/freshet-fuzz-ci.XXXXXX")"
export FRESHET_FUZZ_TMPDIR
trap 'rm -rf "$scratch" "$FRESHET_FUZZ_TMPDIR"' EXIT
mkdir -p "$ARTIFACTS"
failed=()
summary=()
for target in "${TARGETS[@]}"; do
    corpus="$scratch/corpus/$target"
    crashes="$ARTIFACTS/$target"
    output="$ARTIFACTS/$target.log"
    mkdir -p "$corpus" "$crashes"
    for dir in "fuzz/seeds/$target" "fuzz/regressions/$target"; do
        if [[ -d "$dir" ]] && compgen -G "$dir/*" >/dev/null; then
            cp "$dir"/* "$corpus"/
        fi
    done
    log "running $target for ${SECONDS_PER_TARGET} s on $(find "$corpus" -type f | wc -l) seed inputs"
    status=0
    cargo_fuzz run "${fuzz_flags[@]}" "$target" "$corpus" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$crashes/" >"$output" 2>&1 || status=$?
    stats=$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$output" |
        sed -E 's/^stat::([a-z_]+): +/\1=/' | tr '\n' ' ' || true)
    summary+=("$target: $stats")
    if [[ $status -ne 0 ]]; then
        failed+=("$target")
        log "$target FAILED (exit $status); from its output ($output):"
        grep -E -A3 'panicked at|ERROR: |SUMMARY: |Test unit written|Base64: ' "$output" |
            grep -v '^ *#[0-9]' | head -n 40 || true
        for input in "$crashes"/*; do
            [[ -e "$input" ]] || continue
            log "crash input: $input"
            log "  reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $target $input"
        done
    fi
done

log "summary (total $(($(date +%s) - started)) s):"
for line in "${summary[@]}"; do log "  $line"; done
if [[ ${#failed[@]} -gt 0 ]]; then
    log "failed: ${failed[*]}"
    exit 1
fi
log "no crash in ${TARGETS[*]}"
