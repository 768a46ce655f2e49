#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker+controller in one JVM) for development and tests.
#
#   scripts/kafka.sh start    start it (idempotent), wait until it answers the Kafka protocol
#   scripts/kafka.sh stop     stop the broker this script started (by the pid in its pid file)
#   scripts/kafka.sh status   say whether it runs; exit 0 if it does, 3 if not
#   scripts/kafka.sh reset    stop it and delete its data (every topic; tests leave many)
#
# Listens on 127.0.0.1:$KAFKA_PORT (default 19092); the controller on KAFKA_PORT+1.
# KAFKA_STATE_DIR (default .cache/kafka) holds a broker's data, config, log and pid, so a
# second broker (outage tests stop and start their own) runs beside the first:
#   KAFKA_PORT=29092 KAFKA_STATE_DIR=/tmp/k2 KAFKA_LIBS=.cache/kafka/libs scripts/kafka.sh start
# KAFKA_LIBS (default $KAFKA_STATE_DIR/libs) lets it share the jars already resolved;
# KAFKA_HEAP (default 1g) its -Xmx.
#
# A secured listener beside the plain one (tests of SASL/SCRAM over TLS start their own broker
# so): KAFKA_SASL_SSL_PORT=<port> adds SASL_SSL://127.0.0.1:<port> with SCRAM-SHA-512 and
# SCRAM-SHA-256. The user KAFKA_SCRAM_USER (default journey) with KAFKA_SCRAM_PASSWORD (required
# then) is created when the storage is formatted; the broker's TLS key and self-signed
# certificate (for 127.0.0.1 and localhost, made with keytool) go to $KAFKA_STATE_DIR/tls/, the
# certificate as ca.pem for clients to trust.
# The broker jars come from Maven Central through scripts/kafka/pom.xml (first run only,
# needs java >= 17 and mvn); everything else lives under .cache/kafka/ (git-ignored):
# libs/, data/ (infinite retention, auto topic creation off), broker.log, broker.pid, and
# VERSION (the version the running broker logged, e.g. 4.1.1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1
PORT=${KAFKA_PORT:-19092}
STATE=$(realpath -m "${KAFKA_STATE_DIR:-$ROOT/.cache/kafka}")
LIBS=${KAFKA_LIBS:-$STATE/libs}
HEAP=${KAFKA_HEAP:-1g}
DATA=$STATE/data
CONF=$STATE/server.properties
PIDFILE=$STATE/broker.pid
LOG=$STATE/broker.log
OUT=$STATE/broker.out
VERSION_FILE=$STATE/VERSION
POM=$ROOT/scripts/kafka/pom.xml
LOG4J=$ROOT/scripts/kafka/log4j2.xml
START_TIMEOUT_S=${KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT_S=30

if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1024 || PORT > 65534)); then
    echo "kafka: KAFKA_PORT=$PORT is not a port number in 1024..65534" >&2
    exit 2
fi
CPORT=$((PORT + 1))
ADDRESS=$HOST:$PORT
SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-}
SCRAM_USER=${KAFKA_SCRAM_USER:-journey}
TLS=$STATE/tls
if [[ -n $SASL_SSL_PORT ]]; then
    if ! [[ $SASL_SSL_PORT =~ ^[0-9]+$ ]] || ((SASL_SSL_PORT < 1024 || SASL_SSL_PORT > 65535)); then
        echo "kafka: KAFKA_SASL_SSL_PORT=$SASL_SSL_PORT is not a port number in 1024..65535" >&2
        exit 2
    fi
    if [[ -z ${KAFKA_SCRAM_PASSWORD:-} ]]; then
        echo "kafka: KAFKA_SASL_SSL_PORT needs KAFKA_SCRAM_PASSWORD (the SCRAM user's password)" >&2
        exit 2
    fi
fi
WANTED_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")

say() { echo "kafka: $*"; }
die() {
    echo "kafka: $*" >&2
    exit 1
}

# ---- prerequisites -------------------------------------------------------------------------

check_java() {
    command -v java >/dev/null 2>&1 ||
        die "java not found. Kafka $WANTED_VERSION needs Java 17 or newer: apt-get install -y default-jdk-headless (or openjdk-17-jre-headless)"
    local line major
    line=$(java -version 2>&1 | sed -n 1p) # not head: SIGPIPE + pipefail would fail at random
    major=$(sed -n 's/.*version "\([0-9]*\).*/\1/p' <<<"$line")
    if [[ -z $major ]] || ((major < 17)); then
        die "found $line, but Kafka $WANTED_VERSION needs Java 17 or newer: apt-get install -y default-jdk-headless"
    fi
}

# The jars are resolved once per pom: libs/.pom holds the checksum of the pom they came from.
ensure_libs() {
    local sum
    sum=$(sha256sum "$POM" | cut -d' ' -f1)
    if [[ -f $LIBS/.pom && $(cat "$LIBS/.pom") == "$sum" ]]; then
        return
    fi
    command -v mvn >/dev/null 2>&1 ||
        die "mvn not found; it fetches the Kafka jars on the first run: apt-get install -y maven"
    say "resolving Apache Kafka $WANTED_VERSION jars with Maven (first run only, ~30 s) ..."
    local tmp=$STATE/libs.tmp
    rm -rf "$tmp"
    if ! mvn -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$STATE/mvn.log" 2>&1; then
        rm -rf "$tmp"
        tail -n 30 "$STATE/mvn.log" >&2
        die "mvn could not resolve the Kafka jars (above; full log $STATE/mvn.log)." \
            "Is Maven Central reachable?"
    fi
    echo "$sum" >"$tmp/.pom"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
}

# ---- the broker's process and protocol -----------------------------------------------------

# The pid in the pid file, if that process is alive and is our broker (pids get reused).
broker_pid() {
    [[ -f $PIDFILE ]] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *kafka.Kafka* ]] || return 1
    echo "$pid"
}

# True when a broker on ADDRESS answers a metadata request (an open port is not enough: the
# socket opens before the broker has registered with its controller).
answers() {
    local address=$1
    if command -v kcat >/dev/null 2>&1; then
        local metadata
        metadata=$(kcat -b "$address" -L -t __probe -m 3 2>/dev/null) || return 1
        grep -q "broker [0-9]* at $address" <<<"$metadata"
    elif [[ -x $ROOT/.venv/bin/python ]]; then
        "$ROOT/.venv/bin/python" - "$address" >/dev/null 2>&1 <<'PY'
import sys
from kafka import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=[sys.argv[1]], request_timeout_ms=3000,
                         bootstrap_timeout_ms=3000)
try:
    assert admin.describe_cluster()["brokers"]
finally:
    admin.close()
PY
    else
        die "cannot probe the broker: install kcat (apt-get install -y kcat) or run 'make install' first"
    fi
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# The version the running broker logged at start-up ("Kafka version: 4.1.1").
logged_version() {
    [[ -f $LOG ]] || return 0
    sed -n 's/.*Kafka version: \([^ ]*\).*/\1/p' "$LOG" | tail -n 1
}

show_log_tail() {
    echo "---- last lines of $LOG ----" >&2
    tail -n 40 "$LOG" >&2 2>/dev/null || echo "(no broker log)" >&2
    if [[ -s $OUT ]]; then
        echo "---- last lines of $OUT (JVM stdout/stderr) ----" >&2
        tail -n 20 "$OUT" >&2
    fi
}

# The broker's TLS identity: a key pair and a self-signed certificate for this host, made
# once per state directory; the certificate, as PEM, is what clients trust (ca.pem).
ensure_tls() {
    [[ -f $TLS/broker.p12 && -f $TLS/ca.pem ]] && return
    command -v keytool >/dev/null 2>&1 ||
        die "keytool not found (it comes with Java 17): apt-get install -y openjdk-17-jdk-headless"
    mkdir -p "$TLS"
    rm -f "$TLS/broker.p12" "$TLS/ca.pem"
    # The store password only guards a throw-away test key; it never leaves this directory.
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$TLS/store.pass"
    local pass
    pass=$(cat "$TLS/store.pass")
    keytool -genkeypair -noprompt -alias broker -keyalg RSA -keysize 2048 -validity 30 \
        -dname "CN=$HOST" -ext "SAN=IP:$HOST,DNS:localhost" -storetype PKCS12 \
        -keystore "$TLS/broker.p12" -storepass "$pass" -keypass "$pass" >>"$OUT" 2>&1 ||
        die "keytool could not make the broker's TLS key (see $OUT)"
    keytool -exportcert -rfc -alias broker -keystore "$TLS/broker.p12" -storepass "$pass" \
        -file "$TLS/ca.pem" >>"$OUT" 2>&1 || die "keytool could not export the certificate"
}

secure_config() {
    [[ -n $SASL_SSL_PORT ]] || return 0
    local pass
    pass=$(cat "$TLS/store.pass")
    cat <<EOF
# SASL/SCRAM over TLS (KAFKA_SASL_SSL_PORT): authentication only, no ACLs
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$pass
ssl.key.password=$pass
EOF
}

write_config() {
    local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT"
    local advertised="PLAINTEXT://$HOST:$PORT"
    local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if [[ -n $SASL_SSL_PORT ]]; then
        ensure_tls
        listeners+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
        advertised+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
        protocols+=",SASL_SSL:SASL_SSL"
    fi
    cat >"$CONF" <<EOF
# Written by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CPORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=6
# the log of record keeps everything
log.retention.ms=-1
log.retention.bytes=-1
# topics are created explicitly (KafkaLog.ensure_topics), never by a typo
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# a single test broker: let consumer groups form at once
group.initial.rebalance.delay.ms=0
EOF
    secure_config >>"$CONF"
}

java_cmd() {
    java "-Xmx$HEAP" -Xms256m -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$STATE" \
        -cp "$LIBS/*" "$@"
}

format_storage() {
    [[ -f $DATA/meta.properties ]] && return
    local cluster_id
    cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid 2>>"$OUT" | tail -n 1)
    [[ -n $cluster_id ]] || { show_log_tail; die "could not make a cluster id"; }
    say "formatting $DATA (cluster id $cluster_id)"
    local scram=()
    if [[ -n $SASL_SSL_PORT ]]; then
        # The SCRAM user exists from the first start (KRaft keeps credentials in metadata).
        scram=(--add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]"
            --add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]")
    fi
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF" "${scram[@]}" >>"$OUT" 2>&1 ||
        { show_log_tail; die "formatting the storage failed"; }
}

# ---- commands ------------------------------------------------------------------------------

report_running() {
    local pid=$1 version
    version=$(logged_version)
    [[ -n $version ]] && echo "$version" >"$VERSION_FILE"
    say "Apache Kafka ${version:-?} running at $ADDRESS (pid $pid, log $LOG)"
}

start() {
    mkdir -p "$STATE"
    local pid started=""
    if pid=$(broker_pid); then
        if answers "$ADDRESS"; then
            report_running "$pid"
            say "already running; nothing to do"
            return 0
        fi
        say "pid $pid is alive but $ADDRESS does not answer yet; waiting"
    else
        rm -f "$PIDFILE"
        local p
        for p in "$PORT" "$CPORT" $SASL_SSL_PORT; do
            if port_open "$p"; then
                die "$HOST:$p is already in use by a process this script did not start" \
                    "(no live pid in $PIDFILE). Stop it, or pick other ports: KAFKA_PORT=<port> make kafka" \
                    "(uses <port> and <port>+1)."
            fi
        done
        check_java
        ensure_libs
        write_config
        format_storage
        : >"$OUT"
        # Rotate rather than truncate: the previous run's log explains the previous failure.
        [[ -f $LOG ]] && mv -f "$LOG" "$LOG.1"
        started=$SECONDS
        # setsid + nohup: the broker outlives the make (or CI step) that started it.
        (cd "$STATE" && exec nohup setsid java "-Xmx$HEAP" -Xms256m -XX:+UseG1GC -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$STATE" \
            -cp "$LIBS/*" kafka.Kafka "$CONF" </dev/null >>"$OUT" 2>&1) &
        pid=$!
        echo "$pid" >"$PIDFILE"
        say "starting Apache Kafka $WANTED_VERSION on $ADDRESS (controller $HOST:$CPORT), pid $pid"
    fi

    local deadline=$((SECONDS + START_TIMEOUT_S))
    until answers "$ADDRESS"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PIDFILE"
            show_log_tail
            die "the broker exited during start-up (see above)"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail
            die "the broker did not answer on $ADDRESS within ${START_TIMEOUT_S}s; it still runs as" \
                "pid $pid ('make kafka-stop' stops it)"
        fi
        sleep 0.5
    done
    local version
    version=$(logged_version)
    if [[ -n $version && $version != "$WANTED_VERSION" ]]; then
        die "the broker logged version $version, expected $WANTED_VERSION (stale .cache/kafka/libs?)"
    fi
    report_running "$pid"
    if [[ -n $started ]]; then
        say "ready in $((SECONDS - started)) s"
    fi
}

stop() {
    local pid
    if ! pid=$(broker_pid); then
        rm -f "$PIDFILE"
        say "not running (no live broker pid in $PIDFILE); nothing to stop"
        return 0
    fi
    say "stopping pid $pid"
    kill -TERM "$pid"
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            say "pid $pid still alive after ${STOP_TIMEOUT_S}s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$PIDFILE"
    say "stopped"
}

status() {
    local pid
    if pid=$(broker_pid); then
        if answers "$ADDRESS"; then
            report_running "$pid"
            return 0
        fi
        say "pid $pid is alive but $ADDRESS does not answer (starting, or wrong KAFKA_PORT?)"
        return 3
    fi
    if port_open "$PORT"; then
        say "not started by this script, but something listens on $ADDRESS"
    else
        say "not running"
    fi
    return 3
}

reset() {
    stop
    rm -rf "$DATA" "$VERSION_FILE"
    say "deleted $DATA; the next start formats it anew"
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
reset) reset ;;
*)
    echo "usage: $0 start|stop|status|reset   (env KAFKA_PORT, default 19092)" >&2
    exit 2
    ;;
esac
