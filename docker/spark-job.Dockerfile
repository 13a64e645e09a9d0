# syntax=docker/dockerfile:1
# The candle job for spark-operator: Spark 4.1.3 from the official apache/spark image, the Kafka
# and s3a connector jars from scripts/maven/spark-connectors.pom.xml in $SPARK_HOME/jars, and the
# job at /opt/cryptopipe/spark-apps/candles_job/main.py (the SparkApplication's
# mainApplicationFile, local:///opt/cryptopipe/spark-apps/candles_job/main.py).
# Build from the repo root: docker build -f docker/spark-job.Dockerfile -t cryptopipe-spark-job .
#
# Why not `FROM apache/spark:4.1.3-python3` directly: its Ubuntu Python is older than the package's
# requires-python (>= 3.11). So Spark (and the image's driver/executor entrypoint.sh) is copied from
# it onto a Python 3.12 image with a Java 17 runtime.
ARG SPARK_IMAGE=apache/spark:4.1.3-python3
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG MAVEN_IMAGE=maven:3.9-eclipse-temurin-17

FROM ${SPARK_IMAGE} AS spark

# the connector jars, exactly as scripts/bootstrap.sh fetches them for the local stack
FROM ${MAVEN_IMAGE} AS jars
COPY scripts/maven/spark-connectors.pom.xml /build/pom.xml
RUN mvn -B -q -f /build/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=/jars

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
# the job and the part of the product core it imports (contracts, lake layout; import-linter keeps
# it to these), without the "spark-job" extra: pyspark comes from $SPARK_HOME/python, one copy only.
# No dev harness, no test library.
COPY services/cryptopipe/__init__.py services/cryptopipe/contracts.py services/cryptopipe/logs.py services/cryptopipe/
COPY services/cryptopipe/lake/ services/cryptopipe/lake/
COPY spark-apps/ spark-apps/
# one distribution serves every image, so its console script `cryptopipe` (the dev CLI, whose
# package this image does not hold) is removed rather than left dangling
RUN python -m venv /opt/venv && /opt/venv/bin/pip install . \
 && rm /opt/venv/bin/cryptopipe

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini procps \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/java-17
ENV JAVA_HOME=/usr/lib/jvm/java-17 \
    SPARK_HOME=/opt/spark \
    PATH=/opt/venv/bin:/opt/spark/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=spark /opt/spark /opt/spark
COPY --from=spark /opt/entrypoint.sh /opt/decom.sh /opt/
COPY --from=jars /jars/*.jar /opt/spark/jars/
COPY --from=build /opt/venv /opt/venv
COPY spark-apps/ /opt/cryptopipe/spark-apps/
# pyspark for the venv's python (spark-submit also puts it on PYTHONPATH for the job)
RUN echo /opt/spark/python > "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/spark.pth" \
 && ls /opt/spark/python/lib/py4j-*-src.zip > "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/py4j.pth" \
 && groupadd --system --gid 185 spark \
 && useradd --system --uid 185 --gid 185 --home-dir /opt/spark/work-dir spark \
 && mkdir -p /opt/spark/work-dir && chown spark:spark /opt/spark/work-dir \
 && chmod a+x /opt/entrypoint.sh /opt/decom.sh
WORKDIR /opt/spark/work-dir
# uid 185: the official Spark images' user; Spark writes its work and local dirs under work-dir
USER 185:185
# 9108: the job's metrics (render_spark.JOB_METRICS_PORT); 4040: Spark UI
EXPOSE 9108 4040
# the official image's entrypoint: spark-operator starts driver and executor pods with
# `driver ...`/`executor ...` args; anything else is exec'd as is
ENTRYPOINT ["/opt/entrypoint.sh"]
# without spark-operator (docker run): the job in local mode, flags as in the SparkApplication
CMD ["spark-submit", "--master", "local[2]", "/opt/cryptopipe/spark-apps/candles_job/main.py", "--help"]
