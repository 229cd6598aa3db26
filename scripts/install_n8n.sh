#!/usr/bin/env bash
# Install n8n 2.8.4 (the newest release that accepts Node 20) into DIR for the
# workflow tests and for local use. Idempotent: an existing install of the same
# version is reused. Prints the path of the n8n binary on the last line.
#
#   scripts/install_n8n.sh [DIR]      (default: $HOME/.cache/tunebridge/n8n)
#
# npm fetches the `xlsx` dependency of n8n from an outside CDN; the override
# below pins it to the registry's 0.18.5 instead. The first install takes about
# 7-8 minutes (sqlite3 is built from source) and about 2.3 GB.
set -euo pipefail

N8N_VERSION="${N8N_VERSION:-2.8.4}"
DIR="${1:-${TUNEBRIDGE_N8N_DIR:-$HOME/.cache/tunebridge/n8n}}"
BIN="$DIR/node_modules/.bin/n8n"
PKG_JSON="$DIR/node_modules/n8n/package.json"

installed_version() {
  [ -f "$PKG_JSON" ] || return 1
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$PKG_JSON"
}

if [ -x "$BIN" ] && [ "$(installed_version || true)" = "$N8N_VERSION" ]; then
  echo "n8n $N8N_VERSION already installed in $DIR" >&2
  echo "$BIN"
  exit 0
fi

command -v node >/dev/null || { echo "node is required (n8n $N8N_VERSION needs Node >= 20.19)" >&2; exit 2; }
command -v npm >/dev/null || { echo "npm is required" >&2; exit 2; }

mkdir -p "$DIR"
cat > "$DIR/package.json" <<JSON
{
  "name": "tunebridge-n8n",
  "private": true,
  "description": "n8n for the tunebridge workflow tests (scripts/install_n8n.sh)",
  "dependencies": { "n8n": "$N8N_VERSION" },
  "overrides": { "xlsx": "0.18.5" }
}
JSON

echo "installing n8n $N8N_VERSION into $DIR (several minutes) ..." >&2
start=$(date +%s)
(cd "$DIR" && npm install --yes --no-audit --no-fund --loglevel=error >&2)
echo "installed in $(( $(date +%s) - start )) s; $(du -sh "$DIR" 2>/dev/null | cut -f1)" >&2

v="$(installed_version || true)"
if [ ! -x "$BIN" ] || [ "$v" != "$N8N_VERSION" ]; then
  echo "n8n install failed: found version '${v:-none}' at $BIN" >&2
  exit 1
fi
echo "$BIN"
