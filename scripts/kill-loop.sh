#!/usr/bin/env bash
# Repeated-crash durability check: CYCLES times (default 100), SIGKILL a real `freshet broker`
# while an idempotent and a plain producer (acks=all) send and a consumer group commits, restart
# it on the same port and data directory, and finally check that every acknowledged record is at
# its acknowledged offset, that the idempotent producer's records are there once and in order,
# and that every acknowledged offset commit survived. About 2 s per cycle.
#
#   scripts/kill-loop.sh          # 100 cycles
#   scripts/kill-loop.sh 1000     # as many as you like
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${1:-100}"
FRESHET_KILL_CYCLES="$cycles" exec cargo test --release -p freshet --test it -- \
    --ignored --nocapture kill_loop::many_kills_under_load_lose_nothing_acknowledged
