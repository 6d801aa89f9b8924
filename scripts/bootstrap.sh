#!/usr/bin/env bash
# Set up what the demo needs (no flag: `make demo`) or the tests need (--test: `make test`),
# idempotently:
#  - Debian packages (apt-get, when missing and running as root): mosquitto for the demo;
#    with --test also what only the tests use: socat (pty pairs), victoria-metrics (an InfluxDB
#    v2 write endpoint for the ingest tests), chromium + chromium-driver (the status page's
#    browser test), Node.js and npm
#  - a virtual environment in .venv with the project installed (editable), pinned by
#    constraints.txt so every machine gets the same versions: its runtime dependencies, and
#    with --test its test extra (pytest, linters, second-opinion libraries)
#  - with --test, the npm packages of tests/interop/node (exact versions from its
#    package-lock.json): independent implementations the tests compare the gateway's bytes with.
# pip's own output goes to .venv/bootstrap.log (shown when it fails); the last line says done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# --- system packages ------------------------------------------------------------------
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
if [ "${1:-}" = "--test" ]; then
  command -v socat >/dev/null 2>&1 || missing+=(socat)
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

# the stamp: the hash of what was installed from, and "runtime" or "test" (which includes it)
stamp=.venv/.chenxing-installed
hash="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
extras="runtime" spec="."
if [ "${1:-}" = "--test" ]; then extras="test" spec=".[test]"; fi
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$have" != "$hash $extras" ] && [ "$have" != "$hash test" ]; then
  log "installing chenxing-edge and its $extras dependencies into .venv (pinned: constraints.txt)"
  pip_log=.venv/bootstrap.log
  if ! { .venv/bin/python -m pip install --upgrade pip &&
         .venv/bin/python -m pip install -c constraints.txt -e "$spec"; } \
       </dev/null >"$pip_log" 2>&1; then
    tail -n 40 "$pip_log" >&2
    log "pip failed (the whole output: $pip_log)"
    exit 1
  fi
  echo "$hash $extras" > "$stamp"
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
log "done: .venv holds chenxing-edge $(.venv/bin/python -c 'import gateway; print(gateway.__version__)') with its $(cut -d' ' -f2 "$stamp") dependencies"
