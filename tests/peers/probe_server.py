"""Send hand-made (often malformed) Streamable HTTP requests to an MCP server and print what
comes back: one JSON line per probe with status, headers of interest and body. Stdlib only.

    python3 tests/peers/probe_server.py http://127.0.0.1:PORT/mcp [--only NAME]

Probes the header rules of the stateless era (2026-07-28: MCP-Protocol-Version, Mcp-Method,
Mcp-Name, params._meta), JSON-RPC batches in both eras, and session handling in the
handshake era (2025-11-25).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

V_NEW = "2026-07-28"
V_OLD = "2025-11-25"
META = {
    "io.modelcontextprotocol/protocolVersion": V_NEW,
    "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
ACCEPT = "application/json, text/event-stream"


def call_body(rid: Any, name: str, args: dict[str, Any], meta: dict[str, Any] | None = META) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": args}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


def new_headers(method: str | None = "tools/call", name: str | None = "echo", version: str | None = V_NEW) -> dict[str, str]:
    h = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if version is not None:
        h["MCP-Protocol-Version"] = version
    if method is not None:
        h["Mcp-Method"] = method
    if name is not None:
        h["Mcp-Name"] = name
    return h


class Prober:
    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.host, self.port, self.path = u.hostname or "127.0.0.1", u.port or 80, u.path or "/mcp"

    def req(self, verb: str, headers: dict[str, str], body: Any = None, raw: bytes | None = None) -> dict[str, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        t0 = time.monotonic()
        conn.request(verb, self.path, body=data, headers=headers)
        r = conn.getresponse()
        payload = r.read().decode("utf-8", "replace")
        conn.close()
        ctype = r.getheader("content-type", "")
        parsed: Any = payload
        if ctype.startswith("application/json") and payload:
            try:
                parsed = json.loads(payload)
            except ValueError:
                pass
        elif ctype.startswith("text/event-stream"):
            parsed = [
                json.loads(line[5:].strip()) if line.startswith("data:") and line[5:].strip() else line
                for line in payload.splitlines()
                if line.strip()
            ]
        keep = {k: v for k, v in r.getheaders() if k.lower() not in ("date", "server", "content-length", "transfer-encoding")}
        return {"status": r.status, "headers": keep, "body": parsed, "secs": round(time.monotonic() - t0, 3)}

    def handshake(self) -> str:
        body = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": V_OLD, "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}},
        }
        r = self.req("POST", {"Accept": ACCEPT, "Content-Type": "application/json"}, body)
        sid = r["headers"].get("mcp-session-id") or r["headers"].get("Mcp-Session-Id")
        assert sid, r
        self.req(
            "POST",
            {"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": sid, "MCP-Protocol-Version": V_OLD},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
        )
        return sid


def probes(p: Prober) -> list[tuple[str, Any]]:
    """(name, thunk) pairs; each thunk returns the probe's request description and response."""
    out: list[tuple[str, Any]] = []

    def add(name: str):
        def deco(fn):
            out.append((name, fn))
            return fn

        return deco

    # ---- stateless era (2026-07-28)
    @add("new/ok")
    def _():
        return p.req("POST", new_headers(), call_body(1, "echo", {"text": "x"}))

    @add("new/mcp-name-mismatch")
    def _():
        return p.req("POST", new_headers(name="upper"), call_body(1, "echo", {"text": "x"}))

    @add("new/mcp-method-mismatch")
    def _():
        return p.req("POST", new_headers(method="tools/list"), call_body(1, "echo", {"text": "x"}))

    @add("new/mcp-name-missing")
    def _():
        return p.req("POST", new_headers(name=None), call_body(1, "echo", {"text": "x"}))

    @add("new/mcp-method-missing")
    def _():
        return p.req("POST", new_headers(method=None), call_body(1, "echo", {"text": "x"}))

    @add("new/version-header-missing")
    def _():
        return p.req("POST", new_headers(version=None), call_body(1, "echo", {"text": "x"}))

    @add("new/meta-missing")
    def _():
        return p.req("POST", new_headers(), call_body(1, "echo", {"text": "x"}, meta=None))

    @add("new/header-version-old-meta-new")
    def _():
        return p.req("POST", new_headers(version=V_OLD), call_body(1, "echo", {"text": "x"}))

    @add("new/mcp-name-case-insensitive-value")
    def _():
        return p.req("POST", new_headers(name="ECHO"), call_body(1, "echo", {"text": "x"}))

    @add("new/tools-list-with-mcp-name")
    def _():
        h = new_headers(method="tools/list", name="echo")
        return p.req("POST", h, {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}})

    @add("new/unknown-version")
    def _():
        meta = dict(META)
        meta["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
        return p.req("POST", new_headers(version="2099-01-01"), call_body(1, "echo", {"text": "x"}, meta=meta))

    @add("new/accept-json-only")
    def _():
        h = new_headers(name="slow_steps")
        h["Accept"] = "application/json"
        meta = dict(META, progressToken="p1")
        return p.req("POST", h, call_body(1, "slow_steps", {"steps": 2, "delay": 0.1}, meta=meta))

    @add("new/accept-missing")
    def _():
        h = new_headers()
        del h["Accept"]
        return p.req("POST", h, call_body(1, "echo", {"text": "x"}))

    @add("new/batch")
    def _():
        h = new_headers(name=None)
        return p.req("POST", h, [call_body(1, "echo", {"text": "a"}), call_body(2, "echo", {"text": "b"})])

    @add("new/notification-initialized")
    def _():
        h = new_headers(method="notifications/initialized", name=None)
        return p.req("POST", h, {"jsonrpc": "2.0", "method": "notifications/initialized", "params": {"_meta": META}})

    @add("new/get")
    def _():
        return p.req("GET", {"Accept": "text/event-stream", "MCP-Protocol-Version": V_NEW})

    @add("new/delete")
    def _():
        return p.req("DELETE", {"MCP-Protocol-Version": V_NEW})

    # ---- legacy request without a session
    @add("old/no-session-tools-call")
    def _():
        h = {"Accept": ACCEPT, "Content-Type": "application/json"}
        return p.req("POST", h, call_body(1, "echo", {"text": "x"}, meta=None))

    # ---- handshake era (2025-11-25)
    @add("old/mcp-name-mismatch")
    def _():
        sid = p.handshake()
        h = {"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": sid,
             "MCP-Protocol-Version": V_OLD, "Mcp-Method": "tools/call", "Mcp-Name": "upper"}
        return p.req("POST", h, call_body(1, "echo", {"text": "x"}, meta=None))

    @add("old/batch")
    def _():
        sid = p.handshake()
        h = {"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": sid, "MCP-Protocol-Version": V_OLD}
        return p.req("POST", h, [call_body(1, "echo", {"text": "a"}, meta=None), call_body(2, "echo", {"text": "b"}, meta=None)])

    @add("old/batch-initialize")
    def _():
        body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": V_OLD, "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}}}
        return p.req("POST", {"Accept": ACCEPT, "Content-Type": "application/json"}, [body])

    @add("old/wrong-session")
    def _():
        h = {"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": "deadbeef", "MCP-Protocol-Version": V_OLD}
        return p.req("POST", h, call_body(1, "echo", {"text": "x"}, meta=None))

    @add("old/session-missing-version-header")
    def _():
        sid = p.handshake()
        h = {"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": sid}
        return p.req("POST", h, call_body(1, "echo", {"text": "x"}, meta=None))

    @add("old/initialize-accept-json-only")
    def _():
        body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": V_OLD, "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}}}
        return p.req("POST", {"Accept": "application/json", "Content-Type": "application/json"}, body)

    @add("old/get-no-session")
    def _():
        return p.req("GET", {"Accept": "text/event-stream"})

    @add("old/delete-then-use")
    def _():
        sid = p.handshake()
        h = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": V_OLD}
        d = p.req("DELETE", h)
        h2 = {"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": sid, "MCP-Protocol-Version": V_OLD}
        return {"delete": d, "after": p.req("POST", h2, call_body(1, "echo", {"text": "x"}, meta=None))}

    @add("invalid-json")
    def _():
        return p.req("POST", new_headers(method=None, name=None), raw=b"{not json")

    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--only", action="append")
    a = ap.parse_args()
    p = Prober(a.url)
    for name, fn in probes(p):
        if a.only and name not in a.only:
            continue
        try:
            res = fn()
        except Exception as e:  # noqa: BLE001
            res = {"exception": f"{type(e).__name__}: {e}"}
        print(json.dumps({"probe": name, **(res if "status" in res else {"result": res})}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
