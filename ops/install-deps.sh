#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build ledgerline (C toolchain for the vendored
# librdkafka). PostgreSQL and the Tansu broker are installed by ops/stack.sh up.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
for tool in cc c++ make pkg-config; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v cargo >/dev/null 2>&1 || die "cargo (the Rust toolchain) is needed: install it with rustup"
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || die "missing ${missing[*]}: run as root or apt-get install build-essential pkg-config"
say "installing build tools (${missing[*]})..."
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential pkg-config; } \
    >/tmp/ledgerline-apt.log 2>&1 || die "apt-get install build-essential pkg-config failed; see /tmp/ledgerline-apt.log"
