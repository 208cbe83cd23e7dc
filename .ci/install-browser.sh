#!/usr/bin/env bash
# Installs what the console's browser tests (tests/console) need: Debian's Chromium, a font
# for readable screenshots, and playwright-core pinned by tests/console/package-lock.json.
# Target: a fresh Debian 12 machine, running as root, with Node 20 + npm preinstalled.
# Idempotent and non-interactive: safe to run repeatedly. Playwright's own browser download
# is never used (it needs hosts this machine cannot reach): the tests drive /usr/bin/chromium.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

LOG_PREFIX=install-browser
# shellcheck source=lib.sh
source "$ROOT/.ci/lib.sh"

# --- Chromium and a font (Debian) ------------------------------------------------
if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi 'liberation sans'; then
    log "chromium and fonts already installed"
else
    log "apt-get install chromium fonts-liberation"
    retry 3 "${SUDO[@]}" apt-get update -q
    retry 3 "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium fonts-liberation
fi

# --- playwright-core (npm, from the committed lock file) ---------------------------
log "npm ci in tests/console"
(cd "$ROOT/tests/console" && retry 3 npm ci --no-audit --no-fund --loglevel=error)

log "installed versions:"
chromium --version 2>/dev/null
printf 'node: %s  playwright-core: ' "$(node --version)"
node -p "require('$ROOT/tests/console/node_modules/playwright-core/package.json').version"
log "done"
