#!/usr/bin/env bash
# The local stack: PostgreSQL (Debian's initdb/pg_ctl) and a Kafka-protocol broker (Tansu with
# its SQLite storage engine), each on a private port, with data under .stack/ (git-ignored).
#
#   ops/stack.sh up       install what is missing, start both, create topics, write .stack/env
#   ops/stack.sh down     stop both (data is kept)
#   ops/stack.sh status   say what runs; exit 0 only when both do
#   ops/stack.sh reset    stop both and delete .stack/
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
TANSU_DIR="$STACK/tansu"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ledgerline"

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

# A random password per login role, made once and kept (mode 600) under .stack/.
role_password() {
    local file="$STACK/pg-$1.pw"
    if [ ! -s "$file" ]; then
        (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file")
    fi
    cat "$file"
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

pg_up() {
    ensure_postgres_installed
    local bin port="$LEDGERLINE_PG_PORT"
    bin=$(pg_bindir)
    if ! pg_running; then
        port_in_use "$port" && die "port $port is in use by another program: set LEDGERLINE_PG_PORT in ${LEDGERLINE_STACK_CONF:-ops/stack.conf}"
    fi
    pg_init
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
    if [ "$exists" != 1 ]; then
        PGPASSWORD="$(pg_password)" "$bin/psql" -h 127.0.0.1 -p "$port" -U "$PG_ADMIN" -d postgres -qc \
            "CREATE DATABASE $LEDGERLINE_DB_NAME OWNER $PG_OWNER" || die "cannot create database $LEDGERLINE_DB_NAME"
    fi
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

# --- Tansu (Kafka protocol) ---------------------------------------------------------------------

tansu_bin() {
    if [ -n "${LEDGERLINE_TANSU_BIN:-}" ]; then
        echo "$LEDGERLINE_TANSU_BIN"
    elif command -v tansu >/dev/null 2>&1; then
        command -v tansu
    elif [ -x "$HOME/.cargo/bin/tansu" ]; then
        echo "$HOME/.cargo/bin/tansu"
    fi
}

ensure_tansu_installed() {
    if [ -n "${LEDGERLINE_TANSU_BIN:-}" ] && [ ! -f "$LEDGERLINE_TANSU_BIN" -o ! -x "$LEDGERLINE_TANSU_BIN" ]; then
        die "LEDGERLINE_TANSU_BIN=$LEDGERLINE_TANSU_BIN is not an executable file"
    fi
    [ -n "$(tansu_bin)" ] && return 0
    [ "${LEDGERLINE_NO_INSTALL:-0}" = 1 ] && die "the tansu broker binary is not installed (cargo install tansu@$LEDGERLINE_TANSU_VERSION --locked --no-default-features --features libsql)"
    command -v cargo >/dev/null || die "cargo is needed to build the tansu broker and was not found"
    mkdir -p "$CACHE"
    say "building the Tansu broker $LEDGERLINE_TANSU_VERSION from crates.io: first run only, 10-15 minutes on 2 cores (log: $CACHE/tansu-install.log); later runs reuse ~/.cargo/bin/tansu"
    cargo install "tansu@$LEDGERLINE_TANSU_VERSION" --locked --no-default-features --features libsql \
        >"$CACHE/tansu-install.log" 2>&1 || die "building tansu failed; see $CACHE/tansu-install.log"
    [ -n "$(tansu_bin)" ] || die "tansu was built but is not on PATH or in ~/.cargo/bin"
}

tansu_pid() {
    local pid
    pid=$(cat "$TANSU_DIR/broker.pid" 2>/dev/null || true)
    # A killed broker can linger as a zombie when nothing reaps it: that is not running.
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" | cut -c1)" != Z ]; then
        echo "$pid"
    fi
}

tansu_up() {
    ensure_tansu_installed
    local bin port="$LEDGERLINE_KAFKA_PORT" url
    bin=$(tansu_bin)
    url="tcp://127.0.0.1:$port"
    mkdir -p "$TANSU_DIR"
    if [ -n "$(tansu_pid)" ]; then
        say "Tansu already running on 127.0.0.1:$port"
    else
        port_in_use "$port" && die "port $port is in use by another program: set LEDGERLINE_KAFKA_PORT in ${LEDGERLINE_STACK_CONF:-ops/stack.conf}"
        # Tansu reads sqlite://PATH as relative to its working directory: start it in its own.
        (cd "$TANSU_DIR" && exec setsid "$bin" broker --listener-url "$url" --advertised-listener-url "$url" \
            --storage-engine "sqlite://tansu.db" >>"$TANSU_DIR/broker.log" 2>&1 </dev/null) &
        echo $! >"$TANSU_DIR/broker.pid"
        local i
        for ((i = 0; i < 300; i++)); do
            port_in_use "$port" && break
            [ -n "$(tansu_pid)" ] || die "Tansu exited at start: $(grep -v '^\s*$' "$TANSU_DIR/broker.log" | tail -n 1 | cut -c1-200)"
            sleep 0.1
        done
        port_in_use "$port" || die "Tansu did not start listening on 127.0.0.1:$port within 30s (log: $TANSU_DIR/broker.log)"
        say "Tansu started on 127.0.0.1:$port (storage: $TANSU_DIR/tansu.db)"
    fi
    local topic
    for topic in "$LEDGERLINE_POSTINGS_TOPIC" "$LEDGERLINE_ANOMALIES_TOPIC" "$LEDGERLINE_REJECTIONS_TOPIC"; do
        create_topic "$bin" "$url" "$topic"
    done
    # Balance events are keyed by account and carry the full balance: compaction keeps the
    # latest per account, from which every balance can be rebuilt.
    create_topic "$bin" "$url" "$LEDGERLINE_BALANCES_TOPIC" --config cleanup.policy=compact
}

create_topic() {
    local bin="$1" url="$2" topic="$3" out
    shift 3
    if ! out=$("$bin" topic create "$topic" --partitions "$LEDGERLINE_TOPIC_PARTITIONS" --broker "$url" "$@" 2>&1); then
        case "$out" in
            *[Ee]xist*) ;;
            *) die "cannot create topic $topic: $(echo "$out" | tail -n 1)" ;;
        esac
    fi
}

tansu_down() {
    local pid
    pid=$(tansu_pid)
    if [ -n "$pid" ]; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        say "Tansu stopped"
    fi
    rm -f "$TANSU_DIR/broker.pid"
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
LEDGERLINE_KAFKA_BROKERS=127.0.0.1:$LEDGERLINE_KAFKA_PORT
LEDGERLINE_PG_BIN=$(pg_bindir)
LEDGERLINE_PGDATA=$PGDATA
LEDGERLINE_TANSU_BIN=$(tansu_bin)
LEDGERLINE_TANSU_DIR=$TANSU_DIR
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
        ensure_tansu_installed
        pg_up
        tansu_up
        write_env
        say "ready; settings in $STACK/env"
        ;;
    down)
        tansu_down
        pg_down
        ;;
    status)
        ok=0
        if pg_running; then echo "postgres: running on 127.0.0.1:$LEDGERLINE_PG_PORT"; else echo "postgres: stopped"; ok=3; fi
        if [ -n "$(tansu_pid)" ]; then echo "tansu: running on 127.0.0.1:$LEDGERLINE_KAFKA_PORT (pid $(tansu_pid))"; else echo "tansu: stopped"; ok=3; fi
        exit $ok
        ;;
    reset)
        tansu_down
        pg_down
        rm -rf "$STACK"
        say "removed $STACK"
        ;;
    *)
        die "usage: ops/stack.sh up|down|status|reset"
        ;;
esac
