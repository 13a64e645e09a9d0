#!/usr/bin/env bash
# The code's habits, as the test command checks them (each tool reads its settings from pyproject.toml):
#   lint-imports   the layering: what ships imports no harness, operator and job only the contracts
#   ruff check     lint;  ruff format --check: formatting
#   mypy           types (strict for the operator and the core contracts)
# All four run even when one fails, so one pass shows every problem; the exit is non-zero if any did.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SCRIPT_NAME=lint
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
BIN="$REPO/.venv/bin"
[ -x "$BIN/ruff" ] || die "$BIN/ruff is missing: run scripts/bootstrap.sh"
# the packages as the venv's editable install maps them, for lint-imports and mypy
export PYTHONPATH="$REPO/services:$REPO/operator:$REPO/spark-apps${PYTHONPATH:+:$PYTHONPATH}"
failed=()
check() {
  local name="$1"; shift
  if "$@"; then say "$name: ok"; else failed+=("$name"); fi
}
check lint-imports "$BIN/lint-imports" --no-cache
check "ruff check" "$BIN/ruff" check --quiet .
check "ruff format" "$BIN/ruff" format --check --quiet .
check mypy "$BIN/mypy"
[ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]} (make fmt fixes formatting; see the output above)"
