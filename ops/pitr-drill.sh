#!/usr/bin/env bash
# Point-in-time recovery drill, on a throwaway PostgreSQL cluster of its own (WAL archiving on)
# and the stack's broker:
#   1. base backup; post a first slice of postings; note the time T;
#   2. post a second slice; keep the ledger's content ("before the disaster");
#   3. disaster: throw the cluster away; restore the base backup and replay the WAL archive up
#      to T (recovery_target_time);
#   4. restart the poster: it resumes from the checkpoint recovered at T and re-reads the second
#      slice from Kafka;
#   5. the ledger must be identical to the one before the disaster, and verify must pass;
#   6. it prints the measured RTO (lost cluster to verified, serving ledger) and RPO (entries the
#      database lost, and how many of them the replay from Kafka brought back).
# Suitable for cron: exit code and one "PITR drill passed" line, or the reason it failed.
# Exit code 0 only if it is. Needs ops/stack.sh up (the broker) and the ledgerline binary
# (LEDGERLINE_BIN, default target/release/ledgerline).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_env
LL="${LEDGERLINE_BIN:-$LEDGERLINE_ROOT/target/release/ledgerline}"
[ -x "$LL" ] || die "ledgerline binary $LL not found: cargo build --release, or set LEDGERLINE_BIN"
PG="$LEDGERLINE_PG_BIN"
COUNT="${1:-1000}"

work=$(mktemp -d /tmp/ledgerline-pitr.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/archive" "$work/run"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$work"; fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
port=""
for candidate in $(shuf -i 56100-56999 -n 100); do
    if ! port_in_use "$candidate"; then port=$candidate; break; fi
done
[ -n "$port" ] || die "no free port in 56100-56999 for the drill cluster"
cleanup() {
    as_pg "$PG/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

step() { echo "== $* (${SECONDS}s)"; }
psql_drill() { "$PG/psql" -h 127.0.0.1 -p "$port" -U drill -d ledger -v ON_ERROR_STOP=1 -tAq "$@"; }
start_cluster() {
    local attempt
    for attempt in 1 2 3; do
        as_pg "$PG/pg_ctl" -D "$work/data" -l "$work/server.log" -w -t 120 start >/dev/null 2>&1 && return 0
        echo "   start attempt $attempt failed: $(grep -E 'FATAL|PANIC|could not' "$work/server.log" | tail -n 1)" >&2
        sleep 2
    done
    die "drill cluster did not start: $(grep -E 'FATAL|PANIC|could not' "$work/server.log" | tail -n 1)"
}

step "drill cluster on 127.0.0.1:$port with WAL archiving"
as_pg "$PG/initdb" -D "$work/data" -U drill --auth=trust -E UTF8 --no-locale >/dev/null || die "initdb failed"
cat >>"$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/run'
wal_level = replica
archive_mode = on
archive_command = 'test ! -f $work/archive/%f && cp %p $work/archive/%f'
CONF
start_cluster
"$PG/createdb" -h 127.0.0.1 -p "$port" -U drill ledger
export LEDGERLINE_DATABASE_URL="postgres://drill@127.0.0.1:$port/ledger"
stamp=$(date +%s)-$$
topic="pitr.postings.$stamp"
group="pitr-$stamp"
"$LEDGERLINE_ROOT/ops/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$LEDGERLINE_KAFKA_BROKERS" \
    --create --topic "$topic" --partitions 2 >/dev/null || die "cannot create topic $topic"
"$LL" migrate >/dev/null
"$LL" entities create demo --name Demo >/dev/null
"$LL" accounts synthetic --entity demo --count 100 >/dev/null
"$LL" periods open --entity demo --start 2026-11-01 --end 2026-11-30 --by drill >/dev/null

# Each drain is a new member of the same group: a short session timeout lets the broker drop
# the previous member quickly.
export LEDGERLINE_RDKAFKA_SESSION_TIMEOUT_MS=6000
drain() {
    "$LL" poster --group "$group" --topic "$topic" --http-addr "127.0.0.1:0" --exit-when-idle-ms 2000 2>>"$work/poster.log" \
        || die "poster failed; see $work/poster.log"
}
content() {
    psql_drill -c "SELECT e.id || '|' || e.idempotency_key || '|' || e.effective_date || '|' ||
        string_agg(l.line_no || ':' || l.account_id || ':' || l.side || ':' || l.amount, ',' ORDER BY l.line_no)
        FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id GROUP BY e.id ORDER BY e.id" \
        -c "SELECT account_id || '|' || balance || '|' || version FROM account_balances ORDER BY account_id"
}

step "base backup"
"$PG/pg_basebackup" -h 127.0.0.1 -p "$port" -U drill -D "$work/base" -X stream --checkpoint=fast >/dev/null || die "pg_basebackup failed"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$work/base"; fi

step "first slice: $COUNT postings"
"$LL" produce --topic "$topic" --count "$COUNT" --accounts 100 --lines 2-4 --duplicate-share 0.05 --invalid-share 0.02 --seed 1 --key-prefix "$group-a" >/dev/null
drain
first=$(psql_drill -c "SELECT count(*) FROM journal_entries")
psql_drill -c "SELECT pg_switch_wal()" >/dev/null
sleep 1
target=$(psql_drill -c "SELECT now()")
sleep 1
echo "   $first entries; recovery target T = $target"

step "second slice: $COUNT postings after T"
"$LL" produce --topic "$topic" --count "$COUNT" --accounts 100 --lines 2-4 --duplicate-share 0.05 --invalid-share 0.02 --seed 2 --key-prefix "$group-b" >/dev/null
drain
content >"$work/before.txt"
total=$(psql_drill -c "SELECT count(*) FROM journal_entries")
psql_drill -c "SELECT pg_switch_wal()" >/dev/null
sleep 2
echo "   $total entries before the disaster"

step "disaster: the cluster is lost; restore the base backup and replay WAL up to T"
disaster_at=$(date +%s.%N)
as_pg "$PG/pg_ctl" -D "$work/data" -m immediate stop >/dev/null
as_pg mv "$work/data" "$work/lost"
as_pg cp -a "$work/base" "$work/data"
cat >>"$work/data/postgresql.conf" <<CONF
restore_command = 'cp $work/archive/%f %p'
recovery_target_time = '$target'
recovery_target_action = 'promote'
archive_mode = off
CONF
as_pg touch "$work/data/recovery.signal"
start_cluster
for _ in $(seq 120); do
    [ "$(psql_drill -c "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && break
    sleep 0.5
done
[ "$(psql_drill -c "SELECT pg_is_in_recovery()")" = f ] || die "recovery did not finish; see $work/server.log"
recovered=$(psql_drill -c "SELECT count(*) FROM journal_entries")
checkpoints=$(psql_drill -c "SELECT string_agg(partition || ':' || next_offset, ' ' ORDER BY partition) FROM consumer_checkpoints")
echo "   recovered to T: $recovered entries, checkpoints $checkpoints"
[ "$recovered" = "$first" ] || die "recovered $recovered entries, expected the $first present at T"

step "restart the poster: it resumes from the recovered checkpoints and replays from Kafka"
drain
content >"$work/after.txt"
"$LL" verify >/dev/null || die "the recovered ledger does not verify"
if ! cmp -s "$work/before.txt" "$work/after.txt"; then
    die "the ledger after recovery and replay differs from the one before the disaster"
fi
after=$(psql_drill -c "SELECT count(*) FROM journal_entries")
rto=$(awk -v a="$disaster_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "RTO: $rto s from the lost cluster to a verified ledger serving again (restore, WAL replay to T, poster catch-up from Kafka, verify)"
echo "RPO: the database lost $((total - recovered)) entries written after T; the replay from Kafka brought back $((after - recovered)); entries lost: $((total - after))"
echo "PITR drill passed: $after entries, identical to the ledger before the disaster, verify ok"
