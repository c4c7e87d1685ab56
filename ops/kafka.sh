#!/usr/bin/env bash
# Apache Kafka (KRaft) without Docker or a release tarball: the broker's modules are resolved from
# Maven Central with Maven (ops/kafka/pom.xml) into a cache outside the repository and run with
# Java 17. Used by ops/stack.sh for the stack's node(s) and by tests that need brokers of their
# own (authentication, three-node failover).
#
#   ops/kafka.sh classpath                      resolve once; print the directory of jars
#   ops/kafka.sh properties NODE NODES PORT DIR print node NODE's server.properties (of NODES
#                                               nodes; node i listens on PORT+2(i-1), its
#                                               controller on the next port; data under DIR)
#   ops/kafka.sh start NODE_DIR [FORMAT_ARGS]   format once (cluster id shared by the nodes of
#                                               NODE_DIR's parent), start in the background
#   ops/kafka.sh wait NODE_DIR SECONDS          until the node says it has started
#   ops/kafka.sh stop NODE_DIR | kill NODE_DIR  SIGTERM (controlled) or SIGKILL
#   ops/kafka.sh pid NODE_DIR                   the running node's pid (exit 1 when not running)
#   ops/kafka.sh tool CLASS ARGS...             one of Kafka's tools, e.g.
#                                               org.apache.kafka.tools.TopicCommand
#
# A node directory holds server.properties (written by the caller), broker.log and broker.pid.
# Every failure: one line "ledgerline-stack: <reason>", non-zero exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings

KAFKA_VERSION="${LEDGERLINE_KAFKA_VERSION:?set LEDGERLINE_KAFKA_VERSION in ops/stack.conf}"
[[ "$KAFKA_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "LEDGERLINE_KAFKA_VERSION=$KAFKA_VERSION is not a version like 4.1.1"
KAFKA_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ledgerline/kafka-$KAFKA_VERSION"
KAFKA_OPS="$LEDGERLINE_ROOT/ops/kafka"

require_java() {
    command -v java >/dev/null 2>&1 || die "java is not installed (Kafka needs Java 17 or newer): run ops/install-deps.sh"
    local major
    major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    [ "${major%%.*}" -ge 17 ] 2>/dev/null || die "Kafka $KAFKA_VERSION needs Java 17 or newer; java is ${major:-unknown}"
}

# The broker's runtime classpath, resolved once per version. Maven writes into a scratch
# directory that is renamed into place, so an interrupted download never looks complete.
kafka_libs() {
    if [ ! -f "$KAFKA_CACHE/libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then
        [ "${LEDGERLINE_NO_INSTALL:-0}" = 1 ] && die "Apache Kafka $KAFKA_VERSION is not in $KAFKA_CACHE (run ops/stack.sh up once with network access)"
        command -v mvn >/dev/null 2>&1 || die "mvn (Maven) is needed to fetch Apache Kafka and was not found: run ops/install-deps.sh"
        mkdir -p "$KAFKA_CACHE"
        say "fetching Apache Kafka $KAFKA_VERSION's modules from Maven Central (first run only, about 45 MB, 30-60 s; cached in $KAFKA_CACHE)"
        local scratch="$KAFKA_CACHE/libs.partial.$$"
        rm -rf "$scratch"
        mvn -q -B -f "$KAFKA_OPS/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
            org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$scratch" >"$KAFKA_CACHE/maven.log" 2>&1 \
            || die "Maven could not fetch Apache Kafka $KAFKA_VERSION; see $KAFKA_CACHE/maven.log"
        rm -rf "$KAFKA_CACHE/libs"
        mv "$scratch" "$KAFKA_CACHE/libs"
    fi
    echo "$KAFKA_CACHE/libs"
}

# Sized for a 2-core machine: Kafka's defaults (8 I/O threads, 3 network threads, 10 background
# threads, 50 partitions for each internal topic, a 128 MB log-cleaner buffer) are for servers.
node_properties() {
    local node="$1" nodes="$2" base="$3" data="$4" i voters=""
    for ((i = 1; i <= nodes; i++)); do
        voters+="${voters:+,}$i@127.0.0.1:$((base + 2 * (i - 1) + 1))"
    done
    local port=$((base + 2 * (node - 1))) rf=$((nodes < 3 ? nodes : 3)) isr=$((nodes < 3 ? 1 : 2))
    cat <<PROPS
# Written by ops/kafka.sh: node $node of $nodes, broker and controller in one process (KRaft).
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
auto.create.topics.enable=false
num.partitions=4
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
num.io.threads=2
num.network.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
# Larger than Kafka's 1 MB so that a request above ledgerline's own 64 KiB limit can reach the
# poster and be rejected with its bytes; a 10 MB one is still refused at produce time.
message.max.bytes=8388608
replica.fetch.max.bytes=8388608
PROPS
}

node_pid() {
    local pid
    pid=$(cat "$1/broker.pid" 2>/dev/null || true)
    # A killed broker can linger as a zombie when nothing reaps it: that is not running.
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" | cut -c1)" != Z ]; then
        echo "$pid"
    else
        return 1
    fi
}

# A KRaft cluster id: 16 random bytes, base64url without padding (what `StorageTool
# random-uuid` prints), without a leading '-' so that no tool takes it for an option.
cluster_id() {
    local file="$1/cluster-id" id
    if [ ! -s "$file" ]; then
        id=-
        while [[ "$id" == -* ]]; do
            id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        done
        echo "$id" >"$file"
    fi
    cat "$file"
}

node_start() {
    local dir="$1" libs data
    shift
    [ -f "$dir/server.properties" ] || die "$dir/server.properties is missing"
    node_pid "$dir" >/dev/null && return 0
    require_java
    libs=$(kafka_libs)
    data=$(sed -n 's/^log\.dirs=//p' "$dir/server.properties" | tail -n 1)
    if [ ! -f "$data/meta.properties" ]; then
        java -Xmx256m -cp "$libs/*" -Dlog4j2.configurationFile="$KAFKA_OPS/tools-log4j2.yaml" \
            kafka.tools.StorageTool format -t "$(cluster_id "$(dirname "$dir")")" \
            -c "$dir/server.properties" "$@" >"$dir/format.log" 2>&1 \
            || die "formatting Kafka storage failed: $(tail -n 1 "$dir/format.log")"
    fi
    [ -f "$dir/broker.log" ] && mv "$dir/broker.log" "$dir/broker.log.prev"
    (exec setsid java -Xms256m -Xmx${LEDGERLINE_KAFKA_HEAP:-768m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dkafka.logs.dir="$dir" \
        -Dlog4j2.configurationFile="$KAFKA_OPS/log4j2.yaml" -cp "$libs/*" \
        kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 </dev/null) &
    echo $! >"$dir/broker.pid"
}

node_wait() {
    local dir="$1" seconds="$2" i
    for ((i = 0; i < seconds * 10; i++)); do
        grep -q "Kafka Server started" "$dir/broker.log" 2>/dev/null && return 0
        if ! node_pid "$dir" >/dev/null; then
            die "Kafka exited at start: $(grep -E ' (ERROR|FATAL) ' "$dir/broker.log" | tail -n 1 | cut -c1-300) (log: $dir/broker.log)"
        fi
        sleep 0.1
    done
    die "Kafka did not start within ${seconds}s (log: $dir/broker.log)"
}

node_stop() {
    local dir="$1" signal="$2" pid i
    pid=$(node_pid "$dir") || { rm -f "$dir/broker.pid"; return 0; }
    kill "-$signal" "$pid"
    # A controlled shutdown hands leadership over first; on one node it takes a few seconds.
    for ((i = 0; i < 300; i++)); do node_pid "$dir" >/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/broker.pid"
}

tool() {
    local libs class="$1"
    shift
    require_java
    libs=$(kafka_libs)
    exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$libs/*" \
        -Dlog4j2.configurationFile="$KAFKA_OPS/tools-log4j2.yaml" "$class" "$@"
}

case "${1:-}" in
    classpath) require_java && kafka_libs ;;
    properties) [ $# -eq 5 ] || die "usage: ops/kafka.sh properties NODE NODES PORT DATA_DIR"; node_properties "$2" "$3" "$4" "$5" ;;
    start) [ $# -ge 2 ] || die "usage: ops/kafka.sh start NODE_DIR [FORMAT_ARGS]"; node_start "${@:2}" ;;
    wait) [ $# -eq 3 ] || die "usage: ops/kafka.sh wait NODE_DIR SECONDS"; node_wait "$2" "$3" ;;
    stop) node_stop "${2:?usage: ops/kafka.sh stop NODE_DIR}" TERM ;;
    kill) node_stop "${2:?usage: ops/kafka.sh kill NODE_DIR}" KILL ;;
    pid) node_pid "${2:?usage: ops/kafka.sh pid NODE_DIR}" ;;
    tool) [ $# -ge 2 ] || die "usage: ops/kafka.sh tool CLASS ARGS..."; tool "${@:2}" ;;
    *) die "usage: ops/kafka.sh classpath|properties|start|wait|stop|kill|pid|tool" ;;
esac
