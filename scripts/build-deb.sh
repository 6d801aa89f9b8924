#!/usr/bin/env bash
# Build the Debian package of chenxing-edge (`make deb`): dist/chenxing-edge_VERSION_ARCH.deb
#   usage: scripts/build-deb.sh [--wheelhouse DIR] [--version VERSION] [--python PYTHON]
#                               [--out DIR] [--compress xz|gzip|zstd|none]
# A virtual environment is built for its final path, /opt/chenxing/venv-VERSION, inside a
# staging root, with the system's Python (a Debian package, python3.X, the package depends on)
# and the wheels of a wheelhouse (scripts/build-wheelhouse.sh; built here when --wheelhouse is
# not given, which needs a package index); the staging paths are rewritten to the final ones,
# the bytecode compiled for them, and dpkg-deb packs the tree with the unit, the config, the
# docs and the maintainer scripts of deploy/debian/. Why not dh-virtualenv: docs/packaging.md.
# Build on the distribution release and architecture of the edge boxes (docs/install.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
log() { printf '[deb] %s\n' "$*" >&2; }

WHEELS="" VERSION="" PY="/usr/bin/python3" OUT="dist" COMPRESS="xz"
while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) WHEELS="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --compress) COMPRESS="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v dpkg-deb >/dev/null || { echo "dpkg-deb is required (Debian's dpkg)" >&2; exit 1; }

# --- the Python the package runs on: a Debian package's, pinned by its minor version --------
PY="$(readlink -f "$(command -v "$PY")")"
PY_MINOR="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "$PY is Python $PY_MINOR; 3.11 or newer is required" >&2; exit 1; }
dpkg-query -S "$PY" >/dev/null 2>&1 || {
  echo "$PY is not from a Debian package: the edge box needs the same interpreter at the same" \
       "path. Give --python /usr/bin/python3.X (apt-get install python3.X-venv)" >&2; exit 1; }
PY="/usr/bin/python$PY_MINOR"  # the path the venv links to; what python$PY_MINOR provides
ARCH="$(dpkg --print-architecture)"
VERSION="${VERSION:-$("$PY" -c 'import re,sys; print(re.search(r"__version__ = \"(.+)\"", open(sys.argv[1]).read())[1])' gateway/__init__.py)}"

BUILD="$ROOT/build/deb"
mkdir -p "$BUILD" "$OUT"
if [ -z "$WHEELS" ]; then
  log "building the wheelhouse (pip, from the package index) into $BUILD/wheelhouse"
  "$PY" -m venv "$BUILD/build-venv"
  rm -rf "$BUILD/wheelhouse"
  ./scripts/build-wheelhouse.sh "$BUILD/build-venv/bin/python" "$BUILD/wheelhouse" >&2
  WHEELS="$BUILD/wheelhouse"
fi
WHEELS="$(cd "$WHEELS" && pwd)"
pips=("$WHEELS"/pip-*.whl)
[ -f "${pips[0]}" ] || { echo "$WHEELS holds no pip wheel (build-wheelhouse.sh adds one)" >&2; exit 1; }

# --- the staging root: the venv at its final path under $STAGE ---------------------------
STAGE="$BUILD/root"
VENV_NAME="venv-$VERSION"
VENV="$STAGE/opt/chenxing/$VENV_NAME"
rm -rf "$STAGE"
log "virtual environment /opt/chenxing/$VENV_NAME (Python $PY_MINOR, $ARCH)"
"$PY" -m venv --without-pip "$VENV"
# pip runs from its wheel and is not left in the venv: dpkg owns every file there
"$VENV/bin/python" "${pips[0]}/pip" install --quiet --no-index --find-links "$WHEELS" \
  --no-compile --disable-pip-version-check chenxing-edge
rm -f "$VENV"/bin/activate.csh "$VENV"/bin/activate.fish "$VENV"/bin/Activate.ps1
# every staging path becomes the final one (script shebangs, activate, pyvenv.cfg)
grep -rlF --null "$STAGE/" "$VENV" | xargs -0 --no-run-if-empty sed -i "s|$STAGE/|/|g"
if left="$(grep -rlF "$STAGE" "$VENV")"; then
  echo "files still naming the staging root: $left" >&2; exit 1
fi
# bytecode for the final paths (tracebacks name /opt/...); dpkg keeps the sources' mtimes
"$PY" -m compileall -q -j0 -s "$STAGE" -p / "$VENV/lib" >/dev/null
ln -s "$VENV_NAME" "$STAGE/opt/chenxing/venv"

# --- what goes beside the venv -----------------------------------------------------------
install -d "$STAGE/usr/bin" "$STAGE/lib/systemd/system" "$STAGE/etc/chenxing" \
  "$STAGE/usr/share/doc/chenxing-edge/examples" "$STAGE/DEBIAN"
for tool in chenxing-gateway chenxing-hil; do
  ln -s "/opt/chenxing/venv/bin/$tool" "$STAGE/usr/bin/$tool"
done
cp deploy/chenxing-gateway.service "$STAGE/lib/systemd/system/"
"$VENV/bin/python" -c 'from gateway.cli.config_init_cmd import packaged_text; print(packaged_text(), end="")' \
  > "$STAGE/etc/chenxing/gateway.yaml"
doc="$STAGE/usr/share/doc/chenxing-edge"
cp README.md CHANGELOG.md docs/*.md "$doc/"
cp config/example.yaml config/demo.yaml config/gateway.schema.json "$doc/examples/"
cp deploy/debian/copyright "$doc/copyright"
cp deploy/debian/conffiles deploy/debian/preinst deploy/debian/postinst deploy/debian/prerm \
  deploy/debian/postrm "$STAGE/DEBIAN/"
chmod 0755 "$STAGE"/DEBIAN/{preinst,postinst,prerm,postrm}
SIZE="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
sed -e "s/@VERSION@/$VERSION/g" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
    -e "s/@PYTHON_PACKAGE@/python$PY_MINOR/" deploy/debian/control.in > "$STAGE/DEBIAN/control"
find "$STAGE" -path "$STAGE/DEBIAN" -prune -o -type f -print0 | sort -z |
  xargs -0 md5sum | sed "s|$STAGE/||" > "$STAGE/DEBIAN/md5sums"

DEB="$OUT/chenxing-edge_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$STAGE" "$DEB" >/dev/null
log "$DEB ($(du -h "$DEB" | cut -f1); installed $((SIZE / 1024)) MiB)"
echo "$DEB"
