//! Test harness: real processes on loopback — the official Python SDK's MCP server behind the
//! `mcp-gateway` binary, and the SDK's client (or curl) in front.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use mcp_runtime_api::manifest::{self, Manifest};
use mcp_runtime_api::render::{RenderOptions, render_policy};
use mcp_runtime_token::{Identity, SigningKey};
use serde_json::Value;

/// Seed of the key that signs the tests' session tokens; gateways get its public half.
pub const KEY_SEED: [u8; 32] = [17; 32];

pub fn signing_key() -> SigningKey {
    SigningKey::from_seed(&KEY_SEED)
}

/// Paths of the installed peers (scripts/peers.sh). Fails loudly when they are missing: the
/// README's test command installs them.
pub struct Peers {
    pub python: PathBuf,
    pub env: Vec<(String, String)>,
}

pub fn peers() -> Peers {
    let cache = std::env::var_os("MCP_RUNTIME_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/mcp-runtime")
        });
    let env_file = cache.join("peers/env.sh");
    let text = std::fs::read_to_string(&env_file)
        .unwrap_or_else(|e| panic!("MCP peers are not installed ({}: {e}); run scripts/peers.sh (the README test command does)", env_file.display()));
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    let python = env
        .iter()
        .find(|(k, _)| k == "PEERS_PYTHON")
        .map(|(_, v)| PathBuf::from(v))
        .expect("PEERS_PYTHON");
    Peers { python, env }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop, with its stderr kept in a file for failure messages.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
    let file = std::fs::File::create(&log).unwrap();
    cmd.stdout(Stdio::null()).stderr(file);
    Proc {
        child: cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
        log,
    }
}

pub fn wait_port(port: u16, proc: &mut Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("{what} exited with {status}:\n{}", proc.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not listen on {port} within 30 s:\n{}",
        proc.log_tail()
    );
}

/// A test's scratch directory: removed when the test passes, kept (logs, audit file, spool) for
/// the post-mortem when it fails.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn tempdir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("mcp-gw-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Renders the policy of the one MCPServer in `yaml` (plus its grants and sessions).
pub fn render(yaml: &str) -> String {
    let (mut servers, mut grants, mut sessions) = (vec![], vec![], vec![]);
    for m in manifest::parse("test.yaml", yaml, "test").unwrap() {
        match m {
            Manifest::Server(s) => servers.push(*s),
            Manifest::Grant(g) => grants.push(g),
            Manifest::Session(s) => sessions.push(s),
        }
    }
    render_policy(&servers[0], &grants, &sessions, &RenderOptions::default())
        .unwrap()
        .document
        .to_json_pretty()
}

/// `@modelcontextprotocol/server-everything` (Streamable HTTP) on `port`.
pub fn server_everything(peers: &Peers, port: u16) -> Command {
    let path = peers
        .env
        .iter()
        .find(|(k, _)| k == "SERVER_EVERYTHING")
        .map(|(_, v)| v.clone())
        .expect("SERVER_EVERYTHING in the peers environment");
    let mut cmd = Command::new("node");
    cmd.arg(path)
        .arg("streamableHttp")
        .env("PORT", port.to_string());
    cmd
}

/// tests/peers/hostile_server.py (a server that answers the way a broken one could) on `port`.
pub fn hostile_server(peers: &Peers, port: u16) -> Command {
    let mut cmd = Command::new(&peers.python);
    cmd.arg(repo_root().join("tests/peers/hostile_server.py"))
        .arg(port.to_string());
    cmd
}

/// A gateway in front of the Python SDK server, with its files in a temp dir.
pub struct Stack {
    pub dir: TempDir,
    pub url: String,
    pub admin: String,
    pub policy_file: PathBuf,
    pub audit_file: PathBuf,
    /// The gateway's `--token-public-keys-file` (the public half of [`signing_key`]).
    pub token_public_keys: PathBuf,
    pub gateway: Proc,
    pub upstream: Proc,
    pub peers: Peers,
}

/// The processes end before their directory goes (fields drop in declaration order).
impl Drop for Stack {
    fn drop(&mut self) {
        for proc in [&mut self.gateway, &mut self.upstream] {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}

impl Stack {
    /// The official Python SDK's `MCPServer` (tests/peers/py_server.py) behind the gateway.
    pub fn start(name: &str, policy_yaml: &str, extra_args: &[&str]) -> Stack {
        Self::start_with(name, policy_yaml, extra_args, |peers, port| {
            let mut up = Command::new(&peers.python);
            up.arg(repo_root().join("tests/peers/py_server.py"))
                .arg(port.to_string());
            up
        })
    }

    /// `upstream(peers, port)` builds the command of the MCP server to put behind the gateway.
    pub fn start_with(
        name: &str,
        policy_yaml: &str,
        extra_args: &[&str],
        upstream: impl FnOnce(&Peers, u16) -> Command,
    ) -> Stack {
        Self::launch(name, Some(policy_yaml), extra_args, upstream)
    }

    /// The Python SDK server behind a gateway whose policy source is given in `source_args`
    /// (e.g. `--policy-configmap`) instead of a file.
    pub fn start_with_policy_source(name: &str, source_args: &[&str]) -> Stack {
        Self::launch(name, None, source_args, |peers, port| {
            let mut up = Command::new(&peers.python);
            up.arg(repo_root().join("tests/peers/py_server.py"))
                .arg(port.to_string());
            up
        })
    }

    fn launch(
        name: &str,
        policy_yaml: Option<&str>,
        extra_args: &[&str],
        upstream: impl FnOnce(&Peers, u16) -> Command,
    ) -> Stack {
        let peers = peers();
        let dir = tempdir(name);
        let up_port = free_port();
        let mut upstream = spawn(upstream(&peers, up_port), dir.join("upstream.log"));
        wait_port(up_port, &mut upstream, "upstream MCP server");
        let policy_file = dir.join("policy.json");
        if let Some(yaml) = policy_yaml {
            std::fs::write(&policy_file, render(yaml)).unwrap();
        }
        let key_file = dir.join("token.pub");
        std::fs::write(&key_file, signing_key().public_pem()).unwrap();
        let audit_file = dir.join("audit.jsonl");
        let (port, admin_port) = (free_port(), free_port());
        // MCP_GATEWAY_UNDER_TEST runs the same tests against another build (e.g. an older
        // release, to show a test fails there).
        let mut gw = Command::new(
            std::env::var_os("MCP_GATEWAY_UNDER_TEST")
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_mcp-gateway").into()),
        );
        gw.args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin_port}"),
        ])
        .args(["--upstream", &format!("http://127.0.0.1:{up_port}")]);
        if policy_yaml.is_some() {
            gw.arg("--policy-file").arg(&policy_file);
        }
        gw.arg("--token-public-keys-file")
            .arg(&key_file)
            .arg("--audit-file")
            .arg(&audit_file)
            .arg("--audit-spool-dir")
            .arg(dir.join("spool"))
            .args(extra_args);
        let mut gateway = spawn(gw, dir.join("gateway.log"));
        wait_port(port, &mut gateway, "mcp-gateway");
        let stack = Stack {
            dir,
            url: format!("http://127.0.0.1:{port}/mcp"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            policy_file,
            audit_file,
            token_public_keys: key_file,
            gateway,
            upstream,
            peers,
        };
        stack.wait_ready();
        stack
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if curl(&[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}/ready", self.admin),
            ])
            .stdout
                == b"200"
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway not ready:\n{}", self.gateway.log_tail());
    }

    /// Runs the Python SDK client; returns its exit code and JSON lines.
    pub fn client(&self, era: &str, token: Option<&str>, args: &[&str]) -> (i32, Vec<Value>) {
        let mut cmd = Command::new(&self.peers.python);
        cmd.arg(repo_root().join("tests/peers/py_client.py"));
        cmd.args(["--url", &self.url, "--era", era, "--timeout", "20"]);
        run_client(cmd, token, args)
    }

    /// Runs the TypeScript SDK client (handshake era).
    pub fn ts_client(&self, token: Option<&str>, args: &[&str]) -> (i32, Vec<Value>) {
        let mut cmd = Command::new("node");
        cmd.arg(repo_root().join("tests/peers/ts_client.mjs"));
        cmd.args(["--url", &self.url, "--timeout", "20"])
            .envs(self.peers.env.iter().cloned());
        run_client(cmd, token, args)
    }
}

fn run_client(mut cmd: Command, token: Option<&str>, args: &[&str]) -> (i32, Vec<Value>) {
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let out = cmd.args(args).output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

impl Stack {
    /// A path from the peers' environment (scripts/peers.sh).
    pub fn env(&self, key: &str) -> String {
        self.peers
            .env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{key} is not in the peers environment"))
    }

    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// Waits until an audit event matches `pred` (the file is flushed in batches).
    pub fn wait_audit(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(e) = self.audit_events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no audit event {what}; have:\n{:#?}",
                self.audit_events()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn token(
    server: &str,
    human: Option<&str>,
    agent: Option<&str>,
    session: Option<&str>,
    ttl_secs: i64,
) -> String {
    signing_key()
        .mint(
            server,
            Identity {
                human: human.map(Into::into),
                agent: agent.map(Into::into),
                team: None,
                session: session.map(Into::into),
            },
            Timestamp::now(),
            SignedDuration::from_secs(ttl_secs),
        )
        .unwrap()
}

pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl")
}

/// A raw POST: returns (status, headers text, body).
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, String) {
    send("POST", url, headers, body)
}

/// A raw request with any method (a body is sent when not empty): (status, headers, body).
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let dir = std::env::temp_dir();
    let body_file = dir.join(format!(
        "mcp-gw-body-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&body_file, body).unwrap();
    let mut args: Vec<String> = vec![
        "-D".into(),
        "-".into(),
        "-X".into(),
        method.into(),
        url.into(),
    ];
    for (k, v) in headers {
        args.push("-H".into());
        args.push(format!("{k}: {v}"));
    }
    if method == "POST" || !body.is_empty() {
        args.push("--data-binary".into());
        args.push(format!("@{}", body_file.display()));
    }
    let out = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let _ = std::fs::remove_file(body_file);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Reads lines of a child's stdout as they come, with arrival times.
pub fn timed_lines(child: &mut Child) -> Vec<(Duration, String)> {
    let start = Instant::now();
    let stdout = child.stdout.take().unwrap();
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .map(|l| (start.elapsed(), l))
        .collect()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA (`ca`) and a server certificate for 127.0.0.1 signed by it (`cert`, `key`).
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Creates a [`Pki`] in `dir` with Debian's openssl.
pub fn pki(dir: &Path) -> Pki {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=mcp-runtime test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "idp.key",
            "-out",
            "idp.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "idp.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "idp.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
    Pki {
        ca: dir.join("ca.crt"),
        cert: dir.join("idp.crt"),
        key: dir.join("idp.key"),
    }
}
