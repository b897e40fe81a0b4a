#!/usr/bin/env bash
# Sentinel's figures for docs/benchmarks.md, each against a baseline of the same run (release
# builds, real Kafka KRaft broker, real ClickHouse, real gateway):
#   1. ingest into Kafka: events per CPU-second of `mcp-sentinel --role ingest` against the raw
#      producer (the same librdkafka settings, fed parsed records in-process);
#   2. decision -> visible in the analytics API, embedded (SQLite) and scale (Kafka +
#      ClickHouse), against the gateway's own answer time; peak RSS of each component;
#   3. the stores' query latencies: SQLite over 1 M events, ClickHouse over 10 M.
# Needs what scripts/sentinel-deps.sh installs. Sizes: MCP_BENCH_EVENTS (200000),
# MCP_BENCH_CALLS (200), SQLITE_EVENTS (1000000), CLICKHOUSE_EVENTS (10000000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/sentinel-deps.sh >&2

echo "building (release)..." >&2
cargo build -q --release -p mcp-runtime-gateway --bin mcp-gateway
cargo test -q --release -p mcp-runtime-sentinel --test figures --no-run

echo "## ingest and latency ($(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
cargo test -q --release -p mcp-runtime-sentinel --test figures -- \
  --ignored --nocapture --test-threads 1 2>&1 | grep -v '^test \|^running\|^$\|test result'

echo "## stores"
cargo run -q --release -p mcp-runtime-sentinel --example bench_store -- sqlite "${SQLITE_EVENTS:-1000000}"
cargo run -q --release -p mcp-runtime-sentinel --example bench_store -- clickhouse "${CLICKHOUSE_EVENTS:-10000000}" --synthetic
