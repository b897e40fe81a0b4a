#!/usr/bin/env bash
# Install what `mcp-runtime registry` is tested against (crates/registry-testenv):
#   docker-registry  Debian's package of the CNCF distribution v2 registry (/usr/bin/docker-registry);
#                    the tests run it per test on a free loopback port with their own config and
#                    storage. The package's system service is not used (stopped if apt started it).
#   apache2-utils    htpasswd, for the bcrypt entry of the tests with Basic authentication.
#
#   scripts/registry-deps.sh            # install if needed; prints `export ...` lines on stdout
#   eval "$(scripts/registry-deps.sh)"  # ... and use them in the current shell
#
# Idempotent: when both are present this only checks them. Cold: 7.5 s of apt on Debian 12 with the
# .debs already in apt's cache (plus their download, ~5.4 MB, on a fresh machine).
#
# Environment:
#   MCP_REGISTRY_BIN  the registry binary (default /usr/bin/docker-registry); crates/registry-testenv
#                     reads the same variable
set -euo pipefail

BIN="${MCP_REGISTRY_BIN:-/usr/bin/docker-registry}"

log() { printf '[registry-deps %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

present() { [[ -x "$BIN" ]] && command -v htpasswd >/dev/null 2>&1; }

install() {
  local t0=$SECONDS
  command -v apt-get >/dev/null 2>&1 || die "no registry at $BIN and no apt-get to install it"
  local sudo=()
  if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null 2>&1 || die "installing docker-registry needs root (apt-get install docker-registry apache2-utils)"
    sudo=(sudo -n)
  fi
  log "docker-registry/htpasswd missing; apt-get install docker-registry apache2-utils"
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0)
  # A fresh machine may have no package lists yet: install, and on failure update and retry.
  if ! "${apt[@]}" install --no-install-recommends docker-registry apache2-utils >&2; then
    log "install failed; running apt-get update and trying once more"
    "${apt[@]}" update >&2 || die "apt-get update failed"
    "${apt[@]}" install --no-install-recommends docker-registry apache2-utils >&2 \
      || die "apt-get install docker-registry apache2-utils failed (see above)"
  fi
  # The package may start a system registry on :5000; the tests start their own.
  if command -v systemctl >/dev/null 2>&1; then
    "${sudo[@]}" systemctl stop docker-registry >/dev/null 2>&1 || true
  fi
  present || die "apt-get finished but $BIN or htpasswd is missing (set MCP_REGISTRY_BIN?)"
  log "installed in $((SECONDS - t0)) s"
}

main() {
  if present; then
    log "docker-registry: present ($BIN)"
  else
    install
  fi
  printf 'export MCP_REGISTRY_BIN=%q\n' "$BIN"
}

main "$@"
