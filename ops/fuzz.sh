#!/usr/bin/env bash
# Runs the decode-and-validate fuzz target (tests/it/fuzz_decode.rs) for longer than CI does:
#   ops/fuzz.sh [CASES]     (default 200000 per property, release build)
# A failure prints the minimal input and is saved in tests/it/fuzz_decode.proptest-regressions,
# which every later run (CI included) replays first: commit that file with the fix. No services
# are needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LEDGERLINE_FUZZ_CASES="${1:-200000}" exec cargo test --release --test it -- --test-threads 2 fuzz_decode::
