#!/usr/bin/env bash
# Build and cache the OpenTelemetry Collector the tracing tests export to (loopback only):
#   otelcol-test   scripts/otel/collector/{main.go,go.mod,go.sum}: the collector core with the
#                  otlp receiver and the file and debug exporters, from the Go module proxy
#                  (go.opentelemetry.io/collector v0.161.0 / v1.67.0, contrib fileexporter
#                  v0.161.0)
# into ${MCP_RUNTIME_CACHE:-$HOME/.cache/mcp-runtime}/otel/<version>/otelcol.
#
#   scripts/otel/install.sh              # build if needed; prints the binary's path on stdout
#   OTELCOL="$(scripts/otel/install.sh)"
#
# Idempotent: a stamp (the collector version and a hash of the three source files) makes a second
# run a no-op. Modules are downloaded into the cache's shared Go module cache (also used by
# scripts/testenv); the build cache is a scratch directory removed after the build (it is about
# 700 MB and nothing else reuses it). Progress goes to stderr.
#
# Environment:
#   MCP_RUNTIME_CACHE     cache root (default ~/.cache/mcp-runtime)
#   MCP_OTEL_FORCE=1      rebuild even if the stamp says the binary is up to date
#   MCP_OTEL_NICE         niceness of the Go build (default 10)
# The Rust side (crates/sentinel-testenv, `Collector`) finds the binary at the same path, or at
# $MCP_OTELCOL.
set -euo pipefail

# ---- pinned version (crates/sentinel-testenv/src/otel.rs pins it too; a unit test there checks
# ---- that both agree) ------------------------------------------------------------------------
OTELCOL_VERSION="v0.161.0"
# Bump when the way the binary is built changes, to invalidate old stamps.
RECIPE_REVISION="1"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="$ROOT/scripts/otel/collector"
CACHE_ROOT="${MCP_RUNTIME_CACHE:-$HOME/.cache/mcp-runtime}"
HOME_DIR="$CACHE_ROOT/otel/$OTELCOL_VERSION"
BIN="$HOME_DIR/otelcol"
STAMP_FILE="$HOME_DIR/.installed"
NICE="${MCP_OTEL_NICE:-10}"

log() { printf '[otel-install %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

stamp() {
  printf 'otelcol=%s recipe=%s sources=%s\n' "$OTELCOL_VERSION" "$RECIPE_REVISION" \
    "$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -d' ' -f1)"
}

up_to_date() {
  [[ "${MCP_OTEL_FORCE:-0}" == "1" ]] && return 1
  [[ -x "$BIN" && -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$(stamp)" ]]
}

build() {
  local t0=$SECONDS
  command -v go >/dev/null 2>&1 || die "go is not on PATH (Go >= 1.26 builds the collector)"
  local work="$HOME_DIR/build"
  rm -rf "$work"
  mkdir -p "$work/src" "$CACHE_ROOT/go/mod"
  # Built from a copy: the repository's files are never rewritten by the go command.
  cp "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" "$work/src/"
  log "otelcol $OTELCOL_VERSION: go build (downloads the modules on a cold cache; a few minutes on 2 cores)"
  (
    cd "$work/src"
    export GOMODCACHE="$CACHE_ROOT/go/mod"
    export GOCACHE="$work/gocache"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GO111MODULE=on
    # -mod=mod: go.sum is complete, but go.mod lists only the direct requirements.
    export GOFLAGS="-mod=mod -buildvcs=false -modcacherw"
    # GOPROXY/GOSUMDB: whatever the machine has configured (the module proxy).
    nice -n "$NICE" go build -trimpath -ldflags "-s -w -X main.version=$OTELCOL_VERSION" \
      -o "$work/otelcol" .
  ) >&2 || die "go build of the collector failed (see above)"
  local v
  v="$("$work/otelcol" --version 2>&1 || true)"
  [[ "$v" == *"$OTELCOL_VERSION"* ]] || die "the built collector reports '$v', expected $OTELCOL_VERSION"
  local parts
  parts="$("$work/otelcol" components 2>&1 || true)"
  for want in otlp file debug; do
    grep -Eq "^[[:space:]-]*(name:[[:space:]]*)?$want\$" <<<"$parts" \
      || die "the built collector lacks the '$want' component; \`otelcol components\` printed:\n$parts"
  done
  mv -f "$work/otelcol" "$BIN"
  rm -rf "$work"
  stamp >"$STAMP_FILE"
  log "otelcol $OTELCOL_VERSION: built $BIN ($(du -h "$BIN" | cut -f1)) in $((SECONDS - t0)) s"
}

main() {
  mkdir -p "$HOME_DIR"
  # Serialise concurrent runs (parallel test jobs sharing a cache): the second waits.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$HOME_DIR/.install.lock"
    if ! flock -n 9; then
      log "another install is running; waiting for its lock"
      flock 9
    fi
  fi
  if up_to_date; then
    log "otelcol $OTELCOL_VERSION: cached ($BIN)"
  else
    build
  fi
  printf '%s\n' "$BIN"
}

main "$@"
