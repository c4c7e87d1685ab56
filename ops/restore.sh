#!/usr/bin/env bash
# Restore a backup into a fresh database, apply migrations, verify the ledger, and print row
# counts and the restored consumer checkpoints (where posters will resume).
#
#   ops/restore.sh BACKUP_FILE DATABASE_NAME [--passphrase-file FILE]
#
# The database must not exist. Reads LEDGERLINE_ADMIN_DATABASE_URL (from .stack/env when not
# set). After it succeeds, point LEDGERLINE_DATABASE_URL at the new database and start the
# posters: they resume from the restored checkpoints and re-read what the backup lacks.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

started=$(date +%s%N)
[ $# -ge 2 ] || die "usage: ops/restore.sh BACKUP_FILE DATABASE_NAME [--passphrase-file FILE]"
src="$1"; name="$2"; shift 2
PASSFILE="${LEDGERLINE_BACKUP_PASSPHRASE_FILE:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --passphrase-file) PASSFILE="$2"; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
[ -r "$src" ] || die "backup file $src cannot be read"
[[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || die "database name $name must be plain lower-case"
if [ -z "${LEDGERLINE_ADMIN_DATABASE_URL:-}" ]; then load_env; fi
BIN="$(pg_programs_dir)"
[ -x "$BIN/pg_restore" ] || die "pg_restore not found (set LEDGERLINE_PG_BIN)"
LL="${LEDGERLINE_BIN:-$LEDGERLINE_ROOT/target/release/ledgerline}"
[ -x "$LL" ] || die "ledgerline binary $LL not found: cargo build --release, or set LEDGERLINE_BIN"
admin_base="${LEDGERLINE_ADMIN_DATABASE_URL%/*}"

exists=$("$BIN/psql" "$LEDGERLINE_ADMIN_DATABASE_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'") \
    || die "cannot connect to PostgreSQL"
[ "$exists" != 1 ] || die "database $name already exists: restore into a new one"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dump="$src"
if [[ "$src" == *.gpg ]]; then
    [ -n "$PASSFILE" ] && [ -r "$PASSFILE" ] || die "$src is encrypted: give --passphrase-file"
    gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$PASSFILE" --output "$work/backup.dump" \
        --decrypt "$src" 2>/dev/null || die "cannot decrypt $src (wrong passphrase?)"
    dump="$work/backup.dump"
fi
"$BIN/pg_restore" --list "$dump" >/dev/null 2>&1 || die "$src is not a pg_dump custom-format backup"
"$BIN/psql" "$LEDGERLINE_ADMIN_DATABASE_URL" -qc "CREATE DATABASE $name" >/dev/null || die "cannot create database $name"
"$BIN/pg_restore" --no-owner --exit-on-error --dbname="$admin_base/$name" "$dump" 2>"$work/err" \
    || die "pg_restore failed: $(tail -n 1 "$work/err")"

export LEDGERLINE_DATABASE_URL="$admin_base/$name"
"$LL" migrate >/dev/null || die "migrations failed on the restored database"
echo "== verify"
"$LL" verify || die "the restored ledger does not verify"
echo "== row counts"
"$BIN/psql" "$LEDGERLINE_DATABASE_URL" -P footer=off -c "SELECT (SELECT count(*) FROM journal_entries) AS entries, (SELECT count(*) FROM journal_lines) AS lines,
    (SELECT count(*) FROM rejections) AS rejections, (SELECT count(*) FROM idempotency_records) AS keys,
    (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS unpublished_events"
echo "== restored checkpoints (posters resume here)"
"$BIN/psql" "$LEDGERLINE_DATABASE_URL" -P footer=off -c "SELECT consumer_group, topic, partition, next_offset, updated_at FROM consumer_checkpoints ORDER BY 1, 2, 3"
rto_ms=$(( ($(date +%s%N) - started) / 1000000 ))
newest=$("$BIN/psql" "$LEDGERLINE_DATABASE_URL" -tAc "SELECT COALESCE(max(recorded_at)::text, 'none') FROM journal_entries")
echo "== recovery"
printf 'RTO: %d.%03d s from the backup file to a migrated, verified ledger\n' $((rto_ms / 1000)) $((rto_ms % 1000))
echo "RPO: the backup holds entries recorded up to $newest; what came later is re-read from Kafka from the checkpoints above when the posters start (nothing is lost while Kafka retains those offsets)"
echo "restored into $name"
