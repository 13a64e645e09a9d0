#!/usr/bin/env bash
# The run command: installs what is missing (scripts/bootstrap.sh), then starts the local stack:
# `scripts/up.sh` (live Coinbase), `scripts/up.sh --synthetic`, `scripts/up.sh --replay FILE`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh --data-plane-only  # the Kubernetes binaries are for the operator's tests
exec .venv/bin/cryptopipe up "$@"
