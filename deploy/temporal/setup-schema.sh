#!/bin/sh
# One-shot job (temporalio/admin-tools image): create Temporal's two databases and bring their schemas up to
# this server version. Safe to run again: that is how a server upgrade gets its schema changes.
# Connection from the environment, as temporal-sql-tool reads it: SQL_HOST, SQL_PORT, SQL_USER, SQL_PASSWORD.
set -eu
: "${SQL_HOST:?}" "${SQL_USER:?}" "${SQL_PASSWORD:?}"
export SQL_PLUGIN=postgres12 SQL_PORT="${SQL_PORT:-5432}"
schemas=/etc/temporal/schema/postgresql/v12

for db in temporal temporal_visibility; do
  dir=temporal
  [ "$db" = temporal_visibility ] && dir=visibility
  SQL_DATABASE=$db temporal-sql-tool create-database   # a no-op when it exists
  SQL_DATABASE=$db temporal-sql-tool setup-schema -v 0.0
  SQL_DATABASE=$db temporal-sql-tool update-schema --schema-dir "$schemas/$dir/versioned"
done
echo "Temporal schemas are current"
