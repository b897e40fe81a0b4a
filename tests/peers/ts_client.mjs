// Test peer: a CLI MCP client on the official TypeScript SDK (@modelcontextprotocol/sdk 1.32.2)
// over Streamable HTTP. Handshake era only (the TS SDK's latest version is 2025-11-25).
//
//   PEERS_NODE_MODULES=... node tests/peers/ts_client.mjs --url http://127.0.0.1:PORT/mcp \
//       [--era handshake] [--token T] [--header K=V ...] [--timeout S] ACTION ...
//
// Actions (same interface as py_client.py):
//   connect                      print server version / capabilities after initialize
//   list-tools                   print the tools/list result
//   call TOOL JSON_ARGS          print the tools/call result
//   call-progress [--steps N] [--delay S] [--tool NAME] [--args JSON]
//                                call slow_steps (default) with onprogress; print one {"progress": ...}
//                                line per notification as it arrives, then the result.
//                                server-everything: --tool trigger-long-running-operation
//                                                   --args '{"duration":3,"steps":3}'
// Output: one JSON object per line on stdout:
//   {"result": ...} | {"progress": p, "total": t, "message": m, "time": unix, "elapsed": s}
//   {"error": {"code", "message", "data"}}   McpError as the SDK surfaces it (exit 3)
//   {"failure": {"type", "message", "status"?}}  anything else, e.g. a non-2xx HTTP status (exit 1)
// The SDK is loaded from $PEERS_NODE_MODULES (set by scripts/peers.sh / env.sh).

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import process from 'node:process';

const nm = process.env.PEERS_NODE_MODULES;
if (!nm) {
  console.error('PEERS_NODE_MODULES is not set (source $CACHE/peers/env.sh or eval "$(scripts/peers.sh)")');
  process.exit(1);
}
const sdk = (p) => import(pathToFileURL(join(nm, '@modelcontextprotocol/sdk/dist/esm', p)).href);
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');
const { McpError } = await sdk('types.js');

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function usage(msg) {
  console.error(`ts_client.mjs: ${msg}`);
  process.exit(1);
}

function parseArgs(argv) {
  const o = { era: 'handshake', headers: {}, timeout: 60, steps: 3, delay: 0.5, tool: 'slow_steps', rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--url') o.url = next();
    else if (a === '--era') o.era = next();
    else if (a === '--token') o.token = next();
    else if (a === '--header') {
      const kv = next();
      const j = kv.indexOf('=');
      if (j < 0) usage(`--header wants K=V, got ${kv}`);
      o.headers[kv.slice(0, j).trim()] = kv.slice(j + 1);
    } else if (a === '--timeout') o.timeout = Number(next());
    else if (a === '--steps') o.steps = Number(next());
    else if (a === '--delay') o.delay = Number(next());
    else if (a === '--tool') o.tool = next();
    else if (a === '--args') o.jsonArgs = next();
    else o.rest.push(a);
  }
  if (!o.url) usage('--url is required');
  if (o.era !== 'handshake') usage('the TypeScript SDK 1.32.2 speaks the handshake era only');
  o.action = o.rest[0];
  if (!['connect', 'list-tools', 'call', 'call-progress'].includes(o.action)) usage(`unknown action ${o.action}`);
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const headers = { ...o.headers };
  if (o.token) headers['Authorization'] = `Bearer ${o.token}`;
  const transport = new StreamableHTTPClientTransport(new URL(o.url), { requestInit: { headers } });
  const client = new Client({ name: 'mcp-runtime-ts-peer', version: '0.1.0' });
  const reqOpts = { timeout: o.timeout * 1000 };
  try {
    await client.connect(transport, reqOpts);
    if (o.action === 'connect') {
      emit({
        result: {
          protocolVersion: transport.protocolVersion,
          sessionId: transport.sessionId,
          serverInfo: client.getServerVersion(),
          capabilities: client.getServerCapabilities(),
        },
      });
    } else if (o.action === 'list-tools') {
      emit({ result: await client.listTools(undefined, reqOpts) });
    } else if (o.action === 'call') {
      const args = JSON.parse(o.rest[2] ?? '{}');
      if (!o.rest[1]) usage('call TOOL JSON_ARGS');
      emit({ result: await client.callTool({ name: o.rest[1], arguments: args }, undefined, reqOpts) });
    } else {
      const args = o.jsonArgs ? JSON.parse(o.jsonArgs) : { steps: o.steps, delay: o.delay };
      const start = performance.now();
      const elapsed = () => Math.round(performance.now() - start) / 1000;
      const result = await client.callTool({ name: o.tool, arguments: args }, undefined, {
        ...reqOpts,
        resetTimeoutOnProgress: true,
        onprogress: (p) =>
          emit({
            progress: p.progress,
            total: p.total ?? null,
            message: p.message ?? null,
            time: Math.round(Date.now()) / 1000,
            elapsed: elapsed(),
          }),
      });
      emit({ result, elapsed: elapsed() });
    }
    await transport.terminateSession().catch(() => {});
    await client.close();
    return 0;
  } catch (e) {
    await client.close().catch(() => {});
    if (e instanceof McpError) {
      emit({ error: { code: e.code, message: e.message, data: e.data ?? null } });
      return 3;
    }
    let message = String(e?.message ?? e);
    if (message.length > 500) message = message.slice(0, 500) + '...';
    const failure = { type: e?.constructor?.name ?? typeof e, message };
    if (typeof e?.code === 'number') failure.status = e.code;
    emit({ failure });
    return 1;
  }
}

process.exitCode = await main();
