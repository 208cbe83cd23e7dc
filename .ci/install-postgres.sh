#!/usr/bin/env bash
# Installs and starts Debian's PostgreSQL for the login guard's store tests, with a role and
# a database for them. Idempotent and non-interactive; runs as root (or with sudo).
# Logs go to stderr; the last line on stdout is the URL the tests take from
# FRESHET_TEST_DATABASE_URL.
set -euo pipefail

PG_USER="${FRESHET_PG_USER:-freshet}"
PG_PASSWORD="${FRESHET_PG_PASSWORD:-freshet}"
PG_DB="${FRESHET_PG_DB:-freshet_test}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '== install-postgres: %s\n' "$*" >&2; }

SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)

if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    log "installing postgresql"
    "${SUDO[@]}" apt-get update >&2
    "${SUDO[@]}" apt-get install -y --no-install-recommends postgresql >&2
fi

version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | grep -q .; then
    log "creating cluster $version/main"
    "${SUDO[@]}" pg_createcluster "$version" main >&2
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1)
if [[ $status != online* ]]; then
    log "starting cluster $version/$cluster on port $port"
    "${SUDO[@]}" pg_ctlcluster "$version" "$cluster" start >&2
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$port" >&2

as_postgres() { "${SUDO[@]}" runuser -u postgres -- "$@"; }
psql_admin() { as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -tAq "$@"; }

if [[ -z $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'") ]]; then
    log "creating role $PG_USER"
    psql_admin -c "CREATE ROLE \"$PG_USER\" LOGIN PASSWORD '$PG_PASSWORD'"
fi
if [[ -z $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
    log "creating database $PG_DB"
    psql_admin -c "CREATE DATABASE \"$PG_DB\" OWNER \"$PG_USER\""
fi

echo "postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$PG_DB"
