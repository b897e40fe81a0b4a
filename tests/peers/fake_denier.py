"""A fake MCP server (stdlib only) that answers the handshake / discover normally and then
denies a chosen request in a chosen HTTP shape, to see what the official clients surface.

    python3 tests/peers/fake_denier.py PORT

The client picks the shape per request with headers (py_client.py --header K=V):
    X-Deny-Mode: how to deny (default 200-json)
        401-www        401, WWW-Authenticate: Bearer ..., text/plain body
        401-json       401, WWW-Authenticate: Bearer ..., JSON-RPC error body
        403-json       403, application/json JSON-RPC error body
        403-plain      403, text/plain body
        200-json       200, application/json JSON-RPC error body
        200-sse        200, text/event-stream, one `message` event holding the JSON-RPC error
        403-json-nullid / 200-json-nullid   as above but the error's "id" is null
        400-json       400, application/json; charset=utf-8 JSON-RPC error body
        none           do not deny (answer tools/call with a text result)
    X-Deny-At: which JSON-RPC method to deny (default tools/call; `initialize`,
        `server/discover`, or `*` for every request)

The JSON-RPC error used everywhere:
    {"code": -32003, "message": "Forbidden by policy",
     "data": {"reason": "tool delete_record denied by policy p1", "policy": "p1"}}
"""

from __future__ import annotations

import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERROR = {
    "code": -32003,
    "message": "Forbidden by policy",
    "data": {"reason": "tool delete_record denied by policy p1", "policy": "p1"},
}
WWW = 'Bearer error="invalid_token", error_description="denied", resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource"'
TOOLS = [{"name": "delete_record", "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}}}]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def send(self, status: int, body: bytes, ctype: str | None, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send(405, b"", None, {"Allow": "POST, DELETE"})

    def do_DELETE(self):
        self.send(200, b"", None)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        msg = json.loads(raw)
        method = msg.get("method")
        if "id" not in msg:  # notification
            self.send(202, b"", None)
            return
        rid = msg["id"]
        mode = self.headers.get("X-Deny-Mode", "200-json")
        deny_at = self.headers.get("X-Deny-At", "tools/call")
        if mode != "none" and (deny_at == "*" or deny_at == method):
            self.deny(rid, mode)
            return
        extra: dict[str, str] = {}
        if method == "initialize":
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fake-denier", "version": "0"},
            }
            extra["Mcp-Session-Id"] = uuid.uuid4().hex
        elif method == "server/discover":
            result = {
                "supportedVersions": ["2026-07-28"],
                "capabilities": {"tools": {}},
                "resultType": "complete",
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "fake-denier", "version": "0"}},
            }
        elif method == "tools/list":
            result = {"tools": TOOLS, "resultType": "complete", "cacheScope": "private", "ttlMs": 0}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": "allowed"}], "isError": False, "resultType": "complete"}
        else:
            self.send(200, json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "nope"}}).encode(), "application/json")
            return
        self.send(200, json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode(), "application/json", extra)

    def deny(self, rid, mode: str) -> None:
        if mode.endswith("-nullid"):
            rid, mode = None, mode[: -len("-nullid")]
        err = json.dumps({"jsonrpc": "2.0", "id": rid, "error": ERROR}).encode()
        if mode == "401-www":
            self.send(401, b"unauthorized", "text/plain", {"WWW-Authenticate": WWW})
        elif mode == "401-json":
            self.send(401, err, "application/json", {"WWW-Authenticate": WWW})
        elif mode == "403-json":
            self.send(403, err, "application/json")
        elif mode == "400-json":
            self.send(400, err, "application/json; charset=utf-8")
        elif mode == "403-plain":
            self.send(403, b"forbidden by policy", "text/plain")
        elif mode == "200-json":
            self.send(200, err, "application/json")
        elif mode == "200-sse":
            self.send(200, b"event: message\ndata: " + err + b"\n\n", "text/event-stream")
        else:
            self.send(400, f"unknown X-Deny-Mode {mode}".encode(), "text/plain")


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8934
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"fake_denier on http://127.0.0.1:{port}/mcp", file=sys.stderr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
