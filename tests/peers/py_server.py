"""Test peer: an MCP server built on the official Python SDK (mcp 2.x, `MCPServer`).

Serves Streamable HTTP on http://127.0.0.1:PORT/mcp and answers both protocol eras on the
same endpoint (handshake era up to 2025-11-25 with `initialize` + `Mcp-Session-Id`, and the
stateless 2026-07-28 era with `server/discover`).

    $PEERS_PYTHON tests/peers/py_server.py [PORT]     # or PORT=... / PY_SERVER_PORT=...

Tools:
    echo(text) -> text
    add(a, b) -> a + b
    upper(text) -> TEXT
    delete_record(id) -> "deleted <id>"       (a "dangerous" tool for policy tests)
    slow_steps(steps, delay) -> "done <steps> steps"; sends one progress notification per step
    fail(code, message, data) -> never returns: raises a JSON-RPC error {code, message, data}

Prompts: greet(name), admin_prompt(). Resources: note://public, note://secret, and the template
note://items/{id}.

Every tool, prompt and resource it runs is logged to stderr as `INVOKED <kind> <name>`, so a test
can tell what reached the server (and what did not).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError

server = MCPServer(name="mcp-runtime-py-peer", version="0.1.0", log_level="WARNING")


def invoked(kind: str, name: str) -> None:
    print(f"INVOKED {kind} {name}", file=sys.stderr, flush=True)


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    invoked("tool", "echo")
    return text


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    invoked("tool", "add")
    return a + b


@server.tool()
def upper(text: str) -> str:
    """Upper-case the text."""
    invoked("tool", "upper")
    return text.upper()


@server.tool()
def delete_record(id: str) -> str:
    """Delete a record (does nothing; exists so policies have something to deny)."""
    invoked("tool", "delete_record")
    return f"deleted {id}"


@server.tool()
async def slow_steps(steps: int, delay: float, ctx: Context) -> str:
    """Sleep `delay` seconds per step, reporting progress after each step."""
    invoked("tool", "slow_steps")
    for i in range(1, steps + 1):
        await anyio.sleep(delay)
        await ctx.report_progress(i, steps, f"step {i}/{steps}")
    return f"done {steps} steps"


@server.tool()
def fail(code: int = -32000, message: str = "failed on purpose", data: dict[str, Any] | None = None) -> str:
    """Raise a JSON-RPC error with the given code, message and data."""
    invoked("tool", "fail")
    raise MCPError(code=code, message=message, data=data)


@server.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    invoked("prompt", "greet")
    return f"Say hello to {name}."


@server.prompt()
def admin_prompt() -> str:
    """A prompt only administrators may use."""
    invoked("prompt", "admin_prompt")
    return "You are root."


@server.resource("note://public")
def public_note() -> str:
    """A note anyone granted may read."""
    invoked("resource", "note://public")
    return "public note"


@server.resource("note://secret")
def secret_note() -> str:
    """A note few may read."""
    invoked("resource", "note://secret")
    return "secret note"


@server.resource("note://items/{id}")
def item_note(id: str) -> str:
    """A note per item."""
    invoked("resource", f"note://items/{id}")
    return f"item {id}"


def main() -> None:
    port = int(
        sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PY_SERVER_PORT", os.environ.get("PORT", "8931"))
    )
    print(f"py_server listening on http://127.0.0.1:{port}/mcp", file=sys.stderr, flush=True)
    server.run(transport="streamable-http", host="127.0.0.1", port=port, streamable_http_path="/mcp")


if __name__ == "__main__":
    main()
