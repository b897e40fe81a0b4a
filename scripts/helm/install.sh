#!/usr/bin/env bash
# Build and cache the `helm` CLI the Helm chart test renders and installs deploy/helm/mcp-runtime
# with (against kube-testenv's real apiserver): helm.sh/helm/v3/cmd/helm at a pinned version,
# from the Go module proxy (`go install`, no other network)
# into ${MCP_RUNTIME_CACHE:-$HOME/.cache/mcp-runtime}/helm/<version>/helm.
#
#   scripts/helm/install.sh              # build if needed; prints the binary's path on stdout
#   HELM="$(scripts/helm/install.sh)"
#
# Idempotent: a stamp (the helm version and the recipe revision) makes a second run a no-op.
# Modules are downloaded into the cache's shared Go module cache (also used by scripts/testenv and
# scripts/otel); the build cache is a scratch directory removed after the build (nothing else
# reuses it). Progress goes to stderr.
#
# Environment:
#   MCP_RUNTIME_CACHE     cache root (default ~/.cache/mcp-runtime)
#   MCP_HELM_FORCE=1      rebuild even if the stamp says the binary is up to date
#   MCP_HELM_NICE         niceness of the Go build (default 10)
# The Rust side (crates/cli/tests/helm.rs) finds the binary at the same path, or at $MCP_HELM.
set -euo pipefail

# ---- pinned version (crates/cli/tests/helm.rs pins it too) -----------------------------------
HELM_VERSION="v3.22.0"
# Bump when the way the binary is built changes, to invalidate old stamps.
RECIPE_REVISION="1"

CACHE_ROOT="${MCP_RUNTIME_CACHE:-$HOME/.cache/mcp-runtime}"
HOME_DIR="$CACHE_ROOT/helm/$HELM_VERSION"
BIN="$HOME_DIR/helm"
STAMP_FILE="$HOME_DIR/.installed"
NICE="${MCP_HELM_NICE:-10}"

log() { printf '[helm-install %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

stamp() { printf 'helm=%s recipe=%s\n' "$HELM_VERSION" "$RECIPE_REVISION"; }

up_to_date() {
  [[ "${MCP_HELM_FORCE:-0}" == "1" ]] && return 1
  [[ -x "$BIN" && -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$(stamp)" ]]
}

build() {
  local t0=$SECONDS
  command -v go >/dev/null 2>&1 || die "go is not on PATH (Go >= 1.25 builds helm $HELM_VERSION)"
  local work="$HOME_DIR/build"
  rm -rf "$work"
  mkdir -p "$work/bin" "$CACHE_ROOT/go/mod"
  log "helm $HELM_VERSION: go install (downloads the modules on a cold cache; a few minutes on 2 cores)"
  (
    # Outside the repository: `go install pkg@version` ignores any go.mod, but a scratch directory
    # makes that obvious.
    cd "$work"
    export GOMODCACHE="$CACHE_ROOT/go/mod"
    export GOCACHE="$work/gocache"
    export GOBIN="$work/bin"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GO111MODULE=on
    export GOFLAGS="-mod=mod -buildvcs=false -modcacherw"
    # The version helm reports comes from this linker flag (its release Makefile sets it too).
    nice -n "$NICE" go install -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  ) >&2 || die "go install of helm $HELM_VERSION failed (see above)"
  local v
  v="$("$work/bin/helm" version --short 2>&1 || true)"
  [[ "$v" == "$HELM_VERSION"* ]] || die "the built helm reports '$v', expected $HELM_VERSION"
  mv -f "$work/bin/helm" "$BIN"
  rm -rf "$work"
  stamp >"$STAMP_FILE"
  log "helm $HELM_VERSION: built $BIN ($(du -h "$BIN" | cut -f1)) in $((SECONDS - t0)) s"
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
    log "helm $HELM_VERSION: cached ($BIN)"
  else
    build
  fi
  printf '%s\n' "$BIN"
}

main "$@"
