"""A tiny logging HTTP/1.1 reverse proxy for looking at MCP traffic on the wire (stdlib only).

    python3 tests/peers/wirelog.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:UPORT \
        [--log wire.jsonl] [--text wire.txt] [--max-body N] [--add-header "Name: value" ...]

Bytes are relayed verbatim in both directions (including chunked transfer coding and
keep-alive), so client and server see exactly what they would see without it. Alongside,
each exchange is decoded and logged:
    request:   method, path, every header (in order, as sent), body
    response:  status, every header, body; for text/event-stream each SSE event
               (event/id/data/retry fields) with its arrival time
`--add-header` sets a request header on every request (replacing one of that name), e.g. a
credential for a client that cannot send one (the conformance suite).
`--log` writes one JSON object per line; `--text` (default: stderr) a readable transcript.
Times are seconds since the proxy started ("t") and Unix time ("ts").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import Any, TextIO

T0 = time.monotonic()


class Logger:
    def __init__(self, jsonl: TextIO | None, text: TextIO, max_body: int) -> None:
        self.jsonl = jsonl
        self.text = text
        self.max_body = max_body

    def record(self, obj: dict[str, Any]) -> None:
        obj = {"t": round(time.monotonic() - T0, 3), "ts": round(time.time(), 3), **obj}
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(obj) + "\n")
            self.jsonl.flush()
        self.text.write(self.render(obj))
        self.text.flush()

    def body_text(self, body: bytes) -> str:
        s = body.decode("utf-8", "replace")
        if len(s) > self.max_body:
            s = s[: self.max_body] + f"... [{len(s)} chars]"
        return s

    def render(self, o: dict[str, Any]) -> str:
        head = f"[{o['t']:8.3f}] #{o['conn']}.{o['seq']} "
        kind = o["kind"]
        if kind == "request":
            lines = [head + f">>> {o['method']} {o['target']} {o['version']}"]
            lines += [f"    > {k}: {v}" for k, v in o["headers"]]
            if o.get("body"):
                lines.append("    > body: " + _show(o["body"]))
        elif kind == "response":
            lines = [head + f"<<< {o['status']} {o['reason']}"]
            lines += [f"    < {k}: {v}" for k, v in o["headers"]]
        elif kind == "sse":
            lines = [head + f"<<< SSE event (+{o['since_response']:.3f}s): {o['raw']!r}"]
        elif kind == "response-end":
            lines = [head + f"<<< end of response ({o['length']} body bytes, +{o['since_response']:.3f}s)"]
            if o.get("body") and not o.get("sse"):
                lines.append("    < body: " + _show(o["body"]))
        elif kind == "closed":
            lines = [head + f"--- connection closed ({o['reason']})"]
        else:
            lines = [head + json.dumps(o)]
        return "\n".join(lines) + "\n"


def _show(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))


class ConnClosed(Exception):
    pass


async def read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise ConnClosed() from None
        raise


def parse_head(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = raw.decode("latin-1").split("\r\n")
    start = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return start, headers


def hget(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


async def relay_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: list[tuple[str, str]],
    *,
    until_close: bool,
    on_data: Any = None,
) -> bytes:
    """Copy one message body from reader to writer verbatim; return the decoded body."""
    body = bytearray()

    async def push(raw: bytes, decoded: bytes) -> None:
        writer.write(raw)
        await writer.drain()
        if decoded:
            body.extend(decoded)
            if on_data is not None:
                on_data(decoded)

    te = (hget(headers, "transfer-encoding") or "").lower()
    cl = hget(headers, "content-length")
    if "chunked" in te:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                trailer = bytearray(size_line)
                while True:
                    line = await reader.readuntil(b"\r\n")
                    trailer.extend(line)
                    if line == b"\r\n":
                        break
                await push(bytes(trailer), b"")
                break
            data = await reader.readexactly(size + 2)
            await push(size_line + data, data[:-2])
    elif cl is not None:
        remaining = int(cl)
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise ConnClosed()
            remaining -= len(data)
            await push(data, data)
    elif until_close:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await push(data, data)
    return bytes(body)


def parse_body(body: bytes, log: Logger) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return log.body_text(body)


class SSEParser:
    """Incremental SSE parser: feed decoded body bytes, get complete events.

    The raw text of each event is kept as sent (CRLF or LF line endings; the Python SDK
    server uses CRLF, the TypeScript SDK server LF)."""

    _EOL = re.compile(r"\r\n|\n|\r")

    def __init__(self) -> None:
        self.buf = ""

    def feed(self, data: bytes) -> list[tuple[str, dict[str, Any]]]:
        self.buf += data.decode("utf-8", "replace")
        out = []
        pos = 0  # start of the event being collected
        cur = 0  # start of the next line to read
        lines: list[str] = []
        while True:
            m = self._EOL.search(self.buf, cur)
            if m is None or (m.group() == "\r" and m.end() == len(self.buf)):
                break  # incomplete line (a CRLF may be split across chunks)
            line = self.buf[cur : m.start()]
            cur = m.end()
            if line:
                lines.append(line)
                continue
            out.append((self.buf[pos:cur], self._fields(lines)))  # blank line: event complete
            pos, lines = cur, []
        self.buf = self.buf[pos:]
        return out

    @staticmethod
    def _fields(lines: list[str]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for line in lines:
            if line.startswith(":"):
                fields.setdefault("comment", []).append(line[1:].lstrip())
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                fields["data"] = (fields["data"] + "\n" + value) if "data" in fields else value
            else:
                fields[name] = value
        if "data" in fields:
            try:
                fields["data_json"] = json.loads(fields["data"])
            except ValueError:
                pass
        return fields


def with_headers(head: bytes, add: list[tuple[str, str]]) -> bytes:
    """The request head with each `add` header set (any of the same name removed first)."""
    if not add:
        return head
    lines = head.decode("latin-1").split("\r\n")
    names = {k.lower() for k, _ in add}
    kept = [lines[0]] + [l for l in lines[1:] if l and l.split(":", 1)[0].strip().lower() not in names]
    kept += [f"{k}: {v}" for k, v in add]
    return ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1")


ADD_HEADERS: list[tuple[str, str]] = []


async def handle(client_r, client_w, upstream: tuple[str, int], log: Logger, conn_id: int) -> None:
    up_r = up_w = None
    seq = 0
    try:
        up_r, up_w = await asyncio.open_connection(*upstream)
        while True:
            try:
                head = await read_head(client_r)
            except ConnClosed:
                return
            seq += 1
            start, headers = parse_head(head)
            method, target, version = (start.split(" ", 2) + ["", ""])[:3]
            head = with_headers(head, ADD_HEADERS)
            up_w.write(head)
            req_body = await relay_body(client_r, up_w, headers, until_close=False)
            log.record(
                {
                    "kind": "request",
                    "conn": conn_id,
                    "seq": seq,
                    "method": method,
                    "target": target,
                    "version": version,
                    "headers": headers,
                    "body": parse_body(req_body, log),
                }
            )
            # Response(s): skip 1xx interim responses.
            while True:
                rhead = await read_head(up_r)
                rstart, rheaders = parse_head(rhead)
                parts = rstart.split(" ", 2)
                status = int(parts[1])
                reason = parts[2] if len(parts) > 2 else ""
                client_w.write(rhead)
                await client_w.drain()
                t_resp = time.monotonic()
                log.record(
                    {
                        "kind": "response",
                        "conn": conn_id,
                        "seq": seq,
                        "status": status,
                        "reason": reason,
                        "headers": rheaders,
                    }
                )
                if status >= 200:
                    break
            ctype = (hget(rheaders, "content-type") or "").lower()
            is_sse = ctype.startswith("text/event-stream")
            sse = SSEParser()

            def on_data(data: bytes) -> None:
                if not is_sse:
                    return
                for raw, fields in sse.feed(data):
                    log.record(
                        {
                            "kind": "sse",
                            "conn": conn_id,
                            "seq": seq,
                            "since_response": round(time.monotonic() - t_resp, 3),
                            "raw": raw,
                            "fields": fields,
                        }
                    )

            no_body = method == "HEAD" or status in (204, 304)
            conn_close = (hget(rheaders, "connection") or "").lower() == "close"
            body = b""
            if not no_body:
                body = await relay_body(up_r, client_w, rheaders, until_close=True, on_data=on_data)
            log.record(
                {
                    "kind": "response-end",
                    "conn": conn_id,
                    "seq": seq,
                    "since_response": round(time.monotonic() - t_resp, 3),
                    "length": len(body),
                    "sse": is_sse,
                    "body": None if is_sse else parse_body(body, log),
                }
            )
            if conn_close or (
                not no_body and hget(rheaders, "content-length") is None
                and "chunked" not in (hget(rheaders, "transfer-encoding") or "").lower()
            ):
                return
    except (ConnClosed, ConnectionError, asyncio.IncompleteReadError) as e:
        log.record({"kind": "closed", "conn": conn_id, "seq": seq, "reason": type(e).__name__})
    finally:
        for w in (client_w, up_w):
            if w is not None:
                try:
                    w.close()
                except Exception:  # noqa: BLE001
                    pass


async def amain(args: argparse.Namespace) -> None:
    lhost, lport = args.listen.rsplit(":", 1)
    uhost, uport = args.upstream.rsplit(":", 1)
    jsonl = open(args.log, "a", buffering=1) if args.log else None
    text = open(args.text, "a", buffering=1) if args.text else sys.stderr
    log = Logger(jsonl, text, args.max_body)
    counter = 0

    async def on_conn(r, w):
        nonlocal counter
        counter += 1
        await handle(r, w, (uhost, int(uport)), log, counter)

    server = await asyncio.start_server(on_conn, lhost, int(lport))
    print(f"wirelog: {args.listen} -> {args.upstream}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    p.add_argument("--log", help="append JSON lines here")
    p.add_argument("--text", help="append the readable transcript here (default stderr)")
    p.add_argument("--max-body", type=int, default=4000, help="truncate non-JSON bodies in the log")
    p.add_argument("--add-header", action="append", default=[], metavar="NAME: VALUE", help="set this request header (repeatable)")
    args = p.parse_args()
    for h in args.add_header:
        name, _, value = h.partition(":")
        ADD_HEADERS.append((name.strip(), value.strip()))
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
