#!/usr/bin/env bash
# The whole test suite: starts the local stack (installing what is missing), then formatting,
# lints, unit tests and integration tests against the real PostgreSQL and broker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ops/lib.sh

ops/install-deps.sh --test
ops/stack.sh up
load_env
# The independent client of the interoperability tests (installed by install-deps.sh --test).
export LEDGERLINE_PYTHON="${XDG_CACHE_HOME:-$HOME/.cache}/ledgerline/venv-py/bin/python"

# Integration tests make databases of their own (test_, restored_ or empty_ and 32 hex digits),
# about fifty per run of the suite (up to tens of MB each). They are dropped when the suite ends,
# passed or failed, and the leftovers of an interrupted run when it starts. To look into a
# failed test's database, run with LEDGERLINE_KEEP_TEST_DBS=1. A database with a connection
# open (another suite on the same stack) is left alone: DROP DATABASE refuses it.
drop_test_databases() {
    [ "${LEDGERLINE_KEEP_TEST_DBS:-0}" = 1 ] && return 0
    local psql db dropped=0
    psql="$(pg_programs_dir)/psql"
    for db in $("$psql" "$LEDGERLINE_ADMIN_DATABASE_URL" -Atc \
        "SELECT datname FROM pg_database WHERE datname ~ '^(test|restored|empty)_[0-9a-f]{32}$'" 2>/dev/null || true); do
        "$psql" "$LEDGERLINE_ADMIN_DATABASE_URL" -qc "DROP DATABASE \"$db\"" >/dev/null 2>&1 \
            && dropped=$((dropped + 1))
    done
    [ "$dropped" -eq 0 ] || say "dropped $dropped test databases"
}
drop_test_databases
trap drop_test_databases EXIT

echo "== cargo fmt --check"
cargo fmt --check
# The benchmarks are a feature the service build leaves out; the suite builds and runs them.
echo "== cargo clippy --all-targets --features bench -- -D warnings"
cargo clippy --all-targets --features bench --quiet -- -D warnings
threads="${LEDGERLINE_TEST_THREADS:-4}"
echo "== cargo test: unit tests"
cargo test --lib --bins --features bench -- --test-threads "$threads"
# One integration-test binary (tests/it), run one module at a time: some modules stop, pause or
# restart the stack's services, and no other module's tests may share the stack meanwhile.
cargo test --test it --features bench --no-run
modules=$(cargo test --test it --features bench -q -- --list --format terse 2>/dev/null |
    sed -n 's/^\([a-z0-9_]*\)::.*: test$/\1/p' | sort -u)
[ -n "$modules" ] || die "no integration-test modules found in tests/it"
# --show-output: the figures tests print (e.g. the reporter's kill loops: events received by a
# read_committed consumer) are in the log of every run, not only of a failed one.
for module in $modules; do
    echo "== cargo test: integration tests, $module"
    cargo test --test it --features bench -- --test-threads "$threads" --show-output "$module::"
done
