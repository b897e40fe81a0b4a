"""Test peer: a CLI MCP client on the official Python SDK (mcp 2.x) over Streamable HTTP.

    $PEERS_PYTHON tests/peers/py_client.py --url http://127.0.0.1:PORT/mcp \
        [--era handshake|stateless] [--token T] [--header K=V ...] [--timeout S] ACTION ...

Actions:
    connect                      print the initialize / server/discover result
    list-tools                   print the tools/list result
    call TOOL JSON_ARGS          print the tools/call result
    list-prompts | list-resources | list-resource-templates
                                 print that list's result (every page joined)
    get-prompt NAME [JSON_ARGS]  print the prompts/get result
    read-resource URI            print the resources/read result
    call-progress [--steps N] [--delay S] [--tool NAME] [--args JSON]
                                 call slow_steps (default) with a progress callback; print one
                                 {"progress": ...} line per notification as it arrives, then the result

Era: `handshake` uses session.initialize() (2025-11-25, Mcp-Session-Id); `stateless` uses
session.discover() (server/discover, 2026-07-28, `_meta` on every request).

Output: one JSON object per line on stdout.
    result lines:  {"result": {...}}   (by_alias JSON dump of the SDK's result model)
    progress:      {"progress": p, "total": t, "message": m, "time": unix_ts, "elapsed": s}
    JSON-RPC error: {"error": {"code": c, "message": m, "data": d}}  (MCPError.error as surfaced)
    other failure:  {"failure": {"type": ..., "message": ...}}
Exit: 0 success (also for a tool result with isError), 3 JSON-RPC error, 1 other failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

try:
    import mcp_types as types  # mcp 2.x keeps its types in this package
except ImportError:  # pragma: no cover - older layouts
    from mcp import types


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def dump(model: Any) -> Any:
    if hasattr(model, "model_dump"):
        return model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return model


def find_exc(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """Find an exception of `kind` inside (possibly nested) exception groups / causes."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--era", choices=["handshake", "stateless"], default="handshake")
    p.add_argument("--token", help="sent as Authorization: Bearer TOKEN")
    p.add_argument("--header", action="append", default=[], metavar="K=V", help="extra HTTP header (repeatable)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request read timeout, seconds")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("connect")
    sub.add_parser("list-tools")
    sub.add_parser("list-prompts")
    sub.add_parser("list-resources")
    sub.add_parser("list-resource-templates")
    gp = sub.add_parser("get-prompt")
    gp.add_argument("name")
    gp.add_argument("json_args", nargs="?", default="{}")
    rr = sub.add_parser("read-resource")
    rr.add_argument("uri")
    c = sub.add_parser("call")
    c.add_argument("tool")
    c.add_argument("json_args", nargs="?", default="{}")
    cp = sub.add_parser("call-progress")
    cp.add_argument("--tool", default="slow_steps")
    cp.add_argument("--steps", type=int, default=3)
    cp.add_argument("--delay", type=float, default=0.5)
    cp.add_argument("--args", dest="json_args", help="JSON arguments (overrides --steps/--delay)")
    return p.parse_args(argv)


def build_headers(args: argparse.Namespace) -> dict[str, str]:
    headers: dict[str, str] = {}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    for kv in args.header:
        if "=" not in kv:
            raise SystemExit(f"--header wants K=V, got {kv!r}")
        k, v = kv.split("=", 1)
        headers[k.strip()] = v
    return headers


async def every_page(list_page: Any, field: str) -> dict[str, Any]:
    """A paginated list, all pages joined into the first page's result."""
    result = dump(await list_page())
    while result.get("nextCursor"):
        page = dump(await list_page(params=types.PaginatedRequestParams(cursor=result.pop("nextCursor"))))
        result[field].extend(page.get(field, []))
        if page.get("nextCursor"):
            result["nextCursor"] = page["nextCursor"]
    return result


async def run(args: argparse.Namespace) -> None:
    http = httpx2.AsyncClient(
        headers=build_headers(args),
        timeout=httpx2.Timeout(30.0, read=max(args.timeout, 1.0) + 5.0),
    )
    async with http, streamable_http_client(args.url, http_client=http) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=args.timeout) as session:
            if args.era == "handshake":
                connected = await session.initialize()
            else:
                connected = await session.discover()
            if args.action == "connect":
                emit({"result": dump(connected)})
            elif args.action == "list-tools":
                emit({"result": dump(await session.list_tools())})
            elif args.action == "list-prompts":
                emit({"result": await every_page(session.list_prompts, "prompts")})
            elif args.action == "list-resources":
                emit({"result": await every_page(session.list_resources, "resources")})
            elif args.action == "list-resource-templates":
                emit({"result": await every_page(session.list_resource_templates, "resourceTemplates")})
            elif args.action == "get-prompt":
                emit({"result": dump(await session.get_prompt(args.name, json.loads(args.json_args)))})
            elif args.action == "read-resource":
                emit({"result": dump(await session.read_resource(args.uri))})
            elif args.action == "call":
                emit({"result": dump(await session.call_tool(args.tool, json.loads(args.json_args)))})
            elif args.action == "call-progress":
                call_args = (
                    json.loads(args.json_args)
                    if args.json_args
                    else {"steps": args.steps, "delay": args.delay}
                )
                start = time.monotonic()

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    emit(
                        {
                            "progress": progress,
                            "total": total,
                            "message": message,
                            "time": round(time.time(), 3),
                            "elapsed": round(time.monotonic() - start, 3),
                        }
                    )

                result = await session.call_tool(args.tool, call_args, progress_callback=on_progress)
                emit({"result": dump(result), "elapsed": round(time.monotonic() - start, 3)})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
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
