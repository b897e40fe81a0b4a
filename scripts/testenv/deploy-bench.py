#!/usr/bin/env python3
"""Throughput of a running testenv by itself: N one-replica Deployments created at once, timed.

    scripts/testenv/deploy-bench.py DIR [N]     (N defaults to 1000)

DIR is a testenv started with scripts/testenv/start.sh (use MCP_TESTENV_NODES=2 for N > 1000: a
kwok node holds 1000 pods). Creates namespaces bench-0..bench-9 and N Deployments spread over them
(32 creates in flight, as the admin), waits until every one has an available replica (limit
900 s), then prints when each stage happened, from the objects' own timestamps (1 s
resolution): ReplicaSet created, Pod created, Pod scheduled, Pod Ready, Deployment available.
This measures the controller-manager, scheduler and kwok without the operator (docs/testenv.md,
"Client rate limits"). It leaves the objects behind: run it on a throwaway testenv.
Python standard library only.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    d = Path(argv[1])
    n = int(argv[2]) if len(argv) == 3 else 1000
    env = dict(line.split("=", 1) for line in (d / "env").read_text().split())
    url, token = env["MCP_TESTENV_API_URL"], env["MCP_TESTENV_ADMIN_TOKEN"]
    ctx = ssl.create_default_context(cafile=env["MCP_TESTENV_CA_FILE"])

    def req(method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        r = urllib.request.Request(url + path, data=data, method=method)
        r.add_header("Authorization", "Bearer " + token)
        r.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(r, context=ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    namespaces = [f"bench-{i}" for i in range(10)]
    for ns in namespaces:
        code, body = req("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        if code not in (201, 409):
            raise SystemExit(f"creating namespace {ns}: HTTP {code}: {body!r:.300}")
    time.sleep(3)  # the ServiceAccount controller fills the namespaces

    def deployment(i: int) -> dict:
        name = f"d{i}"
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "nodeSelector": {"type": "kwok"},
                        "tolerations": [
                            {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
                        ],
                        "containers": [{"name": "c", "image": "example.invalid/none:1"}],
                    },
                },
            },
        }

    t0_wall = int(time.time())
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(
            lambda i: req("POST", f"/apis/apps/v1/namespaces/{namespaces[i % 10]}/deployments", deployment(i))[0],
            range(n)))
    failed = [c for c in codes if c != 201]
    if failed:
        raise SystemExit(f"{len(failed)} creates failed (HTTP {sorted(set(failed))})")
    print(f"{n} Deployments created in {time.monotonic() - t0:.1f}s", flush=True)

    while True:
        available = 0
        for ns in namespaces:
            _, items = req("GET", f"/apis/apps/v1/namespaces/{ns}/deployments")
            available += sum(1 for x in items["items"] if x.get("status", {}).get("availableReplicas") == 1)
        elapsed = time.monotonic() - t0
        print(f"  {elapsed:6.1f}s  available {available}/{n}", flush=True)
        if available == n:
            break
        if elapsed > 900:
            print(f"RESULT deployments={n} all_available=not within 900s ({available})")
            return 1
        time.sleep(2)
    print(f"RESULT deployments={n} all_available={elapsed:.1f}s")

    def at(ts: str) -> float:
        t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        return t.timestamp() - t0_wall

    def true_since(obj: dict, kind: str) -> str | None:
        for c in obj.get("status", {}).get("conditions", []) or []:
            if c["type"] == kind and c["status"] == "True":
                return c.get("lastTransitionTime")
        return None

    stages: dict[str, list[float]] = {k: [] for k in (
        "ReplicaSet created", "Pod created", "Pod scheduled", "Pod Ready", "Deployment available")}
    for ns in namespaces:
        for rs in req("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")[1]["items"]:
            stages["ReplicaSet created"].append(at(rs["metadata"]["creationTimestamp"]))
        for pod in req("GET", f"/api/v1/namespaces/{ns}/pods")[1]["items"]:
            stages["Pod created"].append(at(pod["metadata"]["creationTimestamp"]))
            for stage, kind in (("Pod scheduled", "PodScheduled"), ("Pod Ready", "Ready")):
                if (ts := true_since(pod, kind)) is not None:
                    stages[stage].append(at(ts))
        for dep in req("GET", f"/apis/apps/v1/namespaces/{ns}/deployments")[1]["items"]:
            if (ts := true_since(dep, "Available")) is not None:
                stages["Deployment available"].append(at(ts))
    print("PHASES (s after the first create; p50 / p90 / last; count)")
    for name, v in stages.items():
        v.sort()
        if v:
            print(f"  {name:22} {v[len(v) // 2]:6.0f} {v[int((len(v) - 1) * 0.9)]:6.0f} {v[-1]:6.0f}   n={len(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
