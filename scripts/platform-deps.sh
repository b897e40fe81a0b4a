#!/usr/bin/env bash
# Install the real parts the platform API (crates/platform) is tested against:
#   PostgreSQL  Debian's postgresql package (bookworm: 15), installed with apt-get only when its
#               server binaries are not on the machine. crates/pg-testenv runs initdb and the
#               server per test binary from /usr/lib/postgresql/15/bin (as the `postgres` user
#               when the tests run as root); nothing is started here and no system cluster is
#               used.
#
#   scripts/platform-deps.sh            # install if needed; prints `export ...` lines on stdout
#   eval "$(scripts/platform-deps.sh)"  # ... and use them in the current shell
#
# Idempotent: when the binaries are present this only checks them (well under a second).
#
# Environment:
#   MCP_PG_BINDIR   where initdb, postgres and psql are (default /usr/lib/postgresql/15/bin);
#                   crates/pg-testenv reads the same variable
set -euo pipefail

PG_MAJOR="15"   # crates/pg-testenv/src/lib.rs pins PG_MAJOR too
BINDIR="${MCP_PG_BINDIR:-/usr/lib/postgresql/$PG_MAJOR/bin}"

log() { printf '[platform-deps %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pg_ok() {
  local t
  for t in initdb postgres psql; do [[ -x "$BINDIR/$t" ]] || return 1; done
  getent passwd postgres >/dev/null 2>&1 || return 1
}

pg_version() {
  "$BINDIR/postgres" --version 2>/dev/null | head -n1
}

install_pg() {
  local t0=$SECONDS
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL in $BINDIR and no apt-get to install it"
  local sudo=()
  if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null 2>&1 || die "PostgreSQL is missing; installing it needs root (apt-get install postgresql)"
    sudo=(sudo -n)
  fi
  log "postgresql: not found in $BINDIR; apt-get install postgresql"
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0)
  # A fresh machine may have no package lists yet: install, and on failure update and retry.
  if ! "${apt[@]}" install --no-install-recommends postgresql >&2; then
    log "postgresql: install failed; running apt-get update and trying once more"
    "${apt[@]}" update >&2 || die "apt-get update failed"
    "${apt[@]}" install --no-install-recommends postgresql >&2 \
      || die "apt-get install postgresql failed (see above)"
  fi
  pg_ok || die "apt-get installed postgresql but $BINDIR lacks initdb/postgres/psql (another major version? set MCP_PG_BINDIR)"
  log "postgresql: installed $(pg_version) in $((SECONDS - t0)) s"
}

main() {
  if pg_ok; then
    log "postgresql: present ($(pg_version), $BINDIR)"
  else
    install_pg
  fi
  printf 'export MCP_PG_BINDIR=%q\n' "$BINDIR"
}

main "$@"
