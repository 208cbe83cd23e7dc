#!/usr/bin/env bash
# Installs Debian's OpenSSL headers for librdkafka's TLS and SCRAM, so CI links them instead of
# building OpenSSL from source twice (debug and release, ~2 minutes each on 2 cores). A plain
# `cargo test --workspace` on a machine without them still works: rdkafka's `ssl-vendored`
# feature builds OpenSSL unless OPENSSL_NO_VENDOR=1, which .ci/run sets after this script.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive
LOG_PREFIX=install-openssl
# shellcheck source=lib.sh
source "$ROOT/.ci/lib.sh"

if dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q "install ok installed" \
    && command -v pkg-config >/dev/null 2>&1; then
    log "libssl-dev and pkg-config already installed"
else
    log "apt-get install libssl-dev pkg-config"
    retry 3 "${SUDO[@]}" apt-get update -q
    retry 3 "${SUDO[@]}" apt-get install -y -q --no-install-recommends libssl-dev pkg-config
fi
log "$(pkg-config --modversion openssl 2>/dev/null | sed 's/^/OpenSSL /')"
