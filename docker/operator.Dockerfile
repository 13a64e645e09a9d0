# syntax=docker/dockerfile:1
# The CryptoPipeline operator: `python -m cryptopipe_operator` (kopf), the command the tests run.
# scripts/build-images.sh builds it (`make images`); with a registry, from the repo root:
#   docker build -f docker/operator.Dockerfile -t cryptopipe-operator .
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# a folder of wheels in the build context to install from, offline (--no-index); the default has none,
# so pip uses PyPI. scripts/build-images.sh passes a host-built one with a local Debian base:
#   --build-arg PYTHON_IMAGE=cryptopipe-debian:bookworm-python3 --build-arg WHEELHOUSE=wheelhouse
ARG WHEELHOUSE=docker/no-wheelhouse

FROM ${PYTHON_IMAGE} AS build
ARG WHEELHOUSE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY ${WHEELHOUSE}/ /wheels/
COPY pyproject.toml README.md ./
# the operator and the part of the product core it renders from: the wiring contract, the lake
# layout and the Spark conf (import-linter keeps it to these; tests/unit/test_packaging.py checks
# that every module they import is copied). The "operator" extra holds kopf. No dev harness, no tests.
COPY services/cryptopipe/__init__.py services/cryptopipe/contracts.py services/cryptopipe/pipeline.py \
     services/cryptopipe/logs.py services/cryptopipe/spark_conf.py services/cryptopipe/kafka_security.py \
     services/cryptopipe/
COPY services/cryptopipe/lake/ services/cryptopipe/lake/
COPY operator/ operator/
# one distribution serves every image, so its console script `cryptopipe` (the dev CLI, whose
# package this image does not hold) is removed rather than left dangling
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install $(ls /wheels/*.whl >/dev/null 2>&1 && echo --no-index --find-links=/wheels) ".[operator]" \
 && rm /opt/venv/bin/cryptopipe

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
RUN groupadd --system --gid 10001 cryptopipe \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp cryptopipe
# numeric: the chart's runAsNonRoot can verify it
USER 10001:10001
WORKDIR /tmp
# 8080: kopf's liveness endpoint (CRYPTOPIPE_OPERATOR_HEALTH_PORT); 9090: /metrics
EXPOSE 8080 9090
# kopf.run(standalone=True, ...), configured by CRYPTOPIPE_OPERATOR_* env (no arguments)
ENTRYPOINT ["python", "-m", "cryptopipe_operator"]
