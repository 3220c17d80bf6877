#!/bin/sh
# One-shot job (temporalio/admin-tools, the same version as the server): creates Temporal's schemas in its two
# PostgreSQL databases on the first start, and upgrades them to this version's schema after a version bump.
# Idempotent, so it runs on every `docker compose up`: setup-schema only records version 0.0 in an empty database
# (it leaves a newer schema alone), update-schema applies only the versions a database does not have yet.
# The databases and their owner `temporal` are created by deploy/postgres/init-databases.sh on PostgreSQL's first
# start. The password comes in SQL_PASSWORD, which temporal-sql-tool reads itself (never on a command line).
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS must be set}"
: "${POSTGRES_USER:?POSTGRES_USER must be set}"
: "${SQL_PASSWORD:?SQL_PASSWORD must be set}"
: "${DB_PORT:=5432}"
: "${DBNAME:=temporal}"
: "${VISIBILITY_DBNAME:=temporal_visibility}"

SCHEMA_DIR=/etc/temporal/schema/postgresql/v12

sql_tool() {
    database="$1"
    shift
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" \
        --db "$database" "$@"
}

for pair in "$DBNAME=temporal" "$VISIBILITY_DBNAME=visibility"; do
    database="${pair%%=*}"
    schema="${pair#*=}"
    echo "schema of $database ($schema): setting up and upgrading"
    sql_tool "$database" setup-schema -v 0.0
    sql_tool "$database" update-schema -d "$SCHEMA_DIR/$schema/versioned"
done
echo "Temporal schemas are current"
