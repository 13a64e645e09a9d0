#!/usr/bin/env bash
# The test command: installs what is missing (scripts/bootstrap.sh, cached outside the repo), checks
# the code's habits (scripts/lint.sh: import layering, ruff lint + format, mypy), then runs every test
# against the real services the suite starts itself (Kafka, S3 server, Spark, kube-apiserver, replay
# server, a real node). Extra arguments go to pytest, e.g. `scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh
# The whole suite (no arguments, as CI runs it) also needs the images and skaffold. They are built
# here, not on first use inside a test: cold, they take 20-60 min on 2 cores, which no test's
# timeout should be charged with (an `up --node --platform` cut by one left a half-started node).
# Each script keeps stamps: about 15 s when nothing changed. Building needs root (a private
# dockerd), as the `node` and `images` tests do.
if [ "$#" -eq 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    scripts/build-images.sh
    scripts/build-go-tools.sh skaffold
  else
    echo "test: not root: images not built; the node and images tests need root and will fail" >&2
  fi
fi
scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
