"""Test double: an MCP server that answers the way a broken or malicious one could, for the
gateway's fail-closed tests (faults the official SDK servers never produce). Stdlib only.

    python3 tests/peers/hostile_server.py PORT

Every answer lists two tools, `echo` and `delete_record`, so a filter that fails open shows
`delete_record`. How it answers a POST depends on the request's `x-hostile` header:

    (absent)   JSON, the matching id
    gzip       JSON compressed with gzip whatever the request's Accept-Encoding says
    wrong-id   JSON whose id is not the request's
    lone-cr    an SSE stream whose lines end with a lone CR
    garbage    an SSE event whose data is not JSON
    huge       one SSE event of 64 KiB without an end
    batch      a JSON array answering every request of a batch

GET answers with an SSE stream replaying a tools/list answer (as after `Last-Event-ID`).
Each request is logged to stderr as one JSON line: method, path, the headers that matter, body.
"""

from __future__ import annotations

import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object"}},
    {"name": "delete_record", "inputSchema": {"type": "object"}},
]
LOGGED = ("content-type", "content-length", "transfer-encoding", "accept-encoding", "x-mcp-human-id", "x_mcp_human_id")


def answer(message: dict) -> dict:
    method = message.get("method", "")
    if method == "tools/list":
        result: dict = {"tools": TOOLS}
    elif method == "prompts/list":
        result = {"prompts": [{"name": "greet"}, {"name": "admin_prompt"}]}
    elif method == "resources/list":
        result = {"resources": [{"uri": "note://public", "name": "p"}, {"uri": "note://secret", "name": "s"}]}
    else:
        result = {"content": [{"type": "text", "text": f"ran {method}"}]}
    return {"jsonrpc": "2.0", "id": message.get("id"), "result": result}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:  # noqa: D401 - quiet default logging
        pass

    def _log(self, body: bytes) -> None:
        headers = {k: self.headers.get_all(k) for k in LOGGED if self.headers.get_all(k)}
        print(
            json.dumps({"method": self.command, "path": self.path, "headers": headers, "body": body.decode("utf-8", "replace")}),
            file=sys.stderr,
            flush=True,
        )

    def _send(self, status: int, content_type: str, body: bytes, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        self._log(body)
        mode = self.headers.get("x-hostile", "")
        message = json.loads(body)
        if isinstance(message, list):
            answers = [answer(m) for m in message if "id" in m]
            self._send(200, "application/json", json.dumps(answers).encode())
            return
        if "id" not in message:
            self._send(202, "application/json", b"")
            return
        reply = answer(message)
        if mode == "gzip":
            self._send(200, "application/json", gzip.compress(json.dumps(reply).encode()), {"content-encoding": "gzip"})
        elif mode == "wrong-id":
            reply["id"] = "not-yours"
            self._send(200, "application/json", json.dumps(reply).encode())
        elif mode == "lone-cr":
            stream = f"id: 1\revent: message\rdata: {json.dumps(reply)}\r\r".encode()
            self._send(200, "text/event-stream", stream)
        elif mode == "garbage":
            stream = b"event: message\ndata: {not json\n\n" + f"data: {json.dumps(reply)}\n\n".encode()
            self._send(200, "text/event-stream", stream)
        elif mode == "huge":
            self._send(200, "text/event-stream", b"data: " + b"x" * 65536)
        else:
            self._send(200, "application/json", json.dumps(reply).encode())

    def do_GET(self) -> None:
        self._log(b"")
        replay = {"jsonrpc": "2.0", "id": 7, "result": {"tools": TOOLS}}
        self._send(200, "text/event-stream", f"id: 1\ndata: {json.dumps(replay)}\n\n".encode())

    def do_DELETE(self) -> None:
        self._log(b"")
        self._send(200, "application/json", b"{}")


def main() -> None:
    port = int(sys.argv[1])
    print(f"hostile_server listening on http://127.0.0.1:{port}/mcp", file=sys.stderr, flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
