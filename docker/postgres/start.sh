#!/bin/sh
# Initialise the cluster on the first start, then run PostgreSQL in the foreground. Password
# authentication (scram-sha-256) for every connection from the network; the socket inside the
# container trusts its own user (health checks, pg_dump from `docker compose exec`).
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
POSTGRES_USER=${POSTGRES_USER:-wsloop}
POSTGRES_DB=${POSTGRES_DB:-wsloop}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username=postgres --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -w -o "-c listen_addresses=''" start >/dev/null
    psql -v ON_ERROR_STOP=1 --username=postgres -q <<SQL
CREATE ROLE "$POSTGRES_USER" LOGIN PASSWORD '$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")';
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
    pg_ctl -w stop >/dev/null
fi
exec postgres -c listen_addresses='*'
