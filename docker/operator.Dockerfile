# syntax=docker/dockerfile:1
# The CryptoPipeline operator: `python -m cryptopipe_operator` (kopf), the command the tests run.
# Build from the repo root: docker build -f docker/operator.Dockerfile -t cryptopipe-operator .
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
# the operator and the product core it renders from (the wiring contract and lake layout in
# services/cryptopipe); the "operator" extra holds kopf. No dev harness, no test library.
COPY services/cryptopipe/ services/cryptopipe/
COPY operator/ operator/
RUN python -m venv /opt/venv && /opt/venv/bin/pip install ".[operator]"

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
