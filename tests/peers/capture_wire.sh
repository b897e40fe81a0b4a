#!/usr/bin/env bash
# Reproduce the wire captures behind docs/notes/mcp-wire.md (about 2 minutes, loopback only).
#
#   tests/peers/capture_wire.sh [OUT_DIR]        # default: /tmp/mcp-wire-capture
#
# Starts (on free 127.0.0.1 ports) the Python peer server, server-everything, the fake denier and
# wirelog proxies in front of them; runs the peer clients through the proxies; writes readable
# transcripts (*.txt), JSON-lines logs (*.jsonl) and client outputs into OUT_DIR. Everything it
# started is stopped on exit (by PID).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:-/tmp/mcp-wire-capture}"
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/*.jsonl "$OUT"/*.out "$OUT"/*.log
rm -rf "$OUT/conformance-everything" "$OUT/conformance-py"
eval "$("$ROOT/scripts/peers.sh")"

log() { printf '[capture] %s\n' "$*" >&2; }
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  local port=$1 i
  for i in $(seq 1 100); do
    if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$port)))"; then return 0; fi
    sleep 0.1
  done
  log "port $port never opened"; return 1
}
start() { # start NAME CMD... ; remembers its PID
  local name=$1; shift
  "$@" >"$OUT/$name.log" 2>&1 &
  PIDS+=($!)
}
proxy() { # proxy NAME UPSTREAM_PORT -> sets P to the proxy's port (no subshell: PIDS must persist)
  local name=$1 up=$2
  P=$(free_port)
  start "proxy-$name" python3 "$HERE/wirelog.py" --listen "127.0.0.1:$P" --upstream "127.0.0.1:$up" \
    --log "$OUT/$name.jsonl" --text "$OUT/$name.txt"
  wait_port "$P"
}

PY_PORT=$(free_port); EV_PORT=$(free_port); FAKE_PORT=$(free_port)
start py-server "$PEERS_PYTHON" "$HERE/py_server.py" "$PY_PORT"
start everything env PORT="$EV_PORT" node "$SERVER_EVERYTHING" streamableHttp
start fake-denier python3 "$HERE/fake_denier.py" "$FAKE_PORT"
wait_port "$PY_PORT"; wait_port "$EV_PORT"; wait_port "$FAKE_PORT"

PYC=("$PEERS_PYTHON" "$HERE/py_client.py")
TSC=(node "$HERE/ts_client.mjs")
run() { # run OUTFILE CMD... : append the command line and its output
  local f=$1; shift
  { printf '$ %s\n' "$*"; "$@"; printf '[exit %s]\n\n' "$?"; } >>"$OUT/$f" 2>&1 || true
}

for era in handshake stateless; do
  log "py_client -> py_server, era $era"
  proxy "py-$era" "$PY_PORT"
  U="http://127.0.0.1:$P/mcp"
  run "py-$era.out" "${PYC[@]}" --url "$U" --era "$era" --token secret-token --header X-Tenant=acme list-tools
  run "py-$era.out" "${PYC[@]}" --url "$U" --era "$era" call echo '{"text":"hi"}'
  run "py-$era.out" "${PYC[@]}" --url "$U" --era "$era" call-progress --steps 3 --delay 0.5
  run "py-$era.out" "${PYC[@]}" --url "$U" --era "$era" call fail '{"code":-32003,"message":"denied","data":{"reason":"policy p1"}}'
  run "py-$era.out" "${PYC[@]}" --url "$U" --era "$era" call no_such_tool '{}'
done

log "ts_client -> server-everything"
proxy ts-everything "$EV_PORT"
U="http://127.0.0.1:$P/mcp"
run ts-everything.out "${TSC[@]}" --url "$U" --token secret-token list-tools
run ts-everything.out "${TSC[@]}" --url "$U" call echo '{"message":"hi"}'
run ts-everything.out "${TSC[@]}" --url "$U" call-progress --tool trigger-long-running-operation --args '{"duration":3,"steps":3}'

log "ts_client -> py_server"
proxy ts-py "$PY_PORT"
U="http://127.0.0.1:$P/mcp"
run ts-py.out "${TSC[@]}" --url "$U" call-progress --steps 2 --delay 0.3
run ts-py.out "${TSC[@]}" --url "$U" call fail '{"code":-32003,"message":"denied","data":{"reason":"policy p1"}}'

log "denial matrix against fake_denier"
U="http://127.0.0.1:$FAKE_PORT/mcp"
MODES="401-www 401-json 403-json 403-plain 400-json 200-json 200-sse 403-json-nullid 200-json-nullid 200-sse-nullid"
{
  for at in tools/call first; do
    for m in $MODES; do
      for who in py-handshake py-stateless ts-handshake; do
        case $who in
          py-handshake) c=("${PYC[@]}" --era handshake); first=initialize ;;
          py-stateless) c=("${PYC[@]}" --era stateless); first=server/discover ;;
          ts-handshake) c=("${TSC[@]}"); first=initialize ;;
        esac
        where=$at; [[ $at == first ]] && where=$first
        printf '%-13s deny-at=%-16s %-16s ' "$who" "$where" "$m"
        set +e
        timeout 30 "${c[@]}" --timeout 4 --url "$U" --header "X-Deny-Mode=$m" --header "X-Deny-At=$where" \
          call delete_record '{"id":"1"}' >"$OUT/.denial.tmp" 2>&1
        rc=$?
        set -e
        printf 'exit=%s %s\n' "$rc" "$(tail -n 1 "$OUT/.denial.tmp" | cut -c1-240)"
      done
    done
  done
} >"$OUT/denials.txt" 2>&1

log "raw probes"
python3 "$HERE/probe_server.py" "http://127.0.0.1:$PY_PORT/mcp" >"$OUT/probes-py.jsonl"
python3 "$HERE/probe_server.py" "http://127.0.0.1:$EV_PORT/mcp" >"$OUT/probes-everything.jsonl"

log "conformance suite"
for target in everything:$EV_PORT py:$PY_PORT; do
  name=${target%%:*}; port=${target##*:}
  start_ms=$(date +%s%3N)
  set +e
  "$PEERS_NODE22" "$CONFORMANCE" server --url "http://127.0.0.1:$port/mcp" -o "$OUT/conformance-$name" \
    >"$OUT/conformance-$name.txt" 2>&1
  rc=$?
  set -e
  end_ms=$(date +%s%3N)
  printf '[exit %s, %d ms]\n' "$rc" "$((end_ms - start_ms))" >>"$OUT/conformance-$name.txt"
done

rm -f "$OUT/.denial.tmp"
log "done: $OUT"
ls "$OUT" >&2
