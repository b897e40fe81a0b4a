#!/usr/bin/env bash
# Gateway benchmark, all on loopback in one run: a fast upstream called directly, through a null
# proxy (nginx passing bytes through with upstream keepalive) and through mcp-gateway with
# everything on (token auth, inspection, a policy of 10 000 grants, audit to a JSON-lines file).
# Needs nginx and wrk (apt-get install nginx-light wrk). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "building (release)..." >&2
cargo build -q --release -p mcp-runtime-gateway --bin mcp-gateway --example fast_upstream
cargo build -q --release -p mcp-runtime-cli
bin=target/release

UP=18080 NGINX=18081 GW=18082 ADMIN=18083
$bin/examples/fast_upstream 127.0.0.1:$UP & pids+=($!)

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  upstream mcp { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX;
    location / {
      proxy_pass http://mcp;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)

# A server with 10 000 grants (one per human, every tenth team-scoped) and sessions.
python3 - "$work" <<'PY'
import sys
out = open(sys.argv[1] + "/objects.yaml", "w")
out.write("""apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: bench, namespace: bench}
spec:
  image: bench
  tools: [{name: echo, sideEffect: read}]
  session: {required: true}
""")
for i in range(10000):
    subject = f"teamID: team-{i // 10}" if i % 10 == 0 else f"humanID: human-{i}"
    out.write(f"---\napiVersion: mcpruntime.org/v1alpha1\nkind: MCPAccessGrant\nmetadata: {{name: g{i}, namespace: bench}}\nspec: {{serverRef: {{name: bench}}, subject: {{{subject}}}, maxTrust: high, allowedSideEffects: [read]}}\n")
    out.write(f"---\napiVersion: mcpruntime.org/v1alpha1\nkind: MCPAgentSession\nmetadata: {{name: s{i}, namespace: bench}}\nspec: {{serverRef: {{name: bench}}, subject: {{humanID: human-{i}}}, consentedTrust: high, expiresAt: '2099-01-01T00:00:00Z'}}\n")
PY
$bin/mcp-runtime policy render -f "$work/objects.yaml" > "$work/policy.json"
$bin/mcp-runtime token keygen --out "$work/keys" >/dev/null 2>&1
token=$($bin/mcp-runtime token mint --key "$work/keys/token.key" --server bench/bench --human human-5001 --session s5001 --ttl 1h)
audit=(--audit-file "$work/audit.jsonl" --audit-spool-dir "$work/spool")
[ "${AUDIT:-on}" = off ] && audit=()
$bin/mcp-gateway --listen 127.0.0.1:$GW --admin-listen 127.0.0.1:$ADMIN --upstream http://127.0.0.1:$UP \
  --policy-file "$work/policy.json" --token-public-keys-file "$work/keys/token.pub" "${audit[@]}" 2>"$work/gateway.log" & gw=$!; pids+=($gw)

for port in $UP $NGINX $GW; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$ADMIN/ready)" = 200 ] && break; sleep 0.1; done

cat > "$work/call.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "application/json, text/event-stream"
wrk.headers["mcp-protocol-version"] = "2025-11-25"
wrk.headers["authorization"] = "Bearer $token"
LUA
# The gateway must really allow the call.
curl -s -X POST "http://127.0.0.1:$GW/mcp" -H 'content-type: application/json' -H "authorization: Bearer $token" \
  -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}' | grep -q pong

rss() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }
hwm() { awk '/^VmHWM/ {print $2}' /proc/"$1"/status; }
idle_rss=$(rss $gw)

echo "| target | connections | requests/s | p50 | p99 |"
echo "|---|---|---|---|---|"
for c in 16 64; do
  for target in direct:$UP nginx:$NGINX gateway:$GW; do
    name=${target%%:*}; port=${target##*:}
    out=$(wrk -t2 -c$c -d"$DURATION" --latency -s "$work/call.lua" "http://127.0.0.1:$port/mcp")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    echo "| $name | $c | $rps | $p50 | $p99 |"
  done
done
echo
echo "gateway RSS: idle $((idle_rss / 1024)) MiB, peak under load $(( $(hwm $gw) / 1024 )) MiB"
[ -f "$work/audit.jsonl" ] && echo "audit events written: $(wc -l < "$work/audit.jsonl")"
