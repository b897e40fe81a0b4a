#!/usr/bin/env python3
"""Start/stop a real, loopback-only Kubernetes control plane for tests.

    testenv.py start DIR    etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok,
                            one kwok fake Node; writes DIR/kubeconfig and DIR/env
    testenv.py stop DIR     kill everything started for DIR and remove its state
    testenv.py status DIR   show which components are alive (exit 1 if any is not)

With MCP_TESTENV_WATCH_PID=PID, start also leaves a watchdog that stops the testenv once PID exits
(for test processes that cannot reliably run stop.sh, e.g. a static shared cluster in cargo test).

Binaries come from scripts/testenv/install.sh (cache: ${MCP_RUNTIME_CACHE:-~/.cache/mcp-runtime}).
Only the Python standard library and `openssl` are needed. See docs/testenv.md.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"

# Addresses handed to the cluster. Nothing is ever sent to them: there is no kube-proxy, no CNI and
# no kubelet; kwok only writes them into Node/Pod status. The node address is on loopback, so the
# apiserver's node proxy (kubectl logs/exec) refuses it instead of going anywhere. Pod IPs cannot be
# loopback because EndpointSlice validation rejects loopback endpoints; tests must never connect to
# pod or service IPs (talk to the API server only).
NODE_IP = os.environ.get("MCP_TESTENV_NODE_IP", "127.0.0.1")
POD_CIDR = os.environ.get("MCP_TESTENV_POD_CIDR", "10.244.0.1/16")
SERVICE_CIDR = os.environ.get("MCP_TESTENV_SERVICE_CIDR", "10.96.0.0/16")

NODE_COUNT = int(os.environ.get("MCP_TESTENV_NODES", "1"))
TIMEOUT_SCALE = float(os.environ.get("MCP_TESTENV_TIMEOUT_SCALE", "1"))
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

# Client-side rate limits and worker counts of the controller-manager and the scheduler (see
# docs/testenv.md, "Client rate limits"); the upstream defaults are 20/30/5 and 50/100.
KCM_QPS, KCM_BURST, KCM_WORKLOAD_SYNCS = 300, 500, 25
SCHEDULER_QPS, SCHEDULER_BURST = 300, 500

COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]


def log(msg: str) -> None:
    print(f"[testenv {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class StartError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# versions / binaries


def pinned_versions() -> dict[str, str]:
    """Read the pinned versions from install.sh, the single source of truth."""
    text = (HERE / "install.sh").read_text()
    out = {}
    for key in ("K8S_VERSION", "ETCD_VERSION", "KWOK_VERSION"):
        m = re.search(rf'^{key}="([^"]+)"', text, re.M)
        if not m:
            raise SystemExit(f"cannot find {key} in {HERE / 'install.sh'}")
        out[key] = m.group(1)
    return out


def bin_dir(versions: dict[str, str]) -> Path:
    if os.environ.get("MCP_TESTENV_BIN"):
        return Path(os.environ["MCP_TESTENV_BIN"])
    cache = os.environ.get("MCP_RUNTIME_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mcp-runtime")
    return Path(cache) / "testenv" / versions["K8S_VERSION"] / "bin"


# ---------------------------------------------------------------------------------------------
# processes


def proc_state(pid: int) -> str | None:
    """'R', 'S', 'Z', ... or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def proc_starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[19]


def alive(pid: int, starttime: str | None = None) -> bool:
    st = proc_state(pid)
    if st is None or st in ("Z", "X"):
        return False
    if starttime is not None and proc_starttime(pid) != starttime:
        return False  # pid was reused by something else
    return True


def read_pids(d: Path) -> list[tuple[str, int, str]]:
    f = d / "pids"
    if not f.exists():
        return []
    out = []
    for line in f.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((parts[0], int(parts[1]), parts[2]))
    return out


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in lines[-n:])


class Launcher:
    def __init__(self, d: Path):
        self.dir = d
        self.logs = d / "logs"
        self.procs: dict[str, subprocess.Popen] = {}

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        logf = open(self.logs / f"{name}.log", "ab")
        logf.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(args)}\n".encode())
        logf.flush()
        p = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,  # own session + process group: stop kills the group
            close_fds=True,
        )
        logf.close()
        self.procs[name] = p
        start = proc_starttime(p.pid) or "-"
        with open(self.dir / "pids", "a") as f:
            f.write(f"{name} {p.pid} {start}\n")
        return p

    def check_alive(self, *names: str) -> None:
        for name in names or tuple(self.procs):
            p = self.procs.get(name)
            if p is not None and p.poll() is not None:
                raise StartError(
                    f"{name} exited with code {p.returncode} during startup; last lines of "
                    f"{self.logs / (name + '.log')}:\n{tail(self.logs / (name + '.log'))}"
                )

    def forget(self, name: str) -> None:
        self.procs.pop(name, None)
        lines = [l for l in (self.dir / "pids").read_text().splitlines() if not l.startswith(name + " ")]
        (self.dir / "pids").write_text("".join(l + "\n" for l in lines))


# Stop order and SIGTERM grace per stage. The clients go first; kube-apiserver, once its clients
# are gone, still waits up to --request-timeout (60 s) for its own loopback watches before it
# exits, which a throwaway test cluster does not need: it gets 2 s, then SIGKILL.
STOP_STAGES = [
    (("kwok", "kube-scheduler", "kube-controller-manager"), 5.0),
    (("kube-apiserver",), 2.0),
    (("etcd",), 5.0),
]


def _signal(pid: int, sig: int) -> None:
    for fn in (os.killpg, os.kill):  # the component's process group, else the process
        try:
            fn(pid, sig)
            return
        except (ProcessLookupError, PermissionError):
            continue


def kill_all(d: Path, grace_scale: float = 1.0) -> None:
    entries = [e for e in read_pids(d) if e[1] != os.getpid()]  # the watchdog may be the caller
    known = {n for stage, _ in STOP_STAGES for n in stage}
    stages = list(STOP_STAGES) + [(tuple(n for n, _, _ in entries if n not in known), 5.0)]
    for names, grace in stages:
        live = [(n, p, None if s == "-" else s) for (n, p, s) in entries if n in names]
        live = [(n, p, s) for (n, p, s) in live if alive(p, s)]
        if not live:
            continue
        for _, pid, _ in live:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace * grace_scale
        while time.monotonic() < deadline and any(alive(p, s) for _, p, s in live):
            reap()
            time.sleep(0.05)
        for name, pid, s in live:
            if alive(pid, s):
                if name != "kube-apiserver":
                    log(f"{name} (pid {pid}) did not stop after SIGTERM; SIGKILL")
                _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p, s) for _, p, s in live):
            reap()
            time.sleep(0.05)
    reap()


def reap() -> None:
    """Reap our own children (when stop runs in the same process as start)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# ---------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def run(args: list[str]) -> None:
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise StartError(f"command failed ({r.returncode}): {' '.join(args)}\n{r.stderr}")


def wait_until(what: str, timeout: float, check, launcher: Launcher, names: tuple[str, ...], interval=0.25):
    """Poll check() until it returns a truthy value; fail early if a component died."""
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    last_err = None
    while True:
        launcher.check_alive(*names)
        try:
            v = check()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - report the last one on timeout
            last_err = e
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- last lines of {launcher.logs / (n + '.log')}:\n{tail(launcher.logs / (n + '.log'))}" for n in names
            )
            raise StartError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_err})\n{logs}")
        time.sleep(interval)


class Api:
    def __init__(self, url: str, token: str, cafile: Path | None):
        self.url = url
        self.token = token
        if cafile is None:
            self.ctx = ssl.create_default_context()
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE
        else:
            self.ctx = ssl.create_default_context(cafile=str(cafile))

    def request(self, method: str, path: str, body=None, timeout=5.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                raw = r.read()
                return r.status, raw
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str):
        code, raw = self.request("GET", path)
        if code != 200:
            raise RuntimeError(f"GET {path}: HTTP {code}: {raw[:300]!r}")
        return json.loads(raw)


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def extract_ca(serving_crt: Path) -> str:
    """kube-apiserver's --cert-dir self-signed file holds [serving cert, CA cert]; return the CA."""
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", serving_crt.read_text(), re.S)
    if not blocks:
        raise StartError(f"no certificate in {serving_crt}")
    ca = blocks[-1]
    return ca if ca.endswith("\n") else ca + "\n"


def kubeconfig(url: str, ca_pem: str, token: str) -> str:
    ca_b64 = base64.b64encode(ca_pem.encode()).decode()
    return f"""apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {url}
    certificate-authority-data: {ca_b64}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: testenv
  context:
    cluster: testenv
    user: admin
    namespace: default
current-context: testenv
preferences: {{}}
"""


def node_manifest(name: str) -> dict:
    res = {"cpu": "32", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "spec": {"taints": [{"key": KWOK_ANNOTATION[0], "value": KWOK_ANNOTATION[1], "effect": "NoSchedule"}]},
        "status": {"allocatable": dict(res), "capacity": dict(res)},
    }


# ---------------------------------------------------------------------------------------------
# start


def start(d: Path) -> int:
    t_start = time.monotonic()
    versions = pinned_versions()
    bins = bin_dir(versions)
    missing = [c for c in COMPONENTS if not os.access(bins / c, os.X_OK)]
    if missing:
        raise SystemExit(
            f"testenv: missing binaries in {bins}: {', '.join(missing)}\n"
            f"run scripts/testenv/install.sh first (cold build takes ~10-15 min)"
        )
    if shutil.which("openssl") is None:
        raise SystemExit("testenv: openssl is not on PATH")

    d.mkdir(parents=True, exist_ok=True)
    if any(alive(p, None if s == "-" else s) for _, p, s in read_pids(d)):
        raise SystemExit(f"testenv: {d} is already running; run scripts/testenv/stop.sh {d} first")
    clean(d, keep_logs=False)
    for sub in ("logs", "pki", "pki/serving", "etcd"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d / "pki", 0o700)
    os.chmod(d / "etcd", 0o700)
    (d / "pids").write_text("")

    L = Launcher(d)
    try:
        env = _start(d, bins, versions, L)
    except BaseException as e:
        if isinstance(e, StartError):
            log(f"startup FAILED: {e}")
        elif isinstance(e, KeyboardInterrupt):
            log("interrupted")
        else:
            log(f"startup FAILED: {type(e).__name__}: {e}")
        if os.environ.get("MCP_TESTENV_KEEP_ON_FAILURE") == "1":
            log(f"MCP_TESTENV_KEEP_ON_FAILURE=1: leaving processes running; scripts/testenv/stop.sh {d}")
        else:
            kill_all(d, grace_scale=0.5)
            clean(d, keep_logs=True)
            log(f"stopped everything that was started; logs kept in {d / 'logs'}")
        return 1
    log(f"ready in {time.monotonic() - t_start:.1f}s: {env['MCP_TESTENV_API_URL']}  KUBECONFIG={env['KUBECONFIG']}")
    print(d / "env")
    return 0


def _start(d: Path, bins: Path, versions: dict[str, str], L: Launcher) -> dict[str, str]:
    pki = d / "pki"
    t0 = time.monotonic()

    # --- credentials -------------------------------------------------------------------------
    token = secrets.token_hex(32)
    write_atomic(pki / "tokens.csv", f'{token},admin,admin-uid,"system:masters"\n')
    run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"])
    run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])
    write_atomic(d / "kwok.yaml", "")  # empty config: do not pick up ~/.kwok/kwok.yaml

    # --- etcd --------------------------------------------------------------------------------
    for attempt in range(3):
        etcd_port, etcd_peer = free_ports(2)
        etcd_url = f"http://{LOOPBACK}:{etcd_port}"
        L.spawn("etcd", [
            str(bins / "etcd"),
            "--name=testenv",
            f"--data-dir={d / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://{LOOPBACK}:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://{LOOPBACK}:{etcd_peer}",
            f"--initial-cluster=testenv=http://{LOOPBACK}:{etcd_peer}",
            "--unsafe-no-fsync=true",  # test data only: much faster on shared disks
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ])
        try:
            wait_until("etcd /health", 30, lambda: json.loads(
                urllib.request.urlopen(etcd_url + "/health", timeout=2).read()).get("health") == "true", L, ("etcd",))
            break
        except StartError:
            if attempt < 2 and "address already in use" in tail(L.logs / "etcd.log", 200):
                log("etcd port was taken; retrying with new ports")
                kill_all(d, grace_scale=0.5)
                L.forget("etcd")
                shutil.rmtree(d / "etcd", ignore_errors=True)
                (d / "etcd").mkdir(mode=0o700)
                continue
            raise
    log(f"etcd up on {etcd_url} ({time.monotonic() - t0:.1f}s)")

    # --- kube-apiserver ----------------------------------------------------------------------
    for attempt in range(3):
        api_port = free_port()
        api_url = f"https://{LOOPBACK}:{api_port}"
        L.spawn("kube-apiserver", [
            str(bins / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={api_port}",
            f"--cert-dir={pki / 'serving'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=RBAC",
            f"--token-auth-file={pki / 'tokens.csv'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The "kubernetes" Service would get the advertise address 127.0.0.1 as endpoint, which
            # Endpoints validation rejects (loopback) every 10 s; nothing in-cluster needs it.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ])
        crt = pki / "serving" / "apiserver.crt"

        def serving_cert_written():
            # the self-signed file holds two PEM blocks (cert, CA); the key is written after it
            return (crt.exists() and crt.read_text().count("-----END CERTIFICATE-----") >= 2
                    and (pki / "serving" / "apiserver.key").exists())

        try:
            wait_until("kube-apiserver serving certificate", 60, serving_cert_written, L, ("etcd", "kube-apiserver"))
            break
        except StartError:
            if attempt < 2 and "address already in use" in tail(L.logs / "kube-apiserver.log", 200):
                log("kube-apiserver port was taken; retrying with a new port")
                p = L.procs["kube-apiserver"]
                if p.poll() is None:
                    p.kill()
                L.forget("kube-apiserver")
                continue
            raise
    ca_pem = extract_ca(crt)
    write_atomic(pki / "ca.crt", ca_pem, 0o644)
    api = Api(api_url, token, pki / "ca.crt")

    def readyz():
        code, body = api.request("GET", "/readyz", timeout=3)
        if code != 200:
            raise RuntimeError(f"/readyz HTTP {code}: {body[-300:]!r}")
        return True

    wait_until("kube-apiserver /readyz", 120, readyz, L, ("etcd", "kube-apiserver"), interval=0.5)
    log(f"kube-apiserver ready on {api_url} ({time.monotonic() - t0:.1f}s)")

    kcfg = d / "kubeconfig"
    write_atomic(kcfg, kubeconfig(api_url, ca_pem, token))

    # --- controller-manager, scheduler, kwok -------------------------------------------------
    # Client-side rate limits: the defaults (controller-manager 20 QPS / burst 30 per controller
    # client, scheduler 50 / 100) throttled the Deployment and ReplicaSet controllers to ~5
    # Deployments/s, so 1 000 Deployments took 240 s to become available while the machine sat
    # partly idle (docs/testenv.md, "Client rate limits"). kwok's client has no limiter.
    L.spawn("kube-controller-manager", [
        str(bins / "kube-controller-manager"),
        f"--kubeconfig={kcfg}",
        "--leader-elect=false",
        "--controllers=*,-nodeipam",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        "--secure-port=0",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--cluster-name=testenv",
        "--node-monitor-period=2s",
        f"--kube-api-qps={KCM_QPS}",
        f"--kube-api-burst={KCM_BURST}",
        f"--concurrent-deployment-syncs={KCM_WORKLOAD_SYNCS}",
        f"--concurrent-replicaset-syncs={KCM_WORKLOAD_SYNCS}",
        "--v=1",
    ])
    L.spawn("kube-scheduler", [
        str(bins / "kube-scheduler"),
        f"--kubeconfig={kcfg}",
        "--leader-elect=false",
        "--secure-port=0",
        # deprecated flags, honoured because no --config is given
        f"--kube-api-qps={SCHEDULER_QPS}",
        f"--kube-api-burst={SCHEDULER_BURST}",
        "--v=1",
    ])
    L.spawn("kwok", [
        str(bins / "kwok"),
        f"--config={d / 'kwok.yaml'}",
        f"--kubeconfig={kcfg}",
        "--manage-all-nodes=false",
        "--node-lease-duration-seconds=40",  # kwok renews Node Leases, so nodes never go NotReady
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
        f"--cidr={POD_CIDR}",
        f"--node-ip={NODE_IP}",
    ])

    # --- fake node(s) ------------------------------------------------------------------------
    node_names = [f"kwok-node-{i}" for i in range(NODE_COUNT)]
    for name in node_names:
        code, body = api.request("POST", "/api/v1/nodes", node_manifest(name))
        if code not in (200, 201, 409):
            raise StartError(f"creating Node {name}: HTTP {code}: {body[:500]!r}")

    def nodes_ready():
        for name in node_names:
            node = api.get_json(f"/api/v1/nodes/{name}")
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            if conds.get("Ready") != "True":
                raise RuntimeError(f"node {name} not Ready yet (conditions {conds})")
            taints = [t["key"] for t in node.get("spec", {}).get("taints", []) or []]
            if any(t.startswith("node.kubernetes.io/") for t in taints):
                raise RuntimeError(f"node {name} still tainted {taints}")
        return True

    def controllers_working():
        api.get_json("/api/v1/namespaces/default/serviceaccounts/default")
        api.get_json("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
        return True

    wait_until("the kwok node to be Ready and untainted", 120, nodes_ready, L, tuple(COMPONENTS), interval=0.5)
    wait_until("ServiceAccount default/default and ConfigMap kube-root-ca.crt", 60, controllers_working, L,
               tuple(COMPONENTS), interval=0.5)
    log(f"{len(node_names)} kwok node(s) Ready ({time.monotonic() - t0:.1f}s)")
    L.check_alive()

    pids = {name: str(p.pid) for name, p in L.procs.items()}
    env = {
        "MCP_TESTENV_DIR": str(d),
        "KUBECONFIG": str(kcfg),
        "MCP_TESTENV_API_URL": api_url,
        "MCP_TESTENV_ADMIN_TOKEN": token,
        "MCP_TESTENV_CA_FILE": str(pki / "ca.crt"),
        "MCP_TESTENV_ETCD_URL": etcd_url,
        "MCP_TESTENV_NODE_NAMES": ",".join(node_names),
        "MCP_TESTENV_K8S_VERSION": versions["K8S_VERSION"],
        "MCP_TESTENV_ETCD_VERSION": versions["ETCD_VERSION"],
        "MCP_TESTENV_KWOK_VERSION": versions["KWOK_VERSION"],
        "MCP_TESTENV_BIN": str(bins),
        "MCP_TESTENV_LOG_DIR": str(L.logs),
        "MCP_TESTENV_ETCD_PID": pids["etcd"],
        "MCP_TESTENV_APISERVER_PID": pids["kube-apiserver"],
        "MCP_TESTENV_CONTROLLER_MANAGER_PID": pids["kube-controller-manager"],
        "MCP_TESTENV_SCHEDULER_PID": pids["kube-scheduler"],
        "MCP_TESTENV_KWOK_PID": pids["kwok"],
        "MCP_TESTENV_PIDS": ",".join(pids[c] for c in COMPONENTS),
    }
    watch_pid = os.environ.get("MCP_TESTENV_WATCH_PID", "").strip()
    if watch_pid:
        if not watch_pid.isdigit() or not alive(int(watch_pid)):
            raise StartError(f"MCP_TESTENV_WATCH_PID={watch_pid!r} is not a running process")
        w = L.spawn("watchdog", [sys.executable, str(HERE / "testenv.py"), "watch", str(d), watch_pid,
                                 proc_starttime(int(watch_pid)) or "-"])
        env["MCP_TESTENV_WATCHDOG_PID"] = str(w.pid)
    for k, v in env.items():
        if any(ch in v for ch in " \t\n'\"$`\\#="):
            raise StartError(f"unexpected character in env value {k}={v!r}")
    write_atomic(d / "env", "".join(f"{k}={v}\n" for k, v in env.items()))
    return env


# ---------------------------------------------------------------------------------------------
# stop / status


def clean(d: Path, keep_logs: bool) -> None:
    for name in ("etcd", "pki"):
        shutil.rmtree(d / name, ignore_errors=True)
    if not keep_logs:
        shutil.rmtree(d / "logs", ignore_errors=True)
    for name in ("env", "env.tmp", "kubeconfig", "kubeconfig.tmp", "pids", "kwok.yaml"):
        try:
            (d / name).unlink()
        except FileNotFoundError:
            pass


def stop(d: Path, keep_logs: bool) -> int:
    if not d.exists():
        log(f"{d} does not exist; nothing to stop")
        return 0
    t0 = time.monotonic()
    kill_all(d)
    left = [(n, p) for n, p, s in read_pids(d) if p != os.getpid() and alive(p, None if s == "-" else s)]
    if left:
        log(f"still alive after SIGKILL: {left}")
        return 1
    clean(d, keep_logs)
    try:
        d.rmdir()  # only if empty
    except OSError:
        pass
    log(f"stopped {d} in {time.monotonic() - t0:.1f}s" + (" (logs kept)" if keep_logs else ""))
    return 0


def status(d: Path) -> int:
    entries = read_pids(d)
    if not entries:
        print(f"{d}: not running")
        return 1
    ok = True
    for name, pid, s in entries:
        a = alive(pid, None if s == "-" else s)
        ok &= a
        print(f"{name:26} pid {pid:<8} {'running' if a else 'DEAD'}")
    return 0 if ok else 1


def watch(d: Path, pid: int, starttime: str) -> int:
    """Watchdog (MCP_TESTENV_WATCH_PID): stop the testenv in d once process pid has exited."""
    st = None if starttime == "-" else starttime
    log(f"watchdog: will stop {d} when pid {pid} exits")
    while alive(pid, st):
        if not (d / "pids").exists():
            log("watchdog: testenv was stopped by someone else; exiting")
            return 0
        time.sleep(0.5)
    log(f"watchdog: pid {pid} exited; stopping {d}")
    return stop(d, keep_logs=os.environ.get("MCP_TESTENV_KEEP_LOGS") == "1")


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[1] == "watch":
        return watch(Path(argv[2]), int(argv[3]), argv[4])
    if len(argv) < 3 or argv[1] not in ("start", "stop", "status"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, d = argv[1], Path(argv[2]).resolve()
    if cmd == "start":
        return start(d)
    if cmd == "stop":
        keep = "--keep-logs" in argv[3:] or os.environ.get("MCP_TESTENV_KEEP_LOGS") == "1"
        return stop(d, keep)
    return status(d)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
