#!/usr/bin/env bash
# The local stack: PostgreSQL (Debian's initdb/pg_ctl) and Apache Kafka (KRaft, from Maven Central,
# run with Java 17 by ops/kafka.sh), each on private ports, with data under .stack/ (git-ignored).
# One Kafka node by default; LEDGERLINE_KAFKA_NODES=3 starts a three-node cluster (one controller
# quorum, replication factor 3, min.insync.replicas 2) for failover work.
#
#   ops/stack.sh up       install what is missing, start both, create topics, write .stack/env
#   ops/stack.sh down     stop both (data is kept)
#   ops/stack.sh status   say what runs; exit 0 only when both do
#   ops/stack.sh reset    stop both and delete .stack/
#   ops/stack.sh failover up|down|...   a pg_auto_failover pair besides (ops/pg-failover.sh)
#
# Settings: ops/stack.conf (or LEDGERLINE_STACK_CONF). Every failure: one line, non-zero exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings

STACK="$LEDGERLINE_STACK_DIR"
PGDATA="$STACK/pg/data"
PG_RUN="$STACK/pg/run"
PG_ADMIN=ledgerline_admin
# Login roles made by ops/postgres-init/roles.psql (names fixed there).
PG_OWNER=ledgerline_owner
PG_WRITER=ledgerline_poster
PG_READER=ledgerline_viewer

# --- PostgreSQL -------------------------------------------------------------------------------

# The server's programs: as pg_programs_dir (lib.sh), but only Debian's with initdb (a
# client-only install has psql and pg_dump there, not the server).
pg_bindir() {
    local dir
    dir=$(pg_programs_dir)
    if [ -n "${LEDGERLINE_PG_BIN:-}" ] || { [ -n "$dir" ] && [ -x "$dir/initdb" ]; }; then
        echo "$dir"
    fi
}

ensure_postgres_installed() {
    if [ -n "${LEDGERLINE_PG_BIN:-}" ] && [ ! -x "$LEDGERLINE_PG_BIN/pg_ctl" ]; then
        die "LEDGERLINE_PG_BIN=$LEDGERLINE_PG_BIN has no pg_ctl"
    fi
    [ -n "$(pg_bindir)" ] && return 0
    [ "${LEDGERLINE_NO_INSTALL:-0}" = 1 ] && die "PostgreSQL server (initdb, pg_ctl) is not installed: apt-get install postgresql"
    say "installing Debian's postgresql package (once)..."
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
        >"$STACK/apt.log" 2>&1 || die "apt-get install postgresql failed; see $STACK/apt.log"
    [ -n "$(pg_bindir)" ] || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb found"
}

# PostgreSQL refuses to run as root: when we are root, run its tools as the postgres user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_owner_dirs() {
    mkdir -p "$STACK/pg" "$PG_RUN"
    if [ "$(id -u)" = 0 ]; then chown postgres "$STACK/pg" "$PG_RUN"; fi
    chmod 700 "$STACK/pg"
}

pg_running() {
    local bin
    bin=$(pg_bindir)
    [ -n "$bin" ] && [ -f "$PGDATA/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

pg_password() { role_password admin; }

pg_init() {
    [ -f "$PGDATA/PG_VERSION" ] && return 0
    local bin pwfile
    bin=$(pg_bindir)
    pg_owner_dirs
    pwfile="$STACK/pg/initdb.pw"
    pg_password >"$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
    as_pg "$bin/initdb" -D "$PGDATA" -U "$PG_ADMIN" --pwfile="$pwfile" -E UTF8 --no-locale \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 >"$STACK/pg-initdb.log" 2>&1 \
        || die "initdb failed; see $STACK/pg-initdb.log"
    rm -f "$pwfile"
    cat >>"$PGDATA/postgresql.conf" <<CONF
# ledgerline local stack
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_RUN'
max_connections = 200
shared_buffers = 256MB
wal_level = replica
log_min_messages = warning
CONF
}

# pg_stat_statements, so that `ledgerline bench pipeline` can show PostgreSQL's time per
# statement (src/bench/statements.rs). Also added to a stack made before it (read at the
# next start).
pg_statements() {
    grep -q '^shared_preload_libraries' "$PGDATA/postgresql.conf" && return 0
    printf "shared_preload_libraries = 'pg_stat_statements'\n" >>"$PGDATA/postgresql.conf"
}

pg_up() {
    ensure_postgres_installed
    local bin port="$LEDGERLINE_PG_PORT"
    bin=$(pg_bindir)
    if ! pg_running; then
        port_in_use "$port" && die "port $port is in use by another program: set LEDGERLINE_PG_PORT in ${LEDGERLINE_STACK_CONF:-ops/stack.conf}"
    fi
    pg_init
    pg_statements
    if pg_running; then
        say "PostgreSQL already running on 127.0.0.1:$port"
    else
        port_in_use "$port" && die "port $port is in use by another program: set LEDGERLINE_PG_PORT in ${LEDGERLINE_STACK_CONF:-ops/stack.conf}"
        pg_owner_dirs
        as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$STACK/pg/server.log" -w -t 60 -o "-p $port" start >/dev/null \
            || die "PostgreSQL did not start; see $STACK/pg/server.log"
        say "PostgreSQL started on 127.0.0.1:$port"
    fi
    local exists
    exists=$(PGPASSWORD="$(pg_password)" "$bin/psql" -h 127.0.0.1 -p "$port" -U "$PG_ADMIN" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$LEDGERLINE_DB_NAME'") || die "cannot connect to PostgreSQL on 127.0.0.1:$port"
    pg_roles
    pg_tls
    if [ "$exists" != 1 ]; then
        PGPASSWORD="$(pg_password)" "$bin/psql" -h 127.0.0.1 -p "$port" -U "$PG_ADMIN" -d postgres -qc \
            "CREATE DATABASE $LEDGERLINE_DB_NAME OWNER $PG_OWNER" || die "cannot create database $LEDGERLINE_DB_NAME"
    fi
}

# TLS: a CA of the stack's own (made once, under .stack/tls/) and a server certificate it signed
# for the name "localhost" only (not 127.0.0.1: a client that checks host names connects as
# localhost). The server accepts TLS from any client and requires it of members of
# ledgerline_tls_required (pg_hba.conf: plaintext rejected for them). Clients verify with
# sslmode=verify-full&sslrootcert=$LEDGERLINE_PG_CA_FILE (SECURITY.md).
pg_tls() {
    local tls="$STACK/tls" bin psql
    bin=$(pg_bindir)
    command -v openssl >/dev/null 2>&1 || die "openssl is needed to make the stack's TLS certificates"
    if [ ! -s "$tls/server.crt" ]; then
        mkdir -p "$tls" && chmod 700 "$tls"
        {
            openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ledgerline local CA" \
                -keyout "$tls/ca.key" -out "$tls/ca.crt" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
                -keyout "$tls/server.key" -out "$tls/server.csr" &&
            printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext" &&
            openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
                -CAcreateserial -days 3650 -extfile "$tls/server.ext" -out "$tls/server.crt"
        } >"$STACK/tls.log" 2>&1 || die "cannot make the TLS certificates; see $STACK/tls.log"
        chmod 644 "$tls/ca.crt"
    fi
    if [ ! -s "$PGDATA/server.crt" ]; then
        cp "$tls/server.crt" "$tls/server.key" "$PGDATA/"
        chmod 600 "$PGDATA/server.key"
        [ "$(id -u)" = 0 ] && chown postgres "$PGDATA/server.crt" "$PGDATA/server.key"
    fi
    if ! grep -q "ledgerline_tls_required" "$PGDATA/pg_hba.conf"; then
        # Before the first host rule: pg_hba.conf is read top down, the first match decides.
        sed -i '0,/^host /s//hostnossl all +ledgerline_tls_required 127.0.0.1\/32 reject\nhost /' "$PGDATA/pg_hba.conf"
    fi
    psql=(env PGPASSWORD="$(pg_password)" "$bin/psql" -h 127.0.0.1 -p "$LEDGERLINE_PG_PORT" -U "$PG_ADMIN" -d postgres -qAt)
    "${psql[@]}" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledgerline_tls_required') THEN CREATE ROLE ledgerline_tls_required NOLOGIN; END IF; END \$\$" \
        -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null 2>"$STACK/tls.log" \
        || die "cannot turn TLS on; see $STACK/tls.log"
}

# Least-privilege login roles (the file explains each): the same script as the PostgreSQL
# container of docker-compose.yml runs.
pg_roles() {
    PGPASSWORD="$(pg_password)" "$(pg_bindir)/psql" -h 127.0.0.1 -p "$LEDGERLINE_PG_PORT" -U "$PG_ADMIN" \
        -d postgres -q -v owner_pw="$(role_password "$PG_OWNER")" -v writer_pw="$(role_password "$PG_WRITER")" \
        -v reader_pw="$(role_password "$PG_READER")" -f "$LEDGERLINE_ROOT/ops/postgres-init/roles.psql" \
        >/dev/null 2>"$STACK/pg-roles.log" || die "cannot create the PostgreSQL roles; see $STACK/pg-roles.log"
}

pg_down() {
    if pg_running; then
        as_pg "$(pg_bindir)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || die "PostgreSQL did not stop"
        say "PostgreSQL stopped"
    fi
}

# --- Apache Kafka (ops/kafka.sh) ------------------------------------------------------------------

KAFKA="$LEDGERLINE_ROOT/ops/kafka.sh"
KAFKA_DIR="$STACK/kafka"

kafka_nodes() { seq 1 "$LEDGERLINE_KAFKA_NODES"; }
kafka_node_dir() { echo "$KAFKA_DIR/node-$1"; }
# Node i listens on LEDGERLINE_KAFKA_PORT + 2(i-1), its controller on the port after it.
kafka_node_port() { echo $((LEDGERLINE_KAFKA_PORT + 2 * ($1 - 1))); }
kafka_bootstrap() {
    local n list=""
    for n in $(kafka_nodes); do list+="${list:+,}127.0.0.1:$(kafka_node_port "$n")"; done
    echo "$list"
}

ensure_kafka_installed() {
    "$KAFKA" classpath >/dev/null
}

kafka_up() {
    local n dir port started=()
    # The node count is fixed when the cluster is first formatted: a node added later would have
    # no place in the controller quorum.
    if [ -f "$KAFKA_DIR/nodes" ] && [ "$(cat "$KAFKA_DIR/nodes")" != "$LEDGERLINE_KAFKA_NODES" ]; then
        die "the stack's Kafka cluster has $(cat "$KAFKA_DIR/nodes") node(s), not LEDGERLINE_KAFKA_NODES=$LEDGERLINE_KAFKA_NODES: run ops/stack.sh reset first"
    fi
    mkdir -p "$KAFKA_DIR"
    echo "$LEDGERLINE_KAFKA_NODES" >"$KAFKA_DIR/nodes"
    for n in $(kafka_nodes); do
        dir=$(kafka_node_dir "$n")
        port=$(kafka_node_port "$n")
        if "$KAFKA" pid "$dir" >/dev/null 2>&1; then
            say "Kafka node $n already running on 127.0.0.1:$port"
            continue
        fi
        for p in "$port" $((port + 1)); do
            port_in_use "$p" && die "port $p is in use by another program: set LEDGERLINE_KAFKA_PORT in ${LEDGERLINE_STACK_CONF:-ops/stack.conf}"
        done
        mkdir -p "$dir"
        "$KAFKA" properties "$n" "$LEDGERLINE_KAFKA_NODES" "$LEDGERLINE_KAFKA_PORT" "$dir/data" >"$dir/server.properties"
        "$KAFKA" start "$dir"
        started+=("$n")
    done
    # The nodes of a cluster wait for each other's controllers: start all, then wait for each.
    for n in "${started[@]}"; do
        "$KAFKA" wait "$(kafka_node_dir "$n")" 90
        say "Kafka $LEDGERLINE_KAFKA_VERSION node $n started on 127.0.0.1:$(kafka_node_port "$n") (data: $(kafka_node_dir "$n")/data)"
    done
    kafka_topics
}

# The stack's topics, made by Kafka's own TopicCommand (one JVM per call, so only the missing
# ones are made, side by side). Balance events are keyed by account and carry the full balance:
# compaction keeps the latest per account, from which every balance can be rebuilt.
kafka_topics() {
    local existing topic pids=() failed=0
    existing=$("$KAFKA" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(kafka_bootstrap)" --list 2>"$KAFKA_DIR/topics.log") \
        || die "cannot list Kafka topics: $(tail -n 1 "$KAFKA_DIR/topics.log")"
    for topic in "$LEDGERLINE_POSTINGS_TOPIC" "$LEDGERLINE_ANOMALIES_TOPIC" "$LEDGERLINE_REJECTIONS_TOPIC" "$LEDGERLINE_BALANCES_TOPIC"; do
        grep -qxF "$topic" <<<"$existing" && continue
        local extra=()
        [ "$topic" = "$LEDGERLINE_BALANCES_TOPIC" ] && extra=(--config cleanup.policy=compact)
        "$KAFKA" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(kafka_bootstrap)" --create \
            --if-not-exists --topic "$topic" --partitions "$LEDGERLINE_TOPIC_PARTITIONS" "${extra[@]}" \
            >/dev/null 2>"$KAFKA_DIR/topic-$topic.log" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [ "$failed" = 0 ] || die "cannot create the stack's topics; see $KAFKA_DIR/topic-*.log"
}

# Stopping and status cover the nodes the cluster was made with, whatever the setting says now.
kafka_made_nodes() { seq 1 "$(cat "$KAFKA_DIR/nodes" 2>/dev/null || echo "$LEDGERLINE_KAFKA_NODES")"; }

kafka_down() {
    local n
    for n in $(kafka_made_nodes); do
        if "$KAFKA" pid "$(kafka_node_dir "$n")" >/dev/null 2>&1; then
            "$KAFKA" stop "$(kafka_node_dir "$n")"
            say "Kafka node $n stopped"
        fi
    done
}

kafka_status() {
    local n ok=0 pid
    for n in $(kafka_made_nodes); do
        if pid=$("$KAFKA" pid "$(kafka_node_dir "$n")" 2>/dev/null); then
            echo "kafka node $n: running on 127.0.0.1:$(kafka_node_port "$n") (pid $pid)"
        else
            echo "kafka node $n: stopped"
            ok=3
        fi
    done
    return $ok
}

# --- env file -----------------------------------------------------------------------------------

write_env() {
    local pw
    pw=$(pg_password)
    (umask 077 && cat >"$STACK/env" <<ENV
# Written by ops/stack.sh up. Connection settings for every ledgerline command and test.
# Owner: migrate and the admin commands. Writer: poster and reporter. Reader: reports, verify.
LEDGERLINE_DATABASE_URL=postgres://$PG_OWNER:$(role_password "$PG_OWNER")@127.0.0.1:$LEDGERLINE_PG_PORT/$LEDGERLINE_DB_NAME
LEDGERLINE_WRITER_DATABASE_URL=postgres://$PG_WRITER:$(role_password "$PG_WRITER")@127.0.0.1:$LEDGERLINE_PG_PORT/$LEDGERLINE_DB_NAME
LEDGERLINE_READER_DATABASE_URL=postgres://$PG_READER:$(role_password "$PG_READER")@127.0.0.1:$LEDGERLINE_PG_PORT/$LEDGERLINE_DB_NAME
# Superuser of the local server: creating databases (tests, restore drills), backups.
LEDGERLINE_ADMIN_DATABASE_URL=postgres://$PG_ADMIN:$pw@127.0.0.1:$LEDGERLINE_PG_PORT/postgres
LEDGERLINE_KAFKA_BROKERS=$(kafka_bootstrap)
LEDGERLINE_PG_BIN=$(pg_bindir)
# The CA that signed the server's certificate (for sslmode=verify-full; the name is localhost).
LEDGERLINE_PG_CA_FILE=$STACK/tls/ca.crt
LEDGERLINE_PGDATA=$PGDATA
LEDGERLINE_KAFKA_DIR=$KAFKA_DIR
LEDGERLINE_KAFKA_NODES=$LEDGERLINE_KAFKA_NODES
LEDGERLINE_KAFKA_VERSION=$LEDGERLINE_KAFKA_VERSION
LEDGERLINE_POSTINGS_TOPIC=$LEDGERLINE_POSTINGS_TOPIC
LEDGERLINE_BALANCES_TOPIC=$LEDGERLINE_BALANCES_TOPIC
LEDGERLINE_ANOMALIES_TOPIC=$LEDGERLINE_ANOMALIES_TOPIC
LEDGERLINE_REJECTIONS_TOPIC=$LEDGERLINE_REJECTIONS_TOPIC
ENV
    )
}

case "${1:-}" in
    up)
        mkdir -p "$STACK"
        # Install or find both programs before starting either, so a missing one fails fast.
        ensure_postgres_installed
        ensure_kafka_installed
        pg_up
        kafka_up
        write_env
        say "ready; settings in $STACK/env"
        ;;
    down)
        [ -d "$STACK/pgaf" ] && bash "$LEDGERLINE_ROOT/ops/pg-failover.sh" down
        kafka_down
        pg_down
        ;;
    status)
        ok=0
        if pg_running; then echo "postgres: running on 127.0.0.1:$LEDGERLINE_PG_PORT"; else echo "postgres: stopped"; ok=3; fi
        kafka_status || ok=3
        exit $ok
        ;;
    failover)
        shift
        exec bash "$LEDGERLINE_ROOT/ops/pg-failover.sh" "$@"
        ;;
    reset)
        [ -x "$LEDGERLINE_ROOT/ops/pg-failover.sh" ] && [ -d "$STACK/pgaf" ] && bash "$LEDGERLINE_ROOT/ops/pg-failover.sh" down
        kafka_down
        pg_down
        rm -rf "$STACK"
        say "removed $STACK"
        ;;
    *)
        die "usage: ops/stack.sh up|down|status|reset|failover ..."
        ;;
esac
