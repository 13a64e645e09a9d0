# Where scripts/bootstrap.sh puts the local stack's jars and binaries. Source it:
#   . scripts/env.sh
# Python code resolves the same defaults itself (cryptopipe_dev.stack.paths), so sourcing is only
# needed for shell use or to point everything at another cache.

export CRYPTOPIPE_CACHE="${CRYPTOPIPE_CACHE:-$HOME/.cache/cryptopipe}"
export KAFKA_LIBS="${KAFKA_LIBS:-$CRYPTOPIPE_CACHE/kafka-libs}"
export SPARK_JARS="${SPARK_JARS:-$CRYPTOPIPE_CACHE/spark-jars}"
export VERSITYGW_BIN="${VERSITYGW_BIN:-$CRYPTOPIPE_CACHE/versitygw/bin/versitygw}"

# PySpark and the broker find java on PATH; JAVA_HOME is only set when it is missing, from the
# java that PATH resolves, so that tools that insist on it (spark-submit's scripts) agree with it.
if [ -z "${JAVA_HOME:-}" ] && command -v java >/dev/null 2>&1; then
  _cp_java="$(readlink -f "$(command -v java)")"
  export JAVA_HOME="${_cp_java%/bin/java}"
  unset _cp_java
fi
