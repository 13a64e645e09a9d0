# syntax=docker/dockerfile:1
# DEV TOOLING, never part of the product: the Coinbase-protocol replay server of the developer harness
# (`python -m cryptopipe_dev.replay serve RECORDING...`), which the dev cluster runs as a pod so that a
# CryptoPipeline's wsUrl/restUrl can point at recorded or synthetic trades. It copies the part of
# the product core it imports and the harness's __init__ and replay/ (nothing else of cryptopipe_dev),
# and installs the `replay` extra (websockets, zstandard, websocket-client): no test library.
# scripts/build-images.sh builds it (`make images`) as cryptopipe-dev-replay, on this machine with
#   --build-arg PYTHON_IMAGE=cryptopipe-debian:bookworm-python3 --build-arg WHEELHOUSE=wheelhouse
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# a folder of wheels in the build context to install from, offline (--no-index); the default has
# none, so pip uses PyPI
ARG WHEELHOUSE=docker/no-wheelhouse

FROM ${PYTHON_IMAGE} AS build
ARG WHEELHOUSE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY ${WHEELHOUSE}/ /wheels/
COPY pyproject.toml README.md ./
# the product core the replay server imports: the contracts, the logs set-up and the Coinbase frame
# formats (tests/unit/test_packaging.py checks that every module they import is copied)
COPY services/cryptopipe/__init__.py services/cryptopipe/contracts.py services/cryptopipe/logs.py services/cryptopipe/
COPY services/cryptopipe/coinbase/ services/cryptopipe/coinbase/
COPY services/cryptopipe_dev/__init__.py services/cryptopipe_dev/
COPY services/cryptopipe_dev/replay/ services/cryptopipe_dev/replay/
# the distribution's console script `cryptopipe` (the dev CLI, not copied here) is removed
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install $(ls /wheels/*.whl >/dev/null 2>&1 && echo --no-index --find-links=/wheels) ".[replay]" \
 && rm /opt/venv/bin/cryptopipe

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
RUN groupadd --system --gid 10001 cryptopipe \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp cryptopipe
USER 10001:10001
WORKDIR /tmp
# e.g. serve --host 0.0.0.0 --port 8765 --control-port 8766 /recordings/*.jsonl.zst
ENTRYPOINT ["python", "-m", "cryptopipe_dev.replay"]
CMD ["--help"]
