#!/usr/bin/env bash
# Re-vendor the partial plotly.js bundle the dashboard serves (webapp/static/vendor/).
#
#   scripts/vendor-plotly.sh            fetch the version pinned in plotly.json, check it, install it
#   scripts/vendor-plotly.sh 4.2.0      move the pin to another version (then commit the result)
#
# Why the bundle is committed rather than fetched at set-up: it is MIT-licensed, 1.2 MB
# (0.4 MB gzipped), and committing it means a fresh machine, CI and a wheel need neither
# Node nor a registry to serve the page.  This script is how it gets there: `npm pack`
# (the registry's own client) fetches the pinned tarball, its sha512 must equal the pin
# in plotly.json (unless a new version is being pinned), and the file's sha256 is
# recorded so tests/unit/test_web_assets.py can tell a hand-edited copy.  Needs the
# venv (scripts/setup.sh install) for the brotli module.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$REPO/webapp/static/vendor"
MANIFEST="$VENDOR/plotly.json"
command -v npm >/dev/null || { echo "vendor-plotly: npm is needed (apt-get install npm)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "vendor-plotly: python3 is needed" >&2; exit 1; }

field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$MANIFEST" "$1"; }
PACKAGE="$(field package)"
PINNED="$(field version)"
VERSION="${1:-$PINNED}"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "$PACKAGE@$VERSION" --json > pack.json)
INTEGRITY="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["integrity"])' "$WORK/pack.json")"
if [ "$VERSION" = "$PINNED" ] && [ "$INTEGRITY" != "$(field tarball_integrity)" ]; then
  echo "vendor-plotly: $PACKAGE@$VERSION has integrity $INTEGRITY, not the pinned $(field tarball_integrity); refusing" >&2
  exit 1
fi
tar -xzf "$WORK/$PACKAGE-$VERSION.tgz" -C "$WORK"
install -m 0644 "$WORK/package/plotly-basic.min.js" "$VENDOR/plotly-basic.min.js"
install -m 0644 "$WORK/package/LICENSE" "$VENDOR/plotly-LICENSE.txt"
python3 - "$MANIFEST" "$VERSION" "$INTEGRITY" "$VENDOR/plotly-basic.min.js" <<'EOF'
import hashlib, json, sys
path, version, integrity, bundle = sys.argv[1:]
manifest = json.load(open(path))
manifest.update(version=version, tarball_integrity=integrity,
                sha256=hashlib.sha256(open(bundle, "rb").read()).hexdigest())
with open(path, "w") as f:
    json.dump(manifest, f, indent=2)
    f.write("\n")
EOF
# The compressed copies nsgraph serve sends (br and gzip at their highest levels:
# too slow to make when the server starts).
rm -f "$VENDOR"/plotly-basic.min.js.br "$VENDOR"/plotly-basic.min.js.gz
"${PYTHON:-$REPO/.venv/bin/python}" -m webapp.assets precompress "$VENDOR"
echo "vendored $PACKAGE@$VERSION into $VENDOR"
