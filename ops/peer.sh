#!/usr/bin/env bash
# The peer a user would pick instead of the poster, for `ledgerline bench peer`: a Kafka Connect
# worker (Apache Kafka's own) running Debezium's JDBC sink into PostgreSQL. Both are resolved
# from Maven Central with Maven (ops/peer/*.xml) into a cache outside the repository, once per
# version, and run with Java 17.
#
#   ops/peer.sh libs                               resolve once; print the worker's jar folder,
#                                                  the plugin folder and Kafka Connect's
#                                                  version, one per line
#   ops/peer.sh run WORKER_PROPS CONNECTOR_PROPS   a standalone worker in the foreground
#                                                  (its log on stderr, warnings and errors)
#
# Every failure: one line "ledgerline-stack: <reason>", non-zero exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings

KAFKA_VERSION="${LEDGERLINE_KAFKA_VERSION:?set LEDGERLINE_KAFKA_VERSION in ops/stack.conf}"
PEER_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ledgerline/peer-connect-$KAFKA_VERSION-debezium-jdbc-3.6.0"
PEER_OPS="$LEDGERLINE_ROOT/ops/peer"

# Resolves one pom's runtime jars into DIR; Maven writes into a scratch folder renamed into
# place, so an interrupted download never looks complete.
resolve() {
    local pom="$1" dir="$2" scratch="$2.partial.$$"
    [ -f "$dir/.complete" ] && return 0
    [ "${LEDGERLINE_NO_INSTALL:-0}" = 1 ] && die "$dir is not resolved (run once with network access)"
    command -v mvn >/dev/null 2>&1 || die "mvn (Maven) is needed for the peer benchmark: run ops/install-deps.sh"
    mkdir -p "$PEER_CACHE"
    rm -rf "$scratch"
    mvn -q -B -f "$pom" -Dkafka.version="$KAFKA_VERSION" \
        org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$scratch" >"$PEER_CACHE/maven.log" 2>&1 \
        || die "Maven could not resolve $pom; see $PEER_CACHE/maven.log"
    touch "$scratch/.complete"
    rm -rf "$dir"
    mv "$scratch" "$dir"
}

libs() {
    if [ ! -f "$PEER_CACHE/worker/.complete" ] || [ ! -f "$PEER_CACHE/plugin/debezium-jdbc/.complete" ]; then
        say "fetching Kafka Connect $KAFKA_VERSION and Debezium's JDBC sink from Maven Central (first run only, about 100 MB; cached in $PEER_CACHE)"
    fi
    resolve "$PEER_OPS/worker-pom.xml" "$PEER_CACHE/worker"
    resolve "$PEER_OPS/plugin-pom.xml" "$PEER_CACHE/plugin/debezium-jdbc"
    # What the worker provides stays out of the plugin's folder (see plugin-pom.xml).
    rm -f "$PEER_CACHE"/plugin/debezium-jdbc/{jackson-,kafka-clients-,connect-api-,slf4j-}*.jar
    echo "$PEER_CACHE/worker"
    echo "$PEER_CACHE/plugin"
    echo "$KAFKA_VERSION"
}

run() {
    local worker="$1" connector="$2"
    command -v java >/dev/null 2>&1 || die "java is not installed (Kafka Connect needs Java 17): run ops/install-deps.sh"
    exec java -Xms256m -Xmx1g -XX:+UseG1GC -cp "$PEER_CACHE/worker/*" \
        -Dlog4j2.configurationFile="$LEDGERLINE_ROOT/ops/kafka/tools-log4j2.yaml" \
        org.apache.kafka.connect.cli.ConnectStandalone "$worker" "$connector"
}

case "${1:-}" in
    libs) libs ;;
    run) [ $# -eq 3 ] || die "usage: ops/peer.sh run WORKER_PROPS CONNECTOR_PROPS"; run "$2" "$3" ;;
    *) die "usage: ops/peer.sh libs | run WORKER_PROPS CONNECTOR_PROPS" ;;
esac
