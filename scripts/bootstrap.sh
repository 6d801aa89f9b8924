#!/usr/bin/env bash
# Set up everything the demo and the tests need, idempotently:
#  - Debian packages mosquitto and socat (apt-get, when missing and running as root); with
#    --test also what only the tests use: victoria-metrics (an InfluxDB v2 write endpoint for
#    the ingest tests) and chromium + chromium-driver (the status page's browser test)
#  - a virtual environment in .venv with the project installed (editable) and its test extra,
#    pinned by constraints.txt so every machine gets the same versions
#  - with --test, the npm packages of tests/interop/node (exact versions from its
#    package-lock.json): independent implementations the tests compare the gateway's bytes with.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# --- system packages ------------------------------------------------------------------
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v socat >/dev/null 2>&1 || missing+=(socat)
if [ "${1:-}" = "--test" ]; then
  command -v victoria-metrics >/dev/null 2>&1 || [ -x /usr/bin/victoria-metrics ] ||
    missing+=(victoria-metrics)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  # Node.js runs independent peers (Eclipse Tahu's Sparkplug codec) as second opinions
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null >/dev/null
    # the Debian package may try to start a system-wide broker; we never use it
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
  else
    log "WARNING: ${missing[*]} missing and not root: install them with apt-get;"
    log "         the demo falls back to an embedded broker, broker tests need Mosquitto"
  fi
fi

# --- Python -------------------------------------------------------------------------
PY=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PY="$candidate"; break
  fi
done
[ -n "$PY" ] || { log "Python 3.11 or newer is required"; exit 1; }

stamp=.venv/.chenxing-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing chenxing-edge and its test dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip </dev/null
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]" </dev/null
  echo "$want" > "$stamp"
fi

# --- independent peers from npm (tests only) ------------------------------------------
if [ "${1:-}" = "--test" ]; then
  peers=tests/interop/node
  peers_stamp="$peers/node_modules/.chenxing-installed"
  peers_want="$(sha256sum "$peers/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$peers_stamp" ] || [ "$(cat "$peers_stamp")" != "$peers_want" ]; then
    if command -v npm >/dev/null 2>&1; then
      log "installing the npm test peers in $peers"
      npm ci --prefix "$peers" --no-audit --no-fund --loglevel=error </dev/null >/dev/null
      echo "$peers_want" > "$peers_stamp"
    else
      log "WARNING: npm missing: the interoperability tests will fail (install nodejs and npm)"
    fi
  fi
fi
