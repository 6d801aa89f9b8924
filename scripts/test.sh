#!/usr/bin/env bash
# The whole test suite: lint, type checks, the import layers, then every test (unit, integration with a real Mosquitto,
# HIL). Exit non-zero on any failure, including "no tests collected" (pytest exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh --test || exit 1
.venv/bin/ruff check . || { echo "ruff found problems" >&2; exit 1; }
.venv/bin/mypy || { echo "mypy found type errors" >&2; exit 1; }
.venv/bin/lint-imports --no-cache >/dev/null || {
  .venv/bin/lint-imports --no-cache; echo "an import breaks the layers" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $rc
