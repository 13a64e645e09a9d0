# syntax=docker/dockerfile:1
# The candle job for spark-operator: Spark 4.1.3 from the pyspark wheel (SPARK_HOME=/opt/spark, a
# link to the installed pyspark package, which holds bin/spark-submit and Spark's jars), the Kafka
# and s3a connector jars from scripts/maven/spark-connectors.pom.xml in $SPARK_HOME/jars, and the
# job at /opt/cryptopipe/spark-apps/candles_job/main.py (the SparkApplication's
# mainApplicationFile, local:///opt/cryptopipe/spark-apps/candles_job/main.py).
#
# Two images come from this file: `--target spark` is Spark alone (cryptopipe-spark: the base of the
# spark-operator image, whose controller runs spark-submit), the last stage adds the job.
# scripts/build-images.sh builds both (`make images`): it stages the build context with the
# connector jars in spark-jars/ (from $SPARK_JARS, scripts/bootstrap.sh) and, on this machine, a
# host-built wheelhouse and a local Debian base with Java 17:
#   --build-arg PYTHON_IMAGE=cryptopipe-debian:bookworm-java17 --build-arg WHEELHOUSE=wheelhouse
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# a folder of wheels in the build context to install from, offline (--no-index); the default has
# none, so pip uses PyPI
ARG WHEELHOUSE=docker/no-wheelhouse
ARG SPARK_VERSION=4.1.3

# --- Spark: a venv holding pyspark, the connector jars added to its jars/ ---------------------------
FROM ${PYTHON_IMAGE} AS spark-venv
ARG WHEELHOUSE
ARG SPARK_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY ${WHEELHOUSE}/ /wheels/
COPY spark-jars/ /jars/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install $(ls /wheels/*.whl >/dev/null 2>&1 && echo --no-index --find-links=/wheels) "pyspark==${SPARK_VERSION}" \
 && cp /jars/*.jar "$(/opt/venv/bin/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars/"

FROM ${PYTHON_IMAGE} AS spark
# Java 17 (the local java17 base has it already; the public Python image gets Debian's), tini, ps
RUN if ! command -v java >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && mkdir -p /usr/lib/jvm \
 && ln -sfn "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/java-17
COPY --from=spark-venv /opt/venv /opt/venv
COPY docker/spark/entrypoint.sh /opt/entrypoint.sh
# SPARK_HOME: the pyspark package (bin/, jars/); /opt/spark is a link, whatever the Python version
RUN ln -s "$(/opt/venv/bin/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')" /opt/spark \
 && groupadd --system --gid 185 spark \
 && useradd --system --uid 185 --gid 185 --home-dir /opt/spark-work spark \
 && mkdir -p /opt/spark-work && chown spark:spark /opt/spark-work \
 && chmod 0755 /opt/entrypoint.sh
ENV JAVA_HOME=/usr/lib/jvm/java-17 \
    SPARK_HOME=/opt/spark \
    PATH=/opt/venv/bin:/opt/spark/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/spark-work
# uid 185: the official Spark images' user; Spark writes its work and local dirs under the work dir
USER 185:185
# `driver ...`/`executor` as Spark on Kubernetes passes them; anything else is exec'd as is
ENTRYPOINT ["/opt/entrypoint.sh"]
CMD ["spark-submit", "--version"]

# --- the job: the package's own dependencies next to Spark, not in its venv ---------------------------
FROM spark-venv AS job-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
# the job and the part of the product core it imports (contracts, lake layout; import-linter keeps
# it to these), without the "spark-job" extra: pyspark is Spark's own, above. No dev harness, no
# test library. One distribution serves every image, so its console script `cryptopipe` (the dev
# CLI, whose package this image does not hold) is left out with the other scripts.
COPY services/cryptopipe/__init__.py services/cryptopipe/contracts.py services/cryptopipe/logs.py \
     services/cryptopipe/kafka_security.py services/cryptopipe/
COPY services/cryptopipe/lake/ services/cryptopipe/lake/
COPY spark-apps/ spark-apps/
RUN /opt/venv/bin/pip install $(ls /wheels/*.whl >/dev/null 2>&1 && echo --no-index --find-links=/wheels) --target /opt/cryptopipe/lib . \
 && rm -rf /opt/cryptopipe/lib/bin

FROM spark
COPY --from=job-build /opt/cryptopipe/lib /opt/cryptopipe/lib
COPY spark-apps/ /opt/cryptopipe/spark-apps/
USER 0:0
# the job's libraries on the venv's path (driver, executors' Python workers, pip list)
RUN echo /opt/cryptopipe/lib > "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/cryptopipe.pth"
USER 185:185
# 9108: the job's metrics (render_spark.JOB_METRICS_PORT); 4040: Spark UI
EXPOSE 9108 4040
# without spark-operator (docker run): the job's flags, as in the SparkApplication
CMD ["spark-submit", "--master", "local[2]", "/opt/cryptopipe/spark-apps/candles_job/main.py", "--help"]
