#!/usr/bin/env bash
# Build every wheel chenxing-edge needs, pinned by constraints.txt, for THIS machine's Python
# version and platform, into wheelhouse/ (copy it to an offline edge box with
# scripts/install-offline.sh; see docs/install.md). Run on a machine with internet access and
# the same CPU architecture and Python minor version as the edge boxes.
#   usage: scripts/build-wheelhouse.sh [PYTHON] [WHEELHOUSE]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"
OUT="${2:-wheelhouse}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "Python 3.11 or newer is required" >&2; exit 1; }
mkdir -p "$OUT"
"$PY" -m pip wheel --quiet -c constraints.txt . -w "$OUT"
# pip and its build helpers, so the offline box can upgrade pip from the wheelhouse too
"$PY" -m pip download --quiet --only-binary=:all: -d "$OUT" pip setuptools wheel
# the install script and the systemd unit travel with the wheels (docs/install.md)
cp scripts/install-offline.sh constraints.txt deploy/chenxing-gateway.service "$OUT"/
echo "wheelhouse: $OUT ($(ls "$OUT"/*.whl | wc -l) wheels) for $("$PY" -c 'import sys,sysconfig; print(f"Python {sys.version_info[0]}.{sys.version_info[1]} {sysconfig.get_platform()}")')"
