#!/usr/bin/env bash
# Run once by the postgres image's entrypoint when the data directory is first initialised
# (docker-compose.yml mounts this folder at /docker-entrypoint-initdb.d): makes the login roles
# and hands the ledger database to its owner. The .psql file is not run by the entrypoint itself.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner_pw="$LEDGERLINE_OWNER_PASSWORD" -v writer_pw="$LEDGERLINE_WRITER_PASSWORD" \
    -v reader_pw="$LEDGERLINE_READER_PASSWORD" -f /docker-entrypoint-initdb.d/roles.psql
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -c "ALTER DATABASE \"$POSTGRES_DB\" OWNER TO ledgerline_owner"
