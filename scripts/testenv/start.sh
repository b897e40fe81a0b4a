#!/usr/bin/env bash
# Start a loopback-only Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok + one fake Node) with its state in DIR. Needs scripts/testenv/install.sh first.
# On success prints DIR/env on stdout and exits 0; see docs/testenv.md for the env file format.
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
exec python3 "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/testenv.py" start "$1"
