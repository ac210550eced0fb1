#!/bin/sh
# Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d):
# the roles the components log in as, with their passwords from the environment. `orbit`
# (POSTGRES_USER) owns the tables and runs the migrations (compose.yaml's `migrate`), which
# grant orbit_sink insert and orbit_gateway read on them, as scripts/infra.sh does locally.
set -eu
for role in orbit_sink orbit_gateway; do
  case "$role" in
    orbit_sink) password="$ORBIT_PG_PASSWORD_ORBIT_SINK" ;;
    orbit_gateway) password="$ORBIT_PG_PASSWORD_ORBIT_GATEWAY" ;;
  esac
  psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
    -v role="$role" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'role') \gexec
SQL
done
