#!/usr/bin/env bash
# The whole test suite: lint, type checks, the import layers, then every test (unit, integration with a real Mosquitto,
# HIL). Exit non-zero on any failure, including "no tests collected" (pytest exit 5).
#
# Tests run on two pytest-xdist workers (they mostly wait on sockets, brokers and child processes), then the tests
# marked `serial` run alone: their verdicts bound wall-clock latency or gaps (HIL scenarios, chaos runs), which a
# neighbour's load would blur. With arguments (a path, -k ...), pytest runs once with them, on one worker.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh --test || exit 1
.venv/bin/ruff check . || { echo "ruff found problems" >&2; exit 1; }
.venv/bin/mypy || { echo "mypy found type errors" >&2; exit 1; }
.venv/bin/lint-imports --no-cache >/dev/null || {
  .venv/bin/lint-imports --no-cache; echo "an import breaks the layers" >&2; exit 1; }

failed=0
run() {  # pytest with the given arguments; exit 5 (nothing collected) is a failure too
  .venv/bin/python -m pytest "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then
    echo "pytest collected no tests ($*): that is a failure" >&2
  fi
  [ $rc -eq 0 ] || failed=1
}
if [ $# -gt 0 ]; then
  run "$@"
else
  workers=${TEST_WORKERS:-2}
  echo "== tests on $workers workers (all but the serial ones)"
  run -n "$workers" -m "not serial"
  echo "== serial tests, alone"
  run -m serial
fi
exit $failed
