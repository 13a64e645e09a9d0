#!/bin/bash
# The Spark image's entrypoint: the project's own (the pyspark wheel does not ship Spark's docker
# entrypoint.sh, and this one is not a copy of it). It honours how Spark on Kubernetes starts pods
# (spark-submit --master k8s://..., and spark-operator through it):
#   driver ARGS...   spark-submit --deploy-mode client ARGS..., bound to $SPARK_DRIVER_BIND_ADDRESS
#   executor         the JVM of KubernetesExecutorBackend, from $SPARK_EXECUTOR_* and $SPARK_DRIVER_URL,
#                    with every SPARK_JAVA_OPT_<n> as a JVM option, in order of n (they carry the
#                    --add-opens module options Spark needs on Java 17: without them executors fail
#                    in java.nio)
#   anything else    exec'd as is (spark-submit ..., python ..., bash)
# Classpath, in this order: $SPARK_CONF_DIR (default $SPARK_HOME/conf, when it exists),
# $HADOOP_CONF_DIR, $SPARK_CLASSPATH, $SPARK_HOME/jars/*, $SPARK_EXTRA_CLASSPATH (and
# $SPARK_DIST_CLASSPATH for executors).
set -euo pipefail

case "${1:-}" in
  driver | executor) ;;
  *) exec "$@" ;;
esac
: "${SPARK_HOME:?SPARK_HOME is not set}"
role="$1"
shift

classpath="${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$SPARK_HOME/jars/*"
if [ -n "${SPARK_EXTRA_CLASSPATH:-}" ]; then classpath="$classpath:$SPARK_EXTRA_CLASSPATH"; fi
if [ -n "${HADOOP_CONF_DIR:-}" ]; then classpath="$HADOOP_CONF_DIR:$classpath"; fi
conf_dir="${SPARK_CONF_DIR:-$SPARK_HOME/conf}"
if [ -d "$conf_dir" ]; then classpath="$conf_dir:$classpath"; fi
export SPARK_CLASSPATH="$classpath"

# SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ... each one whole JVM option (they may contain spaces)
java_opts=()
for n in $(compgen -e | sed -n 's/^SPARK_JAVA_OPT_\([0-9][0-9]*\)$/\1/p' | sort -n); do
  var="SPARK_JAVA_OPT_$n"
  java_opts+=("${!var}")
done

if [ -n "${PYSPARK_PYTHON:-}" ]; then export PYSPARK_PYTHON; fi
if [ -n "${PYSPARK_DRIVER_PYTHON:-}" ]; then export PYSPARK_DRIVER_PYTHON; fi

case "$role" in
  driver)
    # the driver's JVM options come from its properties file (spark.driver.extraJavaOptions);
    # SPARK_JAVA_OPT_* set on a driver pod go to spark-submit's JVM as well
    if [ "${#java_opts[@]}" -gt 0 ]; then
      export SPARK_SUBMIT_OPTS="${SPARK_SUBMIT_OPTS:+$SPARK_SUBMIT_OPTS }${java_opts[*]}"
    fi
    cmd=("$SPARK_HOME/bin/spark-submit"
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?}"
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=$SPARK_DRIVER_BIND_ADDRESS"
      --deploy-mode client
      "$@")
    ;;
  executor)
    java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
    cmd=("$java" "${java_opts[@]}"
      -Xms"${SPARK_EXECUTOR_MEMORY:?}" -Xmx"$SPARK_EXECUTOR_MEMORY"
      -cp "$classpath${SPARK_DIST_CLASSPATH:+:$SPARK_DIST_CLASSPATH}"
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
      --driver-url "${SPARK_DRIVER_URL:?}"
      --executor-id "${SPARK_EXECUTOR_ID:?}"
      --cores "${SPARK_EXECUTOR_CORES:?}"
      --app-id "${SPARK_APPLICATION_ID:?}"
      --hostname "${SPARK_EXECUTOR_POD_IP:?}"
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}"
      --podName "${SPARK_EXECUTOR_POD_NAME:-$HOSTNAME}"
      "$@")
    ;;
esac

# tini (when the image has it) reaps the Python workers' children and forwards signals
if command -v tini >/dev/null 2>&1; then exec tini -s -- "${cmd[@]}"; fi
exec "${cmd[@]}"
