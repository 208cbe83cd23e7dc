#!/usr/bin/env bash
# Installs the external Kafka clients used by compat/run.sh (client-interop suites).
# Target: a fresh Debian 12 machine, running as root, with Python 3.11 + pip and
# Node 20 + npm preinstalled. Idempotent and non-interactive: safe to run repeatedly.
#
#   kcat               Debian package (bookworm: kcat 1.7.1 on librdkafka 2.0.2)
#   openssl            Debian package (compat/certs.sh makes test certificates with it)
#   confluent-kafka    PyPI wheel (bundles a current librdkafka)   -> .ci/venv
#   kafka-python       PyPI (pure Python)                          -> .ci/venv
#   aiokafka           PyPI wheel (asyncio client; no C build)     -> .ci/venv
#   kafkajs            npm, pinned by compat/kafkajs/package-lock.json (npm ci)
set -euo pipefail

CONFLUENT_KAFKA_VERSION="${CONFLUENT_KAFKA_VERSION:-2.16.1}"
KAFKA_PYTHON_VERSION="${KAFKA_PYTHON_VERSION:-2.3.3}"
AIOKAFKA_VERSION="${AIOKAFKA_VERSION:-0.14.0}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.ci/venv"
export DEBIAN_FRONTEND=noninteractive

LOG_PREFIX=install-compat
# shellcheck source=lib.sh
source "$ROOT/.ci/lib.sh"

# --- kcat and openssl (Debian) -----------------------------------------------------
# openssl: compat/certs.sh makes the TLS certificates of compat/secure.sh at test time.
APT_WANTED=()
command -v kcat >/dev/null 2>&1 || APT_WANTED+=(kcat)
command -v openssl >/dev/null 2>&1 || APT_WANTED+=(openssl)
if [[ ${#APT_WANTED[@]} -eq 0 ]]; then
    log "kcat and openssl already installed"
else
    log "apt-get install ${APT_WANTED[*]}"
    retry 3 "${SUDO[@]}" apt-get update -q
    retry 3 "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${APT_WANTED[@]}"
fi

# --- Python clients (venv under .ci/venv) ------------------------------------------
PYTHON_BOOT="${PYTHON:-python3}"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    log "creating venv $VENV with $PYTHON_BOOT ($("$PYTHON_BOOT" --version 2>&1))"
    rm -rf "$VENV"
    if ! "$PYTHON_BOOT" -m venv "$VENV"; then
        # Debian's own python3 needs python3-venv (ensurepip) for this.
        log "venv failed; installing python3-venv and retrying"
        rm -rf "$VENV"
        retry 3 "${SUDO[@]}" apt-get update -q
        retry 3 "${SUDO[@]}" apt-get install -y -q --no-install-recommends python3-venv
        "$PYTHON_BOOT" -m venv "$VENV"
    fi
fi
# Keep the venv out of git status whatever the repository's .gitignore says.
printf '*\n' >"$VENV/.gitignore"
log "pip install confluent-kafka==$CONFLUENT_KAFKA_VERSION kafka-python==$KAFKA_PYTHON_VERSION aiokafka==$AIOKAFKA_VERSION"
retry 3 "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
    "confluent-kafka==$CONFLUENT_KAFKA_VERSION" "kafka-python==$KAFKA_PYTHON_VERSION" \
    "aiokafka==$AIOKAFKA_VERSION"

# --- kafkajs (npm, from the committed lock file) -----------------------------------
log "npm ci in compat/kafkajs"
(cd "$ROOT/compat/kafkajs" && retry 3 npm ci --no-audit --no-fund --loglevel=error)

# --- record what was installed ----------------------------------------------------
log "installed versions:"
printf 'kcat: %s\n' "$(kcat -V 2>&1 | grep -m1 '^Version' || true)"
printf 'openssl: %s\n' "$(openssl version)"
dpkg-query -W -f='debian: ${Package} ${Version}\n' kcat librdkafka1 2>/dev/null || true
"$VENV/bin/python" - <<'PY'
import sys
import aiokafka, confluent_kafka, kafka
print("python:", sys.version.split()[0])
print("confluent-kafka:", confluent_kafka.version(), "librdkafka:", confluent_kafka.libversion())
print("kafka-python:", kafka.__version__)
print("aiokafka:", aiokafka.__version__)
PY
printf 'node: %s  kafkajs: ' "$(node --version)"
node -p "require('$ROOT/compat/kafkajs/node_modules/kafkajs/package.json').version"
log "done"
