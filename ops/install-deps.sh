#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build ledgerline (C toolchain and OpenSSL headers
# for the vendored librdkafka) and, with --test, what the test suite uses (promtool and Prometheus,
# docker-compose to validate the compose file, gpg for encrypted backups, Chromium for the
# status page test). PostgreSQL is installed by ops/stack.sh up; Apache Kafka's modules are
# fetched from Maven Central by ops/kafka.sh, which needs the Java 17 runtime and Maven installed
# here.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v cargo >/dev/null 2>&1 || die "cargo (the Rust toolchain) is needed: install it with rustup"
packages=()
need() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
need cc build-essential
need c++ build-essential
need make build-essential
need pkg-config pkg-config
need java openjdk-17-jre-headless
# javac: the Java client example (examples/java-producer) is compiled in the suite.
need javac openjdk-17-jdk-headless
need mvn maven
# OpenSSL headers: librdkafka is built with SSL for TLS and SASL/SCRAM to the broker.
pkg-config --exists openssl 2>/dev/null || packages+=(libssl-dev)
if [ "${1:-}" = --test ]; then
    need promtool prometheus
    need prometheus prometheus
    need docker-compose docker-compose
    need gpg gnupg
    need chromium chromium
    # kcat: reads the JSON events as a downstream team's tooling would (tests/it/event_formats.rs).
    need kcat kcat
fi
# The independent Kafka client of the interoperability tests, Python's confluent-kafka (with
# its own librdkafka, and its Schema Registry client and Avro serializer) and fastavro,
# schemathesis, which tests the query API against its
# OpenAPI document, and jsonschema, which checks JSON events against schemas/json/: from PyPI,
# in a virtual environment in the cache.
if [ "${1:-}" = --test ]; then
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/ledgerline/venv-py"
    if ! "$venv/bin/python" -c 'import confluent_kafka.schema_registry.avro, fastavro, schemathesis, jsonschema' 2>/dev/null; then
        command -v python3 >/dev/null 2>&1 || die "python3 is needed for the interoperability tests"
        say "installing confluent-kafka, fastavro, schemathesis and jsonschema from PyPI into $venv (once)..."
        { python3 -m venv "$venv" && "$venv/bin/pip" install -q "confluent-kafka[schemaregistry,avro]==2.16.1" fastavro==1.13.1 schemathesis==4.32.5 jsonschema==4.26.0; } \
            >/tmp/ledgerline-pip.log 2>&1 || die "pip install confluent-kafka fastavro schemathesis jsonschema failed; see /tmp/ledgerline-pip.log"
    fi
fi
[ ${#packages[@]} -eq 0 ] && exit 0
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
[ "$(id -u)" = 0 ] || die "missing ${packages[*]}: run as root or apt-get install them"
say "installing ${packages[*]} (once)..."
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"; } \
    >/tmp/ledgerline-apt.log 2>&1 || die "apt-get install ${packages[*]} failed; see /tmp/ledgerline-apt.log"
