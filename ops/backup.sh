#!/usr/bin/env bash
# Back up the ledger database: pg_dump (custom format), then prove the backup restores
# (pg_restore --list, and a full restore into a scratch database with row counts compared),
# optionally encrypt it with gpg, and prune old backups.
#
#   ops/backup.sh [--dir DIR] [--keep N] [--passphrase-file FILE]
#
# Reads LEDGERLINE_DATABASE_URL and LEDGERLINE_ADMIN_DATABASE_URL (from .stack/env when they are
# not set). Encryption: symmetric AES-256 with the passphrase in FILE (or
# LEDGERLINE_BACKUP_PASSPHRASE_FILE). Any failure: one line, non-zero exit, no partial backup left.
# Every run that reaches the database records its outcome in backup_runs (time, size, duration,
# verified, or the error), which the reporter exports as metrics with alerts on them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${LEDGERLINE_BACKUP_DIR:-$LEDGERLINE_ROOT/backups}"
KEEP="${LEDGERLINE_BACKUP_KEEP:-7}"
PASSFILE="${LEDGERLINE_BACKUP_PASSPHRASE_FILE:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        --keep) KEEP="$2"; shift 2 ;;
        --passphrase-file) PASSFILE="$2"; shift 2 ;;
        *) die "unknown option $1 (use --dir, --keep, --passphrase-file)" ;;
    esac
done
[[ "$KEEP" =~ ^[1-9][0-9]*$ ]] || die "--keep must be a positive number, not $KEEP"
[ -z "$PASSFILE" ] || [ -r "$PASSFILE" ] || die "passphrase file $PASSFILE cannot be read"
if [ -z "${LEDGERLINE_DATABASE_URL:-}" ]; then load_env; fi
[ -n "${LEDGERLINE_ADMIN_DATABASE_URL:-}" ] || die "LEDGERLINE_ADMIN_DATABASE_URL is needed for the restore check"
BIN="$(pg_programs_dir)"
[ -x "$BIN/pg_dump" ] || die "pg_dump not found (set LEDGERLINE_PG_BIN)"

mkdir -p "$DIR" || die "cannot create backup directory $DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
file="$DIR/ledgerline-$stamp.dump"
scratch="ledgerline_backup_check_$(date -u +%s)_$$"
admin_base="${LEDGERLINE_ADMIN_DATABASE_URL%/*}"
started=$(date +%s.%N)
cleanup() {
    "$BIN/psql" "$LEDGERLINE_ADMIN_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $scratch" >/dev/null 2>&1 || true
}
# record OK SIZE VERIFIED FILE ERROR: one backup_runs row (psql reads variables from stdin only).
record() {
    local took
    took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
    "$BIN/psql" "$LEDGERLINE_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -v ok="$1" -v size="$2" \
        -v verified="$3" -v file="$4" -v err="$5" -v took="$took" >/dev/null 2>&1 <<'SQL'
INSERT INTO backup_runs (ok, size_bytes, verified, duration_seconds, file, error)
VALUES (:'ok', NULLIF(:'size', '')::bigint, :'verified', :'took', NULLIF(:'file', ''), NULLIF(:'err', ''));
SQL
}
fail() {
    rm -f "$file" "$file.gpg"
    cleanup
    record false "" false "" "$*" || true  # a run that cannot reach the database is not recorded
    die "$*"
}

"$BIN/pg_dump" --format=custom --file="$file" --dbname="$LEDGERLINE_DATABASE_URL" 2>"$DIR/.pg_dump.err" \
    || fail "pg_dump failed: $(tail -n 1 "$DIR/.pg_dump.err")"
"$BIN/pg_restore" --list "$file" >/dev/null 2>&1 || fail "pg_restore --list cannot read $file"

# Prove the backup restores: into a scratch database, then compare row counts.
"$BIN/psql" "$LEDGERLINE_ADMIN_DATABASE_URL" -qc "CREATE DATABASE $scratch" >/dev/null 2>&1 || fail "cannot create scratch database $scratch"
"$BIN/pg_restore" --no-owner --exit-on-error --dbname="$admin_base/$scratch" "$file" 2>"$DIR/.pg_restore.err" \
    || fail "restore check failed: $(tail -n 1 "$DIR/.pg_restore.err")"
count_sql="SELECT (SELECT count(*) FROM journal_entries) || ' entries, ' || (SELECT count(*) FROM journal_lines) || ' lines, ' || (SELECT count(*) FROM rejections) || ' rejections'"
restored=$("$BIN/psql" "$admin_base/$scratch" -tAc "$count_sql") || fail "cannot count rows in the restored copy"
dumped_size=$(stat -c %s "$file")
cleanup
rm -f "$DIR/.pg_dump.err" "$DIR/.pg_restore.err"

if [ -n "$PASSFILE" ]; then
    command -v gpg >/dev/null || fail "gpg is needed for encryption (apt-get install gnupg)"
    gpg --batch --yes --quiet --pinentry-mode loopback --passphrase-file "$PASSFILE" \
        --symmetric --cipher-algo AES256 --output "$file.gpg" "$file" 2>/dev/null || fail "gpg encryption failed"
    rm -f "$file"
    file="$file.gpg"
fi

# Retention: keep the newest $KEEP backups.
find "$DIR" -maxdepth 1 -name 'ledgerline-*.dump*' -printf '%T@ %p\n' | sort -rn | tail -n +$((KEEP + 1)) \
    | cut -d' ' -f2- | while read -r old; do rm -f "$old"; done

record true "$(stat -c %s "$file")" true "$file" "" || die "backup $file made, but its record in backup_runs failed"
echo "backup: $file ($dumped_size bytes; restore check: $restored)"
