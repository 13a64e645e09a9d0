#!/bin/bash
# The Kafka image's entrypoint: one Apache Kafka node in KRaft mode (broker and controller in one
# JVM), run from the Maven Central jars in /opt/kafka/libs.
#   start (default)      write $KAFKA_HOME/config/server.properties, format $KAFKA_DATA once (when it has
#                        no meta.properties), then exec the broker
#   storage ARGS...      kafka.tools.StorageTool (what kafka-storage.sh runs): info, format, random-uuid...
#   version              the Kafka version
#   anything else        exec'd as is
# Settings (env):
#   KAFKA_DATA           log dir (default /var/lib/kafka/data; mount a volume there)
#   KAFKA_CLUSTER_ID     the cluster id `format` writes (default: a random one, on the first start only)
#   KAFKA_ADVERTISED_HOST  the host clients are told to use (default: the pod's FQDN, hostname -f)
#   KAFKA_HEAP_OPTS      default -Xms512m -Xmx512m
#   KAFKA_CFG_<NAME>     any server property, NAME upper-cased with `.` as `_`
#                        (KAFKA_CFG_NUM_PARTITIONS=3 -> num.partitions=3); wins over the defaults
set -euo pipefail

KAFKA_HOME="${KAFKA_HOME:-/opt/kafka}"
CLASSPATH="$KAFKA_HOME/libs/*"
KAFKA_DATA="${KAFKA_DATA:-/var/lib/kafka/data}"
CONFIG_DIR="${KAFKA_CONFIG_DIR:-/tmp/kafka-config}"

write_config() {
  local host; host="${KAFKA_ADVERTISED_HOST:-$(hostname -f 2>/dev/null || hostname)}"
  mkdir -p "$CONFIG_DIR"
  {
    # the local stack's broker settings (services/cryptopipe_dev/stack/kafka.py)
    cat <<PROPS
process.roles=broker,controller
node.id=1
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
advertised.listeners=PLAINTEXT://$host:9092
controller.quorum.voters=1@127.0.0.1:9093
log.dirs=$KAFKA_DATA
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
background.threads=2
log.cleaner.threads=1
num.recovery.threads.per.data.dir=1
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
PROPS
    # KAFKA_CFG_* last: a later line wins in a properties file
    local var name
    for var in $(compgen -e | grep '^KAFKA_CFG_' || true); do
      name="${var#KAFKA_CFG_}"; name="${name,,}"; name="${name//_/.}"
      printf '%s=%s\n' "$name" "${!var}"
    done
  } >"$CONFIG_DIR/server.properties"
}

# log4j2 to stdout, for every command (without it log4j prints an error before the tool's output)
write_log4j() {
  mkdir -p "$CONFIG_DIR"
  cat >"$CONFIG_DIR/log4j2.properties" <<'LOG'
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
LOG
}

java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
case "${1:-start}" in version | storage | start) write_log4j ;; esac
case "${1:-start}" in
  version)
    exec "$java_bin" -Dlog4j2.configurationFile="$CONFIG_DIR/log4j2.properties" -cp "$CLASSPATH" kafka.Kafka --version ;;
  storage)
    shift
    exec "$java_bin" -Dlog4j2.configurationFile="$CONFIG_DIR/log4j2.properties" -cp "$CLASSPATH" kafka.tools.StorageTool "$@" ;;
  start)
    write_config
    mkdir -p "$KAFKA_DATA"
    if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
      cluster_id="${KAFKA_CLUSTER_ID:-$("$java_bin" -Dlog4j2.configurationFile="$CONFIG_DIR/log4j2.properties" \
        -cp "$CLASSPATH" kafka.tools.StorageTool random-uuid)}"
      echo "kafka.sh: formatting $KAFKA_DATA (cluster id $cluster_id)"
      "$java_bin" -Dlog4j2.configurationFile="$CONFIG_DIR/log4j2.properties" -cp "$CLASSPATH" \
        kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$CONFIG_DIR/server.properties"
    fi
    # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS / KAFKA_OPTS hold several options
    exec "$java_bin" ${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m} ${KAFKA_OPTS:-} \
      -Dlog4j2.configurationFile="$CONFIG_DIR/log4j2.properties" -cp "$CLASSPATH" \
      kafka.Kafka "$CONFIG_DIR/server.properties" ;;
  *)
    exec "$@" ;;
esac
