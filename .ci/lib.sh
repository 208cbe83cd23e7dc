# Shared by the .ci/install-*.sh scripts: `source` it after setting LOG_PREFIX.
# Gives `log`, `retry` and SUDO (empty as root, `sudo -n` otherwise).

log() { printf '== %s: %s\n' "${LOG_PREFIX:-ci}" "$*"; }

retry() { # retry N CMD...: run CMD up to N times, 5 s apart
    local n="$1" i; shift
    for ((i = 1; i <= n; i++)); do
        "$@" && return 0
        [[ $i -lt $n ]] && { log "attempt $i/$n failed: $*; retrying"; sleep 5; }
    done
    return 1
}

SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo -n); fi
