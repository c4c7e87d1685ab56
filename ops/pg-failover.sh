#!/usr/bin/env bash
# PostgreSQL failover for the local stack: pg_auto_failover 2.0 from Debian
# (postgresql-15-auto-failover): a monitor and two nodes, a primary and a synchronous secondary,
# under .stack/pgaf/, each run by its own `pg_autoctl run` (started here in the background).
# Run through ops/stack.sh:
#
#   ops/stack.sh failover up            install, create or start monitor + 2 nodes, write .stack/failover.env
#   ops/stack.sh failover down          stop the nodes and the monitor (data is kept)
#   ops/stack.sh failover status        the monitor's view of the nodes
#   ops/stack.sh failover primary       the name of the node that is primary now (node1 or node2)
#   ops/stack.sh failover kill NODE     SIGKILL a node's pg_autoctl and PostgreSQL (a lost host)
#   ops/stack.sh failover start NODE    start a node again (a lost primary rejoins as secondary)
#   ops/stack.sh failover wait          wait until there is a primary and a secondary again
#
# Security as on the main server: scram-sha-256 on TCP, peer for the postgres OS user on the
# socket, random passwords under .stack/ (the replication user's and the monitor's in a pgpass
# file pg_autoctl reads). The one exception is pg_auto_failover's own health-check role
# (pgautofailover_monitor, trust, one connection, no rights), which it requires.
# Failure detection is tightened for a test stack (about 8 s from a lost primary to a promoted
# secondary instead of about 50 s with the defaults); see docs/OPERATIONS.md, "PostgreSQL failover".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings

STACK="$LEDGERLINE_STACK_DIR"
AF="$STACK/pgaf"
MON_PORT="$LEDGERLINE_PGAF_PORT"
PG_BIN=/usr/lib/postgresql/15/bin
NODES=(node1 node2)

node_port() { echo $((MON_PORT + ${1#node})); }

ensure_installed() {
    [ -x "$PG_BIN/initdb" ] && command -v pg_autoctl >/dev/null 2>&1 \
        && [ -f /usr/share/postgresql/15/extension/pgautofailover.control ] && return 0
    [ "$(id -u)" = 0 ] || die "pg_auto_failover is not installed: apt-get install postgresql-15-auto-failover pg-auto-failover-cli"
    say "installing pg_auto_failover from Debian (once)..."
    # Only the extension and its CLI, never an upgrade of the server: a newer PostgreSQL
    # package under a running server breaks it (its libraries no longer match).
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        --no-upgrade postgresql-15-auto-failover pg-auto-failover-cli; } >/tmp/ledgerline-apt-pgaf.log 2>&1 \
        || die "apt-get install pg_auto_failover failed; see /tmp/ledgerline-apt-pgaf.log"
}

# pg_autoctl and PostgreSQL refuse root: run them as the postgres user, with the pgpass file.
af_prefix() {
    AFP=(env PATH="$PG_BIN:/usr/local/bin:/usr/bin:/bin" PGPASSFILE="$AF/pgpass" XDG_CONFIG_HOME="$AF/config" XDG_DATA_HOME="$AF/share")
    if [ "$(id -u)" = 0 ]; then AFP=(runuser -u postgres -- "${AFP[@]}"); fi
}
af() { af_prefix; "${AFP[@]}" "$@"; }
# In the background, in a session of its own: `kill` takes the whole session (pg_autoctl renames
# its service processes, so they cannot be found by their command line).
af_daemon() {
    local log=$1
    shift
    af_prefix
    (setsid nohup "${AFP[@]}" "$@" >>"$log" 2>&1 </dev/null &)
}

# SQL as the postgres superuser over the node's socket (peer authentication).
af_sql() { local port=$1 db=$2; shift 2; af psql -h /var/run/postgresql -p "$port" -d "$db" -qAtX -v ON_ERROR_STOP=1 "$@"; }

prepare_dir() {
    mkdir -p "$AF"
    [ "$(id -u)" = 0 ] && { id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres; }
    [ "$(id -u)" = 0 ] && mkdir -p /var/run/postgresql && chown postgres /var/run/postgresql
    (umask 077 && printf '*:*:*:autoctl_node:%s\n*:*:*:pgautofailover_replicator:%s\n*:*:*:postgres:%s\n' \
        "$(role_password pgaf-monitor)" "$(role_password pgaf-replication)" "$(role_password admin)" >"$AF/pgpass")
    [ "$(id -u)" = 0 ] && chown -R postgres "$AF"
    chmod 700 "$AF"
}

# initdb's trust rules become scram-sha-256 (TCP) and peer for postgres only (socket).
secure_hba() {
    local hba="$AF/$1/pg_hba.conf"
    grep -q '^local   all             postgres ' "$hba" && return 0
    sed -i -E 's/^(host\s+(all|replication)\s+all\s+\S+\s+)trust/\1scram-sha-256/;
               s/^local(\s+)(all|replication)(\s+)all(\s+)trust/local   \2 postgres peer\nlocal   \2 all scram-sha-256/' "$hba"
    sed -i -E '0,/^local   all postgres peer/s//local   all             postgres                                peer/' "$hba"
    af "$PG_BIN/pg_ctl" -D "$AF/$1" reload >/dev/null
}

running() { af pg_autoctl status --pgdata "$AF/$1" >/dev/null 2>&1; }

wait_until() {
    local what=$1 tries=$2; shift 2
    for _ in $(seq 1 "$tries"); do "$@" && return 0; sleep 1; done
    die "timed out waiting for $what; see $AF/*.log"
}

monitor_sql() { af_sql "$MON_PORT" pg_auto_failover -c "$1"; }
node_state() { monitor_sql "SELECT reportedstate FROM pgautofailover.node WHERE nodename = '$1'" 2>/dev/null; }
state_is() { [ "$(node_state "$1")" = "$2" ]; }

monitor_up() {
    if [ ! -f "$AF/monitor/PG_VERSION" ]; then
        af pg_autoctl create monitor --pgdata "$AF/monitor" --pgport "$MON_PORT" --hostname 127.0.0.1 \
            --auth scram-sha-256 --no-ssl >"$AF/monitor-create.log" 2>&1 \
            || die "pg_autoctl create monitor failed; see $AF/monitor-create.log"
    fi
    running monitor || af_daemon "$AF/monitor.log" pg_autoctl run --pgdata "$AF/monitor"
    wait_until "the monitor" 60 af_sql "$MON_PORT" pg_auto_failover -c 'SELECT 1' >/dev/null 2>&1
    secure_hba monitor
    af_sql "$MON_PORT" pg_auto_failover -c "ALTER USER autoctl_node PASSWORD '$(role_password pgaf-monitor)'" \
        -c "ALTER SYSTEM SET pgautofailover.health_check_period = 1000" \
        -c "ALTER SYSTEM SET pgautofailover.health_check_timeout = 1000" \
        -c "ALTER SYSTEM SET pgautofailover.health_check_retry_delay = 500" \
        -c "ALTER SYSTEM SET pgautofailover.health_check_max_retries = 1" \
        -c "ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = 3000" \
        -c "ALTER SYSTEM SET pgautofailover.primary_demote_timeout = 6000" \
        -c "SELECT pg_reload_conf()" >/dev/null
}

node_start() {
    running "$1" && return 0
    af_daemon "$AF/$1.log" pg_autoctl run --pgdata "$AF/$1"
}

# The first node becomes the primary: its passwords, the ledger's roles and database.
node_up() {
    local node=$1 port
    port=$(node_port "$1")
    if [ -f "$AF/$node/PG_VERSION" ]; then node_start "$node"; return 0; fi
    af_daemon "$AF/$node.log" pg_autoctl create postgres --pgdata "$AF/$node" --pgport "$port" \
        --hostname 127.0.0.1 --name "$node" --auth scram-sha-256 --no-ssl --run \
        --monitor "postgres://autoctl_node@127.0.0.1:$MON_PORT/pg_auto_failover?sslmode=disable"
    if [ "$node" = node1 ]; then
        wait_until "$node to run alone" 90 state_is "$node" single
        secure_hba "$node"
        af_sql "$port" postgres -c "ALTER USER pgautofailover_replicator PASSWORD '$(role_password pgaf-replication)'" \
            -c "ALTER USER postgres PASSWORD '$(role_password admin)'" >/dev/null
        af_sql "$port" postgres -v owner_pw="$(role_password ledgerline_owner)" \
            -v writer_pw="$(role_password ledgerline_poster)" -v reader_pw="$(role_password ledgerline_viewer)" \
            -f "$LEDGERLINE_ROOT/ops/postgres-init/roles.psql" >/dev/null
        af_sql "$port" postgres -c "CREATE DATABASE $LEDGERLINE_DB_NAME OWNER ledgerline_owner" >/dev/null
        # The secondary's base backup starts with a checkpoint, spread over minutes when there is
        # much to write (one CI run waited 100 s for it): write it all now.
        af_sql "$port" postgres -c "CHECKPOINT" >/dev/null
        # Timeouts of the nodes' own keepers, below the monitor's demote timeout.
        af pg_autoctl config set --pgdata "$AF/$node" timeout.network_partition_timeout 3 >/dev/null
    else
        wait_until "$node to become a secondary" 300 state_is "$node" secondary
        af pg_autoctl config set --pgdata "$AF/$node" timeout.network_partition_timeout 3 >/dev/null
    fi
}

write_env() {
    local hosts owner writer reader admin
    hosts="127.0.0.1:$(node_port node1),127.0.0.1:$(node_port node2)"
    owner=$(role_password ledgerline_owner); writer=$(role_password ledgerline_poster)
    reader=$(role_password ledgerline_viewer); admin=$(role_password admin)
    (umask 077 && cat >"$STACK/failover.env" <<ENV
# Written by ops/stack.sh failover up: the ledger on the pg_auto_failover pair. Writers connect to
# whichever node is primary (target_session_attrs=read-write); readers prefer the secondary.
LEDGERLINE_FAILOVER_DATABASE_URL=postgres://ledgerline_owner:$owner@$hosts/$LEDGERLINE_DB_NAME?target_session_attrs=read-write
LEDGERLINE_FAILOVER_WRITER_DATABASE_URL=postgres://ledgerline_poster:$writer@$hosts/$LEDGERLINE_DB_NAME?target_session_attrs=read-write
LEDGERLINE_FAILOVER_READER_DATABASE_URL=postgres://ledgerline_viewer:$reader@$hosts/$LEDGERLINE_DB_NAME?target_session_attrs=prefer-standby
LEDGERLINE_FAILOVER_ADMIN_DATABASE_URL=postgres://postgres:$admin@$hosts/postgres?target_session_attrs=read-write
ENV
    )
}

# A primary and a secondary, both as the monitor assigned them.
pair_ready() {
    [ "$(monitor_sql "SELECT string_agg(reportedstate::text, ' ' ORDER BY reportedstate::text) FROM pgautofailover.node WHERE reportedstate = goalstate" 2>/dev/null)" = "primary secondary" ]
}

# The node the monitor assigned the primary's role (a dead primary still reports its old state).
primary() { monitor_sql "SELECT nodename FROM pgautofailover.node WHERE goalstate IN ('primary', 'wait_primary', 'single') ORDER BY nodeid LIMIT 1"; }

# Every process of the node, as a lost host: the sessions of its pg_autoctl (supervisor and
# services) and its PostgreSQL, until none is left (a pg_autoctl service that outlived its
# supervisor would restart PostgreSQL as it was).
kill_node() {
    [[ " ${NODES[*]} " == *" $1 "* ]] || die "no node $1 (node1 or node2)"
    local pids sids="" postmaster own left
    own=$(ps -o sid= -p $$ | tr -d ' ')
    for _ in $(seq 1 50); do
        pids=$(pgrep -f -- "$AF/$1( |\$)" | tr '\n' ' ' || true)
        postmaster=$(head -1 "$AF/$1/postmaster.pid" 2>/dev/null || true)
        # The postmaster and its children (backends run in sessions of their own): a lost host
        # loses them all, and a surviving backend would keep PostgreSQL from starting again.
        [ -n "$postmaster" ] && kill -0 "$postmaster" 2>/dev/null \
            && pids="$pids $postmaster $(pgrep -P "$postmaster" | tr '\n' ' ' || true)"
        if [ -n "${pids// /}" ]; then
            sids=$(printf '%s\n' $sids $(ps -o sid= -p "$(echo $pids | tr ' ' ',')" 2>/dev/null || true) | sort -u)
        fi
        left=""
        for sid in $sids; do
            [ "$sid" = "$own" ] && continue
            if pgrep -s "$sid" >/dev/null 2>&1; then left=1; pkill -9 -s "$sid" 2>/dev/null || true; fi
        done
        if [ -n "${pids// /}" ]; then left=1; kill -9 $pids 2>/dev/null || true; fi
        # Done when nothing of the node was seen twice in a row, 0.2 s apart.
        if [ -z "$left" ]; then
            sleep 0.2
            [ -z "$(pgrep -f -- "$AF/$1( |\$)")" ] && ! { for sid in $sids; do pgrep -s "$sid"; done | grep -q .; } \
                && { say "$1: pg_autoctl and PostgreSQL killed (SIGKILL)"; return 0; }
        fi
        sleep 0.1
    done
    die "$1: processes survive SIGKILL"
}

case "${1:-}" in
    up)
        ensure_installed
        prepare_dir
        monitor_up
        for node in "${NODES[@]}"; do node_up "$node"; done
        # The monitor's states are stale until restarted nodes answer again.
        for node in "${NODES[@]}"; do
            wait_until "$node to accept connections" 120 af "$PG_BIN/pg_isready" -q -h /var/run/postgresql -p "$(node_port "$node")"
        done
        wait_until "a primary and a secondary" 120 pair_ready
        write_env
        say "failover pair ready: $(primary) is primary; settings in $STACK/failover.env"
        ;;
    status)
        af pg_autoctl show state --pgdata "$AF/monitor"
        ;;
    primary)
        primary
        ;;
    wait)
        wait_until "a primary and a secondary" 180 pair_ready
        ;;
    kill)
        kill_node "${2:-}"
        ;;
    start)
        node_start "${2:?usage: failover start NODE}"
        ;;
    down)
        for node in "${NODES[@]}" monitor; do
            [ -d "$AF/$node" ] && { af pg_autoctl stop --pgdata "$AF/$node" >/dev/null 2>&1 || true; }
        done
        for node in "${NODES[@]}" monitor; do
            for _ in $(seq 1 30); do running "$node" || break; sleep 1; done
            # A PostgreSQL whose pg_autoctl is gone (killed) is stopped directly.
            [ -f "$AF/$node/postmaster.pid" ] && { af "$PG_BIN/pg_ctl" -D "$AF/$node" -m fast -w stop >/dev/null 2>&1 || true; }
        done
        say "failover pair stopped"
        ;;
    *)
        die "usage: ops/stack.sh failover up|down|status|primary|kill NODE|start NODE"
        ;;
esac
