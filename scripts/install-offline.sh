#!/usr/bin/env bash
# Install chenxing-edge on a box without internet from a wheelhouse built by
# scripts/build-wheelhouse.sh (same Python minor version and platform).
#   usage: install-offline.sh WHEELHOUSE [VENV] [PYTHON]
#   default VENV: /opt/chenxing/venv
set -euo pipefail
WHEELS="$(cd "${1:?usage: install-offline.sh WHEELHOUSE [VENV] [PYTHON]}" && pwd)"
VENV="${2:-/opt/chenxing/venv}"
PY="${3:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "Python 3.11 or newer is required" >&2; exit 1; }
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" --upgrade pip
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" chenxing-edge
"$VENV/bin/chenxing-gateway" --version
