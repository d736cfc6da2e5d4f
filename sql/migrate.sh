#!/bin/sh
# Applies sql/[0-9][0-9][0-9]_*.sql in order, each once, each in its own
# transaction together with its row in shortlink.schema_migrations.
# Re-running is a no-op.  Connection settings come from libpq's environment
# (PGHOST, PGPORT, PGDATABASE, PGUSER, ...) or from a conninfo in $1.
#
#   sql/migrate.sh "host=127.0.0.1 port=5432 dbname=shortlink user=shortlink"

set -eu

dir=$(cd "$(dirname "$0")" && pwd)
conn=${1:-}

export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

psql_run() {
    psql -X -q -v ON_ERROR_STOP=1 ${conn:+"$conn"} "$@"
}

psql_run <<'SQL'
CREATE SCHEMA IF NOT EXISTS shortlink;
CREATE TABLE IF NOT EXISTS shortlink.schema_migrations (
    version     text        PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
SQL

for file in "$dir"/[0-9][0-9][0-9]_*.sql; do
    version=$(basename "$file" .sql)
    done_already=$(psql_run -At -c \
        "SELECT 1 FROM shortlink.schema_migrations WHERE version = '$version'")
    if [ "$done_already" = 1 ]; then
        continue
    fi
    echo "applying $version"
    {
        cat "$file"
        printf "\nINSERT INTO shortlink.schema_migrations (version) VALUES ('%s');\n" "$version"
    } | psql_run --single-transaction
done
