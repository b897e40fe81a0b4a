#!/usr/bin/env bash
# The test command of mcp-runtime (README): formatting, lints, and every test of the workspace.
# Installs what the tests need (pinned, cached under ~/.cache/mcp-runtime): the official MCP SDK
# peers the gateway is tested against, a real Kubernetes control plane (scripts/testenv), and
# Sentinel's scale-path parts: a Kafka broker from Maven Central jars and Debian's ClickHouse
# (scripts/sentinel-deps.sh), Debian's PostgreSQL for the platform API (scripts/platform-deps.sh),
# Debian's Chromium with puppeteer-core and axe-core for the dashboard's browser test
# (scripts/browser-deps.sh), the OpenTelemetry Collector the tracing tests export to, built from Go
# modules (scripts/otel/install.sh), Debian's docker-registry for `mcp-runtime registry`
# (scripts/registry-deps.sh), and `helm`, built from its Go module, for the Helm chart's test
# (scripts/helm/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-shot build gains nothing from incremental caches; they only cost disk (gigabytes) and time.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "install test peers (official MCP SDKs; cached)"
scripts/peers.sh >/dev/null

step "install the Kubernetes test environment (kube-apiserver, etcd, kwok from Go modules; cached, ~8 min cold)"
scripts/testenv/install.sh >/dev/null

step "install Sentinel's test parts (Kafka jars from Maven Central, Debian's clickhouse-server; cached)"
scripts/sentinel-deps.sh >/dev/null

step "build the OpenTelemetry Collector the tracing tests export to (Go modules; cached, ~2-3 min cold)"
scripts/otel/install.sh >/dev/null

step "build helm for the Helm chart test (Go modules; cached, ~3.5 min cold)"
scripts/helm/install.sh >/dev/null

step "install the platform API's test part (Debian's PostgreSQL; apt only when missing)"
scripts/platform-deps.sh >/dev/null

step "install the dashboard's browser test parts (Debian's chromium; puppeteer-core, axe-core via npm ci; cached, ~12 s cold)"
scripts/browser-deps.sh >/dev/null

step "install the registry tests' part (Debian's docker-registry and htpasswd; apt only when missing)"
scripts/registry-deps.sh >/dev/null

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

# --all-targets resolves features as the test build does (dev-dependencies included), so the
# following `cargo test` reuses these artifacts instead of compiling the tree a second time.
step "cargo build --workspace --all-targets (tests run the binaries together)"
cargo build --workspace --all-targets --locked

step "cargo test --workspace"
cargo test --workspace --locked

step "generated files are up to date"
cargo xtask generate 2>/dev/null
# `git status`, not `git diff`: a generated file that was never committed is drift too.
if [ -n "$(git status --porcelain -- deploy)" ]; then
  git --no-pager status --short -- deploy >&2
  echo "deploy/ drifted from the Rust types: run 'cargo xtask generate' and commit the result" >&2
  exit 1
fi

echo "all checks passed" >&2
