# Shared helpers for the ops scripts. Sourced, not run.
# Every failure prints one line "ledgerline-stack: <reason>" on stderr and exits non-zero.

LEDGERLINE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
    echo "ledgerline-stack: $*" >&2
    exit 1
}

say() {
    echo "ledgerline-stack: $*" >&2
}

# Reads NAME=VALUE lines (comments and blank lines allowed) and exports them; refuses anything
# else, so a corrupt file is named instead of being executed.
load_conf() {
    local file="$1" n=0 line
    [ -r "$file" ] || die "cannot read settings file $file"
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case "$line" in ''|'#'*) continue ;; esac
        line="${line#export }"
        if [[ ! "$line" =~ ^[A-Z][A-Z0-9_]*=[^[:space:]\`\$\;\&\|\<\>\(\)]*$ ]]; then
            die "$file line $n is not NAME=VALUE: ${line:0:60}"
        fi
        export "${line%%=*}=${line#*=}"
    done < "$file"
}

# Settings: ops/stack.conf, or the file named by LEDGERLINE_STACK_CONF; then the generated
# .stack/env with connection URLs (written by `ops/stack.sh up`).
load_settings() {
    load_conf "${LEDGERLINE_STACK_CONF:-$LEDGERLINE_ROOT/ops/stack.conf}"
    export LEDGERLINE_STACK_DIR="${LEDGERLINE_STACK_DIR:-$LEDGERLINE_ROOT/.stack}"
    local key
    : "${LEDGERLINE_PGAF_PORT:=55440}"
    for key in LEDGERLINE_PG_PORT LEDGERLINE_KAFKA_PORT LEDGERLINE_PGAF_PORT; do
        [[ "${!key:-}" =~ ^[0-9]+$ ]] && [ "${!key}" -ge 1024 ] && [ "${!key}" -le 65535 ] \
            || die "$key=${!key:-} must be a port number between 1024 and 65535"
    done
    [[ "${LEDGERLINE_KAFKA_NODES:=1}" =~ ^[1-5]$ ]] || die "LEDGERLINE_KAFKA_NODES=$LEDGERLINE_KAFKA_NODES must be a node count from 1 to 5"
    [ $((LEDGERLINE_KAFKA_PORT + 2 * LEDGERLINE_KAFKA_NODES - 1)) -le 65535 ] \
        || die "LEDGERLINE_KAFKA_PORT=$LEDGERLINE_KAFKA_PORT leaves no room for $LEDGERLINE_KAFKA_NODES node(s) and their controllers"
    [[ "${LEDGERLINE_DB_NAME:-}" =~ ^[a-z_][a-z0-9_]*$ ]] || die "LEDGERLINE_DB_NAME=${LEDGERLINE_DB_NAME:-} must be a plain lower-case name"
}

# A random password per login role, made once and kept (mode 600) under the stack's directory.
role_password() {
    local file="$LEDGERLINE_STACK_DIR/pg-$1.pw"
    if [ ! -s "$file" ]; then
        (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file")
    fi
    cat "$file"
}

load_env() {
    load_settings
    [ -f "$LEDGERLINE_STACK_DIR/env" ] || die "$LEDGERLINE_STACK_DIR/env is missing: run ops/stack.sh up first"
    load_conf "$LEDGERLINE_STACK_DIR/env"
}

# Where PostgreSQL's programs are: LEDGERLINE_PG_BIN, or the newest of Debian's
# /usr/lib/postgresql/*/bin (empty when there is none).
pg_programs_dir() {
    echo "${LEDGERLINE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for_port() {
    local port="$1" seconds="$2" what="$3" i
    for ((i = 0; i < seconds * 10; i++)); do
        port_in_use "$port" && return 0
        sleep 0.1
    done
    die "$what did not start listening on 127.0.0.1:$port within ${seconds}s"
}
