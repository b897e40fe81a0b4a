"""Test peer: the official Python SDK's stdio client (mcp 2.x) driving a stdio MCP server, step by step.

    $PEERS_PYTHON tests/peers/stdio_client.py --era handshake|stateless --steps JSON \
        [--errlog FILE] [--timeout S] -- COMMAND [ARGS ...]

It launches COMMAND ARGS with `stdio_client(StdioServerParameters(...))` (the way an IDE launches
an MCP server), connects with `session.initialize()` (handshake era) or `session.discover()`
(`server/discover`, the stateless 2026-07-28 era: `_meta` on every request), then runs the steps
in order within that one session. The server's stderr goes to --errlog (default: this stderr).

Steps (a JSON list; each item one object):
    {"list_tools": true}                          tools/list
    {"call": TOOL, "args": {...}}                 tools/call
    {"call": TOOL, "args": {...}, "progress": true}
                                                  tools/call with a progress callback; the
                                                  notifications are reported with arrival times
    {"write": {"path": P, "text": T}}             replace file P with T atomically (temp + rename)
    {"sleep": SECONDS}

Output: one JSON object per line on stdout, for each step in order:
    {"step": i, "connected": {...}}               first line: the initialize / discover result
    {"step": i, "result": {...}}                  by_alias JSON dump of the SDK's result
    {"step": i, "error": {"code", "message", "data"}}   a JSON-RPC error (MCPError) from the server
    {"step": i, "progress": [{"progress", "total", "message", "elapsed"}, ...], "result": ...}
    {"step": i, "done": true}                     write / sleep
    {"failure": {"type", "message"}}              anything else; exit 1
A JSON-RPC error does not stop the run: later steps still run in the same session.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def dump(model: Any) -> Any:
    if hasattr(model, "model_dump"):
        return model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return model


def find_exc(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kind):
            return e
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        if e.__cause__ is not None:
            stack.append(e.__cause__)
    return None


def write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


async def run_step(session: ClientSession, i: int, step: dict[str, Any]) -> None:
    try:
        if "list_tools" in step:
            emit({"step": i, "result": dump(await session.list_tools())})
        elif "call" in step:
            args = step.get("args", {})
            if step.get("progress"):
                start = time.monotonic()
                seen: list[dict[str, Any]] = []

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    seen.append(
                        {
                            "progress": progress,
                            "total": total,
                            "message": message,
                            "elapsed": round(time.monotonic() - start, 3),
                        }
                    )

                result = await session.call_tool(step["call"], args, progress_callback=on_progress)
                emit({"step": i, "progress": seen, "result": dump(result)})
            else:
                emit({"step": i, "result": dump(await session.call_tool(step["call"], args))})
        elif "write" in step:
            write_atomically(step["write"]["path"], step["write"]["text"])
            emit({"step": i, "done": True})
        elif "sleep" in step:
            await anyio.sleep(float(step["sleep"]))
            emit({"step": i, "done": True})
        else:
            raise SystemExit(f"unknown step {step!r}")
    except MCPError as e:
        err = e.error
        emit({"step": i, "error": {"code": err.code, "message": err.message, "data": err.data}})


async def run(args: argparse.Namespace) -> None:
    steps = json.loads(args.steps)
    params = StdioServerParameters(command=args.command[0], args=args.command[1:])
    errlog = open(args.errlog, "a", encoding="utf-8") if args.errlog else sys.stderr
    try:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=args.timeout) as session:
                if args.era == "handshake":
                    connected = await session.initialize()
                else:
                    connected = await session.discover()
                emit({"step": 0, "connected": dump(connected)})
                for i, step in enumerate(steps, start=1):
                    await run_step(session, i, step)
    finally:
        if errlog is not sys.stderr:
            errlog.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--era", choices=["handshake", "stateless"], default="handshake")
    p.add_argument("--steps", default="[]", help="JSON list of steps")
    p.add_argument("--errlog", help="file for the server's stderr")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request read timeout, seconds")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS ...]")
    args = p.parse_args()
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        p.error("give the server command after --")
    try:
        anyio.run(run, args)
    except BaseException as exc:  # noqa: BLE001 - CLI boundary
        if isinstance(exc, (SystemExit, KeyboardInterrupt)) and not isinstance(exc, BaseExceptionGroup):
            raise
        mcp_err = find_exc(exc, MCPError)
        if mcp_err is not None:
            err = mcp_err.error  # type: ignore[attr-defined]
            emit({"error": {"code": err.code, "message": err.message, "data": err.data}})
            return 3
        inner = exc
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        emit({"failure": {"type": type(inner).__name__, "message": str(inner)}})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
