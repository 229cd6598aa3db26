#!/usr/bin/env bash
# Install the newest n8n 2.x on a local Node 24 for the workflow tests and for local use.
#
#   scripts/install_n8n_newest.sh [DIR]   (default: $HOME/.cache/tunebridge/n8n-newest)
#
# n8n >= 2.34 needs Node >= 24. When the `node` on PATH is older, Node 24 comes from the npm
# registry's `node` package into DIR/node24 (nothing system-wide); run n8n with DIR/node24/bin first
# on PATH (the tests and `make test-n8n` do). The n8n version is resolved from the registry at
# install time: the newest released 2.x whose dependency tree resolves there (a lock-file-only
# resolve, no download; some releases name dependencies that never reached the registry), trying the
# three newest; when none does, the pinned known-good N8N_FALLBACK_VERSION. n8n is installed with
# --ignore-scripts, then only its native modules (sqlite3, isolated-vm) are rebuilt, against that
# Node's own headers (an npm `nodedir` setting for the system Node would build them for the wrong one).
#
# Idempotent and cached: a rerun asks the registry for the versions (about a second) and reuses the
# install when nothing newer than it resolves; versions found not to resolve are remembered in DIR.
# TUNEBRIDGE_N8N_OFFLINE=1 skips the registry and reuses whatever is installed. The first install
# takes several minutes and about 3 GB (workflows/README.md has the times measured). Prints what it
# installed or reused, and the n8n binary's path on the last line.
set -euo pipefail

NODE_VERSION="${NODE24_VERSION:-24.15.0}"
FALLBACK="${N8N_FALLBACK_VERSION:-2.41.1}"
DIR="${1:-${TUNEBRIDGE_N8N_NEWEST_DIR:-$HOME/.cache/tunebridge/n8n-newest}}"
BIN="$DIR/node_modules/.bin/n8n"
PKG_JSON="$DIR/node_modules/n8n/package.json"
NODE_DIR="$DIR/node24"
mkdir -p "$DIR"

log() { echo "$*" >&2; }
major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# --- Node 24 --------------------------------------------------------------------------------------
NODE="$(command -v node || true)"
if [ -z "$NODE" ] || [ "$(major "$NODE")" -lt 24 ]; then
  NODE="$NODE_DIR/bin/node"
  if [ ! -x "$NODE" ] || [ "$(major "$NODE")" -lt 24 ]; then
    command -v npm >/dev/null || { log "npm is required"; exit 2; }
    log "installing Node $NODE_VERSION into $NODE_DIR ..."
    mkdir -p "$NODE_DIR"
    (cd "$NODE_DIR" && printf '{"name":"tunebridge-node24","private":true}\n' > package.json \
      && npm install --yes --no-audit --no-fund --loglevel=error "node@$NODE_VERSION" >&2)
    mkdir -p "$NODE_DIR/bin"
    ln -sf ../node_modules/node/bin/node "$NODE_DIR/bin/node"
  fi
  # The `node` package keeps the full Node (binary and headers) in node-linux-<arch>: native modules
  # must be built against these headers, not the system Node's.
  headers="$(find "$NODE_DIR/node_modules" -path '*/include/node/common.gypi' -print -quit)"
  [ -n "$headers" ] || { log "no Node headers in $NODE_DIR"; exit 1; }
  export PATH="$NODE_DIR/bin:$PATH"
  export npm_config_nodedir="${headers%/include/node/common.gypi}"
fi
NODE_V="$("$NODE" --version)"

installed_version() {  # only an install that finished (native modules rebuilt and loading) counts
  [ -f "$PKG_JSON" ] && [ -f "$DIR/.complete" ] || return 1
  "$NODE" -e 'process.stdout.write(require(process.argv[1]).version)' "$PKG_JSON"
}
have="$(installed_version || true)"

# --- which n8n ------------------------------------------------------------------------------------
# Released 2.x versions, newest first (one registry call).
versions=""
if [ "${TUNEBRIDGE_N8N_OFFLINE:-0}" != 1 ]; then
  versions="$(timeout 60 npm view n8n@2 version --json 2>/dev/null \
    | "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
        const p=x=>x.split(".").map(Number);
        const v=[].concat(JSON.parse(s||"[]")).filter(x=>/^2\.\d+\.\d+$/.test(x))
          .sort((a,b)=>{const [x,y]=[p(b),p(a)];return x[0]-y[0]||x[1]-y[1]||x[2]-y[2]});
        process.stdout.write(v.join(" "))})' || true)"
fi
# The candidates: versions newer than the installed one that are not known to fail to install.
candidates=""
for v in $versions; do
  [ "$v" = "$have" ] && break
  [ -f "$DIR/.does-not-install-$v" ] || candidates="$candidates $v"
done

if [ -x "$BIN" ] && [ -n "$have" ] && [ -z "$candidates" ]; then
  log "n8n $have (Node $NODE_V) already installed in $DIR${versions:+; newest on the registry: ${versions%% *}}"
  echo "$BIN"
  exit 0
fi

# Does a version's dependency tree resolve on the registry? (a lock file only: no downloads)
resolves() {
  local tmp="$DIR/.resolve" rc=0
  rm -rf "$tmp" && mkdir -p "$tmp"
  printf '{"name":"probe","private":true,"dependencies":{"n8n":"%s"},"overrides":{"xlsx":"0.18.5"}}\n' "$1" \
    > "$tmp/package.json"
  (cd "$tmp" && timeout 600 npm install --package-lock-only --ignore-scripts --yes --no-audit --no-fund \
    --loglevel=error >/dev/null 2>"$tmp/err") || rc=$?
  [ $rc -eq 0 ] || log "n8n $1 does not install: $(grep -m1 -E '(404|notarget|No matching)' "$tmp/err" || tail -1 "$tmp/err")"
  rm -rf "$tmp"
  return $rc
}

want=""
tries=0
for v in $candidates; do
  tries=$((tries + 1)); [ $tries -le 3 ] || break  # the 3 newest; older ones are what the fallback is for
  if resolves "$v"; then want="$v"; break; fi
  touch "$DIR/.does-not-install-$v"
done
if [ -z "$want" ]; then
  if [ -x "$BIN" ] && [ -n "$have" ]; then
    log "keeping the installed n8n $have (Node $NODE_V)"; echo "$BIN"; exit 0
  fi
  want="$FALLBACK"
  log "falling back to the pinned known-good n8n $FALLBACK"
fi

# --- install --------------------------------------------------------------------------------------
install() {  # install n8n $1 into DIR; 0 when it runs on this Node
  cat > "$DIR/package.json" <<JSON
{
  "name": "tunebridge-n8n-newest",
  "private": true,
  "description": "the newest n8n 2.x for the tunebridge workflow tests (scripts/install_n8n_newest.sh)",
  "dependencies": { "n8n": "$1" },
  "overrides": { "xlsx": "0.18.5" }
}
JSON
  log "installing n8n $1 on Node $NODE_V into $DIR (several minutes) ..."
  local start; start=$(date +%s)
  rm -f "$DIR/.complete" "$DIR/package-lock.json"
  (cd "$DIR" && npm install --ignore-scripts --yes --no-audit --no-fund --loglevel=error >&2 \
    && npm rebuild sqlite3 isolated-vm --yes --loglevel=error >&2) || return 1
  log "installed in $(( $(date +%s) - start )) s; $(du -sh "$DIR" 2>/dev/null | cut -f1)"
  for module in sqlite3 isolated-vm; do
    "$NODE" -e 'require(process.argv[1])' "$DIR/node_modules/$module" \
      || { log "$module does not load on Node $NODE_V"; return 1; }
  done
  touch "$DIR/.complete"
  [ -x "$BIN" ] && [ "$(installed_version || true)" = "$1" ]
}

if ! install "$want"; then
  [ "$want" != "$FALLBACK" ] || { log "n8n $want did not install"; exit 1; }
  log "n8n $want did not install; falling back to the pinned known-good n8n $FALLBACK"
  want="$FALLBACK"
  install "$want" || { log "n8n $want did not install"; exit 1; }
fi
log "n8n $want on Node $NODE_V"
echo "$BIN"
