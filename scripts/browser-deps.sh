#!/usr/bin/env bash
# Install what the dashboard's browser test (tests/browser/dashboard.mjs, run by
# crates/operator/tests/dashboard.rs) needs:
#   Chromium     Debian's chromium package, installed with apt-get only when missing (the test
#                drives it headless; puppeteer never downloads a browser)
#   npm packages from tests/browser/package.json + package-lock.json, via `npm ci`:
#                puppeteer-core (drives Chromium over CDP) and axe-core (the accessibility
#                check), exact versions; puppeteer-core 24.x because 25.x needs Node >= 22.12
#                and the machine's node is 20
#
#   scripts/browser-deps.sh            # install if needed; prints `export ...` lines on stdout
#   eval "$(scripts/browser-deps.sh)"  # ... and use them in the current shell
#   . "${MCP_RUNTIME_CACHE:-$HOME/.cache/mcp-runtime}/browser/env.sh"   # same, afterwards
#
# A stamp file (sha256 of the pin files) makes a second run a no-op.
# Progress goes to stderr; stdout carries only the export lines.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINS="$ROOT/tests/browser"
CACHE="${MCP_RUNTIME_CACHE:-$HOME/.cache/mcp-runtime}"
BROWSER="$CACHE/browser"
NPMDIR="$BROWSER/npm"
CHROMIUM="${MCP_CHROMIUM:-/usr/bin/chromium}"

log() { printf '[browser-deps %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$BROWSER"
# Serialise concurrent runs (parallel test jobs): the second waits, then sees a fresh stamp.
if command -v flock >/dev/null; then
  exec 9>"$BROWSER/.lock"
  flock 9
fi

# ---------------------------------------------------------------- Chromium
if [[ -x "$CHROMIUM" ]]; then
  log "chromium: present ($CHROMIUM)"
else
  t0=$SECONDS
  command -v apt-get >/dev/null 2>&1 || die "no $CHROMIUM and no apt-get to install chromium"
  sudo=()
  if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null 2>&1 || die "chromium is missing; installing it needs root (apt-get install chromium)"
    sudo=(sudo -n)
  fi
  log "chromium: not found; apt-get install chromium"
  apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0)
  # A fresh machine may have no package lists yet: install, and on failure update and retry.
  if ! "${apt[@]}" install --no-install-recommends chromium >&2; then
    log "chromium: install failed; running apt-get update and trying once more"
    "${apt[@]}" update >&2 || die "apt-get update failed"
    "${apt[@]}" install --no-install-recommends chromium >&2 || die "apt-get install chromium failed (see above)"
  fi
  [[ -x "$CHROMIUM" ]] || die "apt-get installed chromium but $CHROMIUM is missing (set MCP_CHROMIUM)"
  log "chromium: installed in $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------- npm packages
stamp_want="npm:$(hash_of "$PINS/package.json" "$PINS/package-lock.json")"
stamp_file="$NPMDIR/.browser-stamp"
if [[ -d "$NPMDIR/node_modules" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_want" ]]; then
  log "npm packages up to date ($NPMDIR)"
else
  command -v npm >/dev/null || die "npm not found: install nodejs/npm first"
  t0=$SECONDS
  log "installing npm packages (npm ci: puppeteer-core, axe-core) into $NPMDIR"
  rm -rf "$NPMDIR"
  mkdir -p "$NPMDIR"
  cp "$PINS/package.json" "$PINS/package-lock.json" "$NPMDIR/"
  # puppeteer-core downloads nothing at install time (unlike puppeteer); say so anyway.
  (cd "$NPMDIR" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2)
  printf '%s\n' "$stamp_want" > "$stamp_file"
  log "npm packages ready in $((SECONDS - t0)) s"
fi

NODE_MODULES="$NPMDIR/node_modules"
for f in "$CHROMIUM" "$NODE_MODULES/puppeteer-core/package.json" "$NODE_MODULES/axe-core/axe.min.js"; do
  [[ -e "$f" ]] || die "missing after install: $f (remove $BROWSER and retry)"
done

env_sh="$BROWSER/env.sh"
{
  printf '# written by scripts/browser-deps.sh\n'
  printf 'export MCP_CHROMIUM=%q\n' "$CHROMIUM"
  printf 'export BROWSER_NODE_MODULES=%q\n' "$NODE_MODULES"
} > "$env_sh.tmp"
mv "$env_sh.tmp" "$env_sh"
log "env written to $env_sh"
grep '^export ' "$env_sh"
