# syntax=docker/dockerfile:1
# The ingestion service: `python -m cryptopipe.ingest`, configured by CRYPTOPIPE_INGEST_* env (the
# ingestion Deployment the operator renders sets `command` to the same thing). The lake monitor runs
# from the same image as `python -m cryptopipe.monitor`. Only the product package (services/cryptopipe)
# and the `ingestion` extra are installed: no dev harness, no test library. INGEST_EXTRA=ingestion-fast
# adds the optional librdkafka producer (confluent-kafka; CRYPTOPIPE_INGEST_PRODUCER=confluent); the
# default image stays kafka-python only. With the offline wheelhouse of scripts/build-images.sh only
# the default extra's wheels are there: build the fast one from PyPI (no WHEELHOUSE).
# scripts/build-images.sh builds it (`make images`); with a registry, from the repo root:
#   docker build -f docker/ingestion.Dockerfile -t cryptopipe-ingestion .
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# a folder of wheels in the build context to install from, offline (--no-index); the default has none,
# so pip uses PyPI. scripts/build-images.sh passes a host-built one with a local Debian base:
#   --build-arg PYTHON_IMAGE=cryptopipe-debian:bookworm-python3 --build-arg WHEELHOUSE=wheelhouse
ARG WHEELHOUSE=docker/no-wheelhouse
ARG INGEST_EXTRA=ingestion

FROM ${PYTHON_IMAGE} AS build
ARG WHEELHOUSE
ARG INGEST_EXTRA
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY ${WHEELHOUSE}/ /wheels/
COPY pyproject.toml README.md ./
COPY services/cryptopipe/ services/cryptopipe/
# one distribution serves every image, so its console script `cryptopipe` (the dev CLI, whose
# package this image does not hold) is removed rather than left dangling
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install $(ls /wheels/*.whl >/dev/null 2>&1 && echo --no-index --find-links=/wheels) ".[${INGEST_EXTRA}]" \
 && rm /opt/venv/bin/cryptopipe

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CRYPTOPIPE_INGEST_HTTP_HOST=0.0.0.0 \
    CRYPTOPIPE_INGEST_HTTP_PORT=8080
COPY --from=build /opt/venv /opt/venv
# uid 10001: operator/cryptopipe_operator/render_ingestion.py RUN_AS_USER
RUN groupadd --system --gid 10001 cryptopipe \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp cryptopipe
USER 10001:10001
WORKDIR /tmp
# /metrics, /healthz, /readyz
EXPOSE 8080
ENTRYPOINT ["python", "-m", "cryptopipe.ingest"]
