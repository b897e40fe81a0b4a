#!/usr/bin/env bash
# Stop everything started by start.sh for DIR (each component's process group: SIGTERM, then
# SIGKILL after 10 s) and remove DIR's state. --keep-logs (or MCP_TESTENV_KEEP_LOGS=1) keeps DIR/logs.
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 DIR [--keep-logs]" >&2
  exit 2
fi
exec python3 "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/testenv.py" stop "$@"
