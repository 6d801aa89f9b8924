#!/usr/bin/env bash
# Install chenxing-edge on a box without internet from a wheelhouse built by
# scripts/build-wheelhouse.sh (same Python minor version and platform).
#   usage: install-offline.sh WHEELHOUSE [PREFIX] [PYTHON]
#   default PREFIX: /opt/chenxing
# Each release gets its own virtual environment, PREFIX/venv-VERSION; the link PREFIX/venv
# points to the one in use (the systemd unit runs PREFIX/venv/bin/chenxing-gateway). An upgrade
# is another install and an atomic switch of the link; the previous venv stays for a rollback
# (ln -sfn venv-OLD PREFIX/venv.new && mv -T PREFIX/venv.new PREFIX/venv) until you delete it.
set -euo pipefail
usage="usage: install-offline.sh WHEELHOUSE [PREFIX] [PYTHON]"
WHEELS="$(cd "${1:?$usage}" && pwd)"
PREFIX="${2:-/opt/chenxing}"
PY="${3:-python3}"
say() { printf 'install-offline: %s\n' "$*"; }
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "Python 3.11 or newer is required" >&2; exit 1; }

shopt -s nullglob
ours=("$WHEELS"/chenxing_edge-*.whl)
[ ${#ours[@]} -eq 1 ] ||
  { echo "$WHEELS must hold exactly one chenxing_edge wheel (found ${#ours[@]})" >&2; exit 1; }
VERSION="$(basename "${ours[0]}" | cut -d- -f2)"
case "$(basename "$PREFIX")" in
  venv|venv-*) echo "$PREFIX: give the folder that holds the venvs (e.g. /opt/chenxing)," \
                    "not a venv" >&2; exit 2 ;;
esac
LINK="$PREFIX/venv"
VENV="$PREFIX/venv-$VERSION"

# an install made before versioned venvs has a real directory where the link belongs
if [ -d "$LINK" ] && [ ! -L "$LINK" ]; then
  old="$("$LINK/bin/chenxing-gateway" --version 2>/dev/null | awk '{print $NF}')" || true
  echo "$LINK is a directory (an install before versioned venvs), not a link; move it aside" \
       "first, then run this again:" >&2
  echo "  mv $LINK $PREFIX/venv-${old:-OLD}" >&2
  echo "(the service keeps running from the moved folder until it restarts)" >&2
  exit 1
fi

mkdir -p "$PREFIX"
if [ -x "$VENV/bin/chenxing-gateway" ]; then
  say "$VENV exists; installing $VERSION into it again"
fi
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" --upgrade pip
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" \
  "chenxing-edge==$VERSION"
"$VENV/bin/chenxing-gateway" --version >/dev/null

previous="$(readlink "$LINK" 2>/dev/null || true)"
# a new link beside the old one, renamed over it: the switch is atomic (rename(2))
ln -sfn "venv-$VERSION" "$LINK.new"
mv -T "$LINK.new" "$LINK"
say "chenxing-edge $VERSION in $VENV; $LINK -> venv-$VERSION"
if [ -n "$previous" ] && [ "$previous" != "venv-$VERSION" ]; then
  say "the previous release stays in $PREFIX/$previous (rollback: point the link back;" \
      "delete it once this one runs well)"
  say "next: systemctl restart chenxing-gateway"
else
  say "next: chenxing-gateway config init -o /etc/chenxing/gateway.yaml (docs/install.md)"
fi
