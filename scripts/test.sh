#!/usr/bin/env bash
# The test command: installs what is missing (scripts/bootstrap.sh, cached outside the repo), checks
# the code's habits (scripts/lint.sh: import layering, ruff lint + format, mypy), then runs every test
# against the real services the suite starts itself (Kafka, S3 server, Spark, kube-apiserver, replay
# server). Extra arguments go to pytest, e.g. `scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh
scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
