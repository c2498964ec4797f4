#!/usr/bin/env bash
# Start a throw-away local PostgreSQL for the Dagster instance (development / single machine).
# Usage: deploy/start_postgres.sh DATA_DIR [PORT]   then: eval "$(deploy/start_postgres.sh --env DATA_DIR [PORT])"
# Needs Debian's `postgresql` package (initdb/pg_ctl under /usr/lib/postgresql/*/bin). PostgreSQL
# refuses to run as root: as root, the cluster is owned by and run as the `postgres` user.
# Stop it with: pg_ctl -D DATA_DIR stop   (as root: runuser -u postgres -- /usr/lib/postgresql/*/bin/pg_ctl -D DATA_DIR stop)
set -euo pipefail
print_env=0
if [ "${1:-}" = "--env" ]; then print_env=1; shift; fi
data=${1:?usage: $0 [--env] DATA_DIR [PORT]}
port=${2:-5433}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bindir" ] || bindir=$(dirname "$(command -v initdb)")
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
db=${DAGSTER_PG_DB:-dagster}
user=${DAGSTER_PG_USERNAME:-dagster}
password=${DAGSTER_PG_PASSWORD:-dagster}
if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres: "$data"
    pwfile=$(mktemp); echo "$password" > "$pwfile"; chmod 644 "$pwfile"
    as_pg "$bindir/initdb" -D "$data" -U "$user" --pwfile="$pwfile" -A scram-sha-256 >/dev/null
    rm -f "$pwfile"
fi
if ! as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -o "-p $port -k $data -c listen_addresses=127.0.0.1" \
        -w start >/dev/null
fi
PGPASSWORD=$password "$bindir/psql" -h 127.0.0.1 -p "$port" -U "$user" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
    || PGPASSWORD=$password "$bindir/createdb" -h 127.0.0.1 -p "$port" -U "$user" "$db"
if [ "$print_env" = 1 ]; then
    echo "export DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_PORT=$port DAGSTER_PG_DB=$db DAGSTER_PG_USERNAME=$user DAGSTER_PG_PASSWORD=$password"
else
    echo "PostgreSQL on 127.0.0.1:$port, database $db, user $user (data in $data)" >&2
fi
