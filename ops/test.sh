#!/usr/bin/env bash
# The whole test suite: starts the local stack (installing what is missing), then formatting,
# lints, unit tests and integration tests against the real PostgreSQL and broker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ops/lib.sh

ops/install-deps.sh --test
ops/stack.sh up
load_env

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets -- --test-threads "${LEDGERLINE_TEST_THREADS:-4}"
