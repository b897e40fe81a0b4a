//! `mcp-runtime adapter stdio|proxy` end to end, through the real binaries: the official Python
//! MCP SDK (its stdio client launching the shim, its Streamable HTTP client through the proxy)
//! → the adapter → `mcp-gateway` → the SDK's `MCPServer` (tests/peers/py_server.py). Faults the
//! gateway cannot be made to produce (a 502 on the way, a dropped connection) come from a small
//! fault-injecting upstream in this file that counts what reaches it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use mcp_runtime_api::manifest::{self, Manifest};
use mcp_runtime_api::render::{RenderOptions, render_policy};
use mcp_runtime_testkit::workspace_root;
use mcp_runtime_token::{Identity, SigningKey};
use serde_json::{Value, json};

const SERVER: &str = "test/py";

const POLICY: &str = "
apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: py, namespace: test}
spec:
  image: python-peer
  tools:
    - {name: echo, sideEffect: read}
    - {name: upper, sideEffect: read, requiredTrust: medium}
    - {name: slow_steps, sideEffect: read}
  session: {required: true}
  gateway: {enabled: true}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: test}
spec:
  serverRef: {name: py}
  subject: {humanID: alice, agentID: claude}
  maxTrust: high
  allowedSideEffects: [read]
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-alice, namespace: test}
spec: {serverRef: {name: py}, subject: {humanID: alice, agentID: claude}, consentedTrust: low, expiresAt: '2099-01-01T00:00:00Z'}
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAgentSession
metadata: {name: s-revoked, namespace: test}
spec: {serverRef: {name: py}, subject: {humanID: alice, agentID: claude}, consentedTrust: high, revoked: true, expiresAt: '2099-01-01T00:00:00Z'}
";

// ---------------------------------------------------------------- processes and files

fn mcp_runtime() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-runtime"))
}

/// A binary of the workspace beside `mcp-runtime` (built with the workspace).
fn workspace_binary(name: &str) -> PathBuf {
    let path = mcp_runtime().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build -p mcp-runtime-gateway` (scripts/test.sh builds the workspace)",
        path.display()
    );
    path
}

/// The official Python SDK's interpreter (scripts/peers.sh). Fails loudly when missing.
fn peers_python() -> PathBuf {
    let cache = std::env::var_os("MCP_RUNTIME_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mcp-runtime")
        });
    let env_file = cache.join("peers/env.sh");
    let text = std::fs::read_to_string(&env_file).unwrap_or_else(|e| {
        panic!(
            "MCP peers are not installed ({}: {e}); run scripts/peers.sh",
            env_file.display()
        )
    });
    text.lines()
        .filter_map(|l| l.strip_prefix("export PEERS_PYTHON="))
        .map(|v| PathBuf::from(v.trim_matches('"')))
        .next()
        .expect("PEERS_PYTHON in the peers environment")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory, kept when the test fails (logs for the post-mortem).
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
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

fn tempdir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("mcp-adapter-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A child process killed on drop; its stderr goes to `log`.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(Stdio::null()).stderr(file);
        Proc {
            child: cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_port(&mut self, port: u16, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what} exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what} did not listen on {port}:\n{}", self.log());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signing_key() -> SigningKey {
    SigningKey::from_seed(&[23; 32])
}

/// A session token for alice/claude, for `session`, valid from `from` for `ttl`.
fn token_at(session: &str, from: Timestamp, ttl: SignedDuration) -> String {
    signing_key()
        .mint(
            SERVER,
            Identity {
                human: Some("alice".into()),
                agent: Some("claude".into()),
                team: None,
                session: Some(session.into()),
            },
            from,
            ttl,
        )
        .unwrap()
}

fn token(session: &str) -> String {
    token_at(session, Timestamp::now(), SignedDuration::from_mins(10))
}

/// A token that expired an hour ago.
fn expired_token() -> String {
    token_at(
        "s-alice",
        Timestamp::now() - SignedDuration::from_hours(2),
        SignedDuration::from_hours(1),
    )
}

fn render(yaml: &str) -> String {
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

/// tests/peers/py_server.py behind `mcp-gateway`.
struct Stack {
    dir: TempDir,
    url: String,
    audit_file: PathBuf,
    gateway: Proc,
    upstream: Proc,
}

impl Stack {
    fn start(name: &str) -> Stack {
        let dir = tempdir(name);
        let up_port = free_port();
        let mut up = Command::new(peers_python());
        up.arg(workspace_root().join("tests/peers/py_server.py"))
            .arg(up_port.to_string());
        let mut upstream = Proc::spawn(up, dir.join("upstream.log"));
        upstream.wait_port(up_port, "py_server.py");
        let policy = dir.join("policy.json");
        std::fs::write(&policy, render(POLICY)).unwrap();
        let keys = dir.join("token.pub");
        std::fs::write(&keys, signing_key().public_pem()).unwrap();
        let audit_file = dir.join("audit.jsonl");
        let (port, admin) = (free_port(), free_port());
        let mut gw = Command::new(workspace_binary("mcp-gateway"));
        gw.args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--upstream", &format!("http://127.0.0.1:{up_port}")])
            .arg("--policy-file")
            .arg(&policy)
            .arg("--token-public-keys-file")
            .arg(&keys)
            .arg("--audit-file")
            .arg(&audit_file)
            .arg("--audit-spool-dir")
            .arg(dir.join("spool"));
        let mut gateway = Proc::spawn(gw, dir.join("gateway.log"));
        gateway.wait_port(port, "mcp-gateway");
        Stack {
            url: format!("http://127.0.0.1:{port}/mcp"),
            dir,
            audit_file,
            gateway,
            upstream,
        }
    }

    fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for an audit event matching `pred` (the gateway writes them in batches).
    fn wait_audit(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.audit_events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no audit event {what}; have:\n{:#?}",
                self.audit_events()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- gateway\n{}\n--- upstream\n{}",
            self.gateway.log(),
            self.upstream.log()
        )
    }
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

// ---------------------------------------------------------------- the stdio shim

/// Runs tests/peers/stdio_client.py (the SDK's stdio client) launching the shim; its lines.
fn sdk_stdio(stack: &Stack, era: &str, token_file: &Path, steps: Value) -> Vec<Value> {
    let errlog = stack.dir.join(format!("shim-{era}.log"));
    let out = Command::new(peers_python())
        .arg(workspace_root().join("tests/peers/stdio_client.py"))
        .args([
            "--era",
            era,
            "--timeout",
            "20",
            "--steps",
            &steps.to_string(),
        ])
        .arg("--errlog")
        .arg(&errlog)
        .arg("--")
        .arg(mcp_runtime())
        .args(["adapter", "stdio", "--url", &stack.url, "--token-file"])
        .arg(token_file)
        .output()
        .unwrap();
    let lines = json_lines(&out.stdout);
    assert!(
        out.status.success(),
        "{era}: stdio client failed: {lines:#?}\n{}\n--- shim\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&errlog).unwrap_or_default(),
        stack.logs()
    );
    lines
}

fn step(lines: &[Value], i: u64) -> &Value {
    lines
        .iter()
        .find(|l| l["step"] == i)
        .unwrap_or_else(|| panic!("no line for step {i}: {lines:#?}"))
}

fn text_of(line: &Value) -> &str {
    line.pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no text result: {line}"))
}

fn reason_of(line: &Value) -> &str {
    line.pointer("/error/data/reason")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no error with data.reason: {line}"))
}

#[test]
fn sdk_stdio_client_calls_through_the_shim_in_both_eras_and_a_reminted_token_is_used() {
    let stack = Stack::start("stdio-sdk");
    for era in ["handshake", "stateless"] {
        let token_file = stack.dir.join(format!("token-{era}"));
        std::fs::write(&token_file, token("s-alice")).unwrap();
        let path = token_file.to_str().unwrap();
        let steps = json!([
            {"list_tools": true},                                              // 1
            {"call": "echo", "args": {"text": "hi"}},                          // 2
            {"call": "upper", "args": {"text": "hi"}},                         // 3: above trust
            {"call": "slow_steps", "args": {"steps": 3, "delay": 0.3}, "progress": true}, // 4
            // The session behind the token is revoked: the next token file read is refused.
            {"write": {"path": path, "text": token("s-revoked")}},             // 5
            {"sleep": 2.5},                                                    // 6
            {"call": "echo", "args": {"text": "revoked"}},                     // 7
            // An expired token: the gateway refuses it (401) before reading the call.
            {"write": {"path": path, "text": expired_token()}},                // 8
            {"sleep": 2.5},                                                    // 9
            {"call": "echo", "args": {"text": "expired"}},                     // 10
            // Re-minted: used for the very next call, without a restart and without waiting
            // for the shim's next look at the file (a 401 makes it look at once).
            {"write": {"path": path, "text": token("s-alice")}},               // 11
            {"call": "echo", "args": {"text": "again"}},                       // 12
        ]);
        let lines = sdk_stdio(&stack, era, &token_file, steps);
        let connected = &step(&lines, 0)["connected"];
        match era {
            "handshake" => assert_eq!(connected["protocolVersion"], "2025-11-25", "{connected}"),
            _ => assert_eq!(
                connected["supportedVersions"],
                json!(["2026-07-28"]),
                "{connected}"
            ),
        }
        let tools: Vec<&str> = step(&lines, 1)["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        // The gateway lists only what the session may call: `upper` is above its trust.
        assert!(
            tools.contains(&"echo") && !tools.contains(&"upper"),
            "{era}: {tools:?}"
        );
        assert_eq!(text_of(step(&lines, 2)), "hi", "{era}");
        let denied = step(&lines, 3);
        assert_eq!(denied["error"]["code"], -32003, "{era}: {denied}");
        assert_eq!(reason_of(denied), "trust_too_low", "{era}");
        let progress = step(&lines, 4);
        assert_eq!(
            progress["progress"].as_array().map(Vec::len),
            Some(3),
            "{era}: every progress notification arrives: {progress}"
        );
        assert_eq!(text_of(progress), "done 3 steps");
        // ... each as it is sent (0.3 s apart), not all when the call ends.
        let times: Vec<f64> = progress["progress"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["elapsed"].as_f64())
            .collect();
        assert!(
            times[2] - times[0] > 0.4,
            "{era}: progress arrived bunched: {times:?}"
        );
        assert_eq!(reason_of(step(&lines, 7)), "session_revoked", "{era}");
        let expired = step(&lines, 10);
        assert_eq!(reason_of(expired), "token_expired", "{era}: {expired}");
        assert_eq!(expired["error"]["code"], -32001, "{era}");
        assert_eq!(text_of(step(&lines, 12)), "again", "{era}");
    }
    // The handshake-era session was ended when the client closed the shim's stdin.
    stack.wait_audit("for the handshake session's DELETE", |e| {
        e["http_method"] == "DELETE" && e["decision"] == "allow"
    });
}

/// The shim with raw lines on stdin (what an SDK would never send), and its stdout lines.
fn raw_shim(url: &str, token_file: &Path, extra: &[&str], input: &[u8]) -> (Vec<Value>, String) {
    let mut child = Command::new(mcp_runtime())
        .args(["adapter", "stdio", "--url", url, "--token-file"])
        .arg(token_file)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        // stdin closes here: end of input.
    });
    let out = wait_output(child, Duration::from_secs(30));
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "shim failed: {stderr}");
    (json_lines(&out.stdout), stderr)
}

fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn by_id(lines: &[Value], id: Value) -> &Value {
    lines
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("no answer with id {id}: {lines:#?}"))
}

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

#[test]
fn malformed_and_oversized_lines_get_errors_and_the_shim_goes_on() {
    let stack = Stack::start("stdio-raw");
    let token_file = stack.dir.join("token");
    std::fs::write(&token_file, token("s-alice")).unwrap();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(3000)
    );
    let input = [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        "this is not JSON".to_owned(),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"#.to_owned(),
        big,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#.to_owned(),
        String::new(),
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"still here"}}}"#.to_owned(),
        // Stateless era on the same stdin: headers from `_meta`, no session.
        format!(r#"{{"jsonrpc":"2.0","id":"s1","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"stateless"}},{META}}}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":"s2","method":"tools/call","params":{{"name":"upper","arguments":{{"text":"x"}},{META}}}}}"#),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#.to_owned(),
    ]
    .join("\n");
    let (lines, stderr) = raw_shim(
        &stack.url,
        &token_file,
        &["--max-message-bytes", "2048"],
        format!("{input}\n").as_bytes(),
    );
    let context = format!("{lines:#?}\n--- shim\n{stderr}\n{}", stack.logs());
    // Two parse errors (id null), one oversized line, one invalid request: each answered once.
    let parse_errors: Vec<&Value> = lines
        .iter()
        .filter(|l| l["error"]["code"] == -32700)
        .collect();
    assert_eq!(parse_errors.len(), 2, "{context}");
    assert!(parse_errors.iter().all(|l| l["id"].is_null()), "{context}");
    let too_large: Vec<&Value> = lines
        .iter()
        .filter(|l| l["error"]["data"]["limit"] == 2048)
        .collect();
    assert_eq!(too_large.len(), 1, "{context}");
    assert_eq!(too_large[0]["error"]["code"], -32600, "{context}");
    assert!(
        too_large[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{context}"
    );
    assert_eq!(
        by_id(&lines, json!(3))["error"]["code"],
        -32600,
        "{context}"
    );
    // Good lines after the bad ones still work, in both eras.
    assert_eq!(
        by_id(&lines, json!(1))["result"]["protocolVersion"],
        "2025-11-25",
        "{context}"
    );
    assert_eq!(
        by_id(&lines, json!(4))["result"]["content"][0]["text"],
        "still here",
        "{context}"
    );
    assert_eq!(
        by_id(&lines, json!("s1"))["result"]["content"][0]["text"],
        "stateless",
        "{context}"
    );
    assert_eq!(
        by_id(&lines, json!("s2"))["error"]["data"]["reason"],
        "trust_too_low",
        "{context}"
    );
    assert!(
        by_id(&lines, json!(5))["result"]["tools"].is_array(),
        "{context}"
    );
    // One line per answer, nothing for the notification: 4 refusals + 5 answers.
    assert_eq!(lines.len(), 9, "{context}");
    // Logs never carry the token or a tool's arguments.
    let secret = std::fs::read_to_string(&token_file).unwrap();
    assert!(!stderr.contains(secret.trim()), "the token was logged");
    assert!(!stderr.contains("still here"), "tool arguments were logged");
    stack.wait_audit("for the raw session's DELETE", |e| {
        e["http_method"] == "DELETE" && e["decision"] == "allow"
    });
}

// ---------------------------------------------------------------- a fault-injecting upstream

/// What the fault upstream does with a request, by JSON-RPC method (and tool name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// 502 with a text body, this many times, then a normal answer.
    BadGateway(usize),
    /// Close the connection without answering, this many times, then a normal answer.
    Drop(usize),
    /// 401 with the gateway's JSON-RPC error body (id null), always.
    Unauthorized,
}

/// A minimal HTTP/1.1 server that counts requests per key (`tools/call:NAME` or the method) and
/// records the Authorization header of each.
struct FaultUpstream {
    url: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl FaultUpstream {
    fn start(faults: &[(&str, Fault)]) -> FaultUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let faults: HashMap<String, Fault> =
            faults.iter().map(|(k, f)| ((*k).to_owned(), *f)).collect();
        let hits = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let (h, a) = (hits.clone(), authorizations.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (faults, hits, auths) = (faults.clone(), h.clone(), a.clone());
                std::thread::spawn(move || serve_one(stream, &faults, &hits, &auths));
            }
        });
        FaultUpstream {
            url,
            hits,
            authorizations,
        }
    }

    fn hits(&self, key: &str) -> usize {
        self.hits.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

fn serve_one(
    stream: TcpStream,
    faults: &HashMap<String, Fault>,
    hits: &Mutex<HashMap<String, usize>>,
    auths: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => auths.lock().unwrap().push(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let method = request["method"].as_str().unwrap_or("-").to_owned();
    let key = match request.pointer("/params/name").and_then(Value::as_str) {
        Some(name) if method == "tools/call" => format!("tools/call:{name}"),
        _ => method.clone(),
    };
    let n = {
        let mut hits = hits.lock().unwrap();
        let n = hits.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    let mut stream = stream;
    let respond = |stream: &mut TcpStream, status: &str, ctype: &str, body: &str| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    match faults.get(&key) {
        Some(Fault::BadGateway(times)) if n <= *times => {
            respond(
                &mut stream,
                "502 Bad Gateway",
                "text/plain",
                "upstream is down",
            );
        }
        Some(Fault::Drop(times)) if n <= *times => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Some(Fault::Unauthorized) => respond(
            &mut stream,
            "401 Unauthorized",
            "application/json",
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"session token expired","data":{"reason":"token_expired"}}}"#,
        ),
        _ => {
            let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"tools": [], "method": method}});
            respond(
                &mut stream,
                "200 OK",
                "application/json",
                &answer.to_string(),
            );
        }
    }
}

#[test]
fn the_shims_http_and_transport_failures_become_json_rpc_errors() {
    let faults = FaultUpstream::start(&[
        ("tools/list", Fault::BadGateway(1)),
        ("tools/call:down", Fault::BadGateway(99)),
        ("tools/call:drop", Fault::Drop(99)),
        ("tools/call:expired", Fault::Unauthorized),
    ]);
    let dir = tempdir("stdio-faults");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "opaque-test-token\n").unwrap();
    let call = |id: u32, name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
        )
    };
    let input = [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned(),
        call(2, "down"),
        call(3, "drop"),
        call(4, "expired"),
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#.to_owned(),
    ]
    .join("\n");
    let (lines, stderr) = raw_shim(
        &faults.url,
        &token_file,
        &[],
        format!("{input}\n").as_bytes(),
    );
    let context = format!("{lines:#?}\n--- shim\n{stderr}");
    assert_eq!(
        lines.len(),
        4,
        "the notification produced output: {context}"
    );
    // A list that met a 502 on the way was sent again and answered.
    assert_eq!(
        by_id(&lines, json!(1))["result"]["method"],
        "tools/list",
        "{context}"
    );
    assert_eq!(faults.hits("tools/list"), 2, "{context}");
    // A call that met the same failure was not sent again: -32000 with the HTTP status.
    let down = by_id(&lines, json!(2));
    assert_eq!(down["error"]["code"], -32000, "{context}");
    assert_eq!(down["error"]["data"]["http_status"], 502, "{context}");
    assert_eq!(
        down["error"]["data"]["body"], "upstream is down",
        "{context}"
    );
    assert_eq!(
        faults.hits("tools/call:down"),
        1,
        "tools/call was retried: {context}"
    );
    let dropped = by_id(&lines, json!(3));
    assert_eq!(dropped["error"]["code"], -32000, "{context}");
    assert_eq!(dropped["error"]["data"]["http_status"], 502, "{context}");
    assert_eq!(
        faults.hits("tools/call:drop"),
        1,
        "tools/call was retried: {context}"
    );
    // The gateway's own JSON-RPC error passes through with its reason, addressed to the call.
    let expired = by_id(&lines, json!(4));
    assert_eq!(expired["error"]["code"], -32001, "{context}");
    assert_eq!(
        expired["error"]["data"]["reason"], "token_expired",
        "{context}"
    );
    assert_eq!(
        expired["error"]["message"], "session token expired",
        "{context}"
    );
    assert_eq!(
        faults.hits("tools/call:expired"),
        1,
        "resent although the token file did not change: {context}"
    );
    assert!(
        faults
            .authorizations
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer opaque-test-token"),
        "{context}"
    );
}

// ---------------------------------------------------------------- the HTTP proxy

/// `mcp-runtime adapter proxy` in front of `url`, on a free port.
struct ProxyProc {
    proc: Proc,
    base: String,
}

fn start_proxy(dir: &Path, url: &str, token_file: &Path, extra: &[&str]) -> ProxyProc {
    // Port 0: the proxy takes a free port itself and says which (no race with other tests).
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let mut cmd = Command::new(mcp_runtime());
    cmd.args(["adapter", "proxy", "--url", url, "--listen", "127.0.0.1:0"])
        .arg("--token-file")
        .arg(token_file)
        .args(extra);
    let mut proc = Proc::spawn(cmd, dir.join(format!("proxy-{n}.log")));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = proc.log();
        if let Some(base) = log
            .split("point MCP clients at ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|u| u.strip_suffix("/mcp"))
        {
            return ProxyProc {
                base: base.to_owned(),
                proc,
            };
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("the proxy exited with {status}:\n{log}");
        }
        assert!(Instant::now() < deadline, "the proxy did not start:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn post_json(url: &str, body: &str, headers: &[&str]) -> (u16, Value) {
    let mut args = vec![
        "-X",
        "POST",
        url,
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
        "--data-binary",
        body,
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    let (code, text) = curl(&args);
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text })),
    )
}

/// tests/peers/py_client.py (the SDK's Streamable HTTP client) against `url`.
fn sdk_http(url: &str, era: &str, args: &[&str]) -> (i32, Vec<Value>) {
    let out = Command::new(peers_python())
        .arg(workspace_root().join("tests/peers/py_client.py"))
        .args(["--url", url, "--era", era, "--timeout", "20"])
        // The local client's own credential, which the proxy must not pass on.
        .args(["--token", "local-client-token"])
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), json_lines(&out.stdout))
}

#[test]
fn sdk_http_client_reaches_the_server_through_the_proxy_with_its_credential_and_streams() {
    let stack = Stack::start("proxy-sdk");
    let token_file = stack.dir.join("token");
    std::fs::write(&token_file, token("s-alice")).unwrap();
    let proxy = start_proxy(&stack.dir, &stack.url, &token_file, &[]);
    let url = format!("{}/mcp", proxy.base);
    let context = || format!("--- proxy\n{}\n{}", proxy.proc.log(), stack.logs());
    for era in ["handshake", "stateless"] {
        let (code, lines) = sdk_http(&url, era, &["call", "echo", r#"{"text":"hi"}"#]);
        assert_eq!(code, 0, "{era}: {lines:?}\n{}", context());
        assert_eq!(lines[0]["result"]["content"][0]["text"], "hi", "{era}");
        let (code, lines) = sdk_http(&url, era, &["call", "upper", r#"{"text":"hi"}"#]);
        assert_eq!(code, 3, "{era}: {lines:?}");
        assert_eq!(
            lines[0]["error"]["data"]["reason"], "trust_too_low",
            "{era}"
        );
        // Progress notifications arrive as the server sends them, not all at the end.
        let (code, lines) = sdk_http(
            &url,
            era,
            &["call-progress", "--steps", "4", "--delay", "0.5"],
        );
        assert_eq!(code, 0, "{era}: {lines:?}\n{}", context());
        let times: Vec<f64> = lines
            .iter()
            .filter_map(|l| {
                l["elapsed"]
                    .as_f64()
                    .filter(|_| l.get("progress").is_some())
            })
            .collect();
        let end = lines.last().unwrap()["elapsed"].as_f64().unwrap();
        assert_eq!(times.len(), 4, "{era}: {lines:?}");
        assert!(
            times[0] < 1.0 && times[3] - times[0] > 1.2 && end - times[0] > 1.2,
            "{era}: progress arrived bunched: {times:?}, result at {end}"
        );
    }
    // The gateway saw the proxy's credential: alice's session, not the client's token.
    let event = stack.wait_audit("for the proxied echo", |e| {
        e["tool"] == "echo" && e["decision"] == "allow"
    });
    assert_eq!(event["human_id"], "alice", "{event}");
    assert_eq!(event["session_id"], "s-alice", "{event}");
    let refused = stack
        .audit_events()
        .into_iter()
        .filter(|e| e["reason"] == "invalid_token")
        .count();
    assert_eq!(
        refused, 0,
        "the client's own Authorization reached the gateway"
    );
    // Liveness, and web pages kept out.
    assert_eq!(curl(&[&format!("{}/healthz", proxy.base)]).0, 200);
    let (code, body) = post_json(
        &url,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &["Origin: https://evil.example"],
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
}

#[test]
fn proxy_retries_lists_on_502_and_dropped_connections_but_never_tools_call() {
    let faults = FaultUpstream::start(&[
        ("tools/list", Fault::BadGateway(2)),
        ("prompts/list", Fault::BadGateway(99)),
        ("ping", Fault::Drop(1)),
        ("tools/call:down", Fault::BadGateway(1)),
        ("tools/call:drop", Fault::Drop(1)),
    ]);
    let dir = tempdir("proxy-faults");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "proxy-credential").unwrap();
    let proxy = start_proxy(
        &dir,
        &faults.url,
        &token_file,
        &["--max-message-bytes", "4096"],
    );
    let url = format!("{}/mcp", proxy.base);
    let local = "Authorization: Bearer local-client-token";
    let context = || {
        format!(
            "hits {:?}\n--- proxy\n{}",
            faults.hits.lock().unwrap(),
            proxy.proc.log()
        )
    };

    // Two 502s, then an answer: within the three attempts.
    let (code, body) = post_json(
        &url,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &[local],
    );
    assert_eq!(
        (code, &body["result"]["method"]),
        (200, &json!("tools/list")),
        "{body}\n{}",
        context()
    );
    assert_eq!(faults.hits("tools/list"), 3, "{}", context());
    // Always 502: three attempts, then the last 502 is the answer.
    let (code, _) = post_json(
        &url,
        r#"{"jsonrpc":"2.0","id":2,"method":"prompts/list"}"#,
        &[local],
    );
    assert_eq!(code, 502, "{}", context());
    assert_eq!(
        faults.hits("prompts/list"),
        3,
        "bounded attempts: {}",
        context()
    );
    // A dropped connection: sent again.
    let (code, body) = post_json(
        &url,
        r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
        &[local],
    );
    assert_eq!(code, 200, "{body}\n{}", context());
    assert_eq!(faults.hits("ping"), 2, "{}", context());
    // tools/call meeting the same failures: never sent twice.
    let call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
        )
    };
    let (code, _) = post_json(&url, &call("down"), &[local]);
    assert_eq!(code, 502, "{}", context());
    assert_eq!(
        faults.hits("tools/call:down"),
        1,
        "tools/call was retried: {}",
        context()
    );
    let (code, body) = post_json(&url, &call("drop"), &[local]);
    assert_eq!(code, 502, "{body}\n{}", context());
    assert_eq!(body["error"]["code"], -32000, "{body}");
    assert_eq!(body["error"]["data"]["http_status"], 502, "{body}");
    assert_eq!(body["id"], 7, "{body}");
    assert_eq!(
        faults.hits("tools/call:drop"),
        1,
        "tools/call was retried: {}",
        context()
    );
    // The client's Authorization never reached the upstream; the proxy's did, every time.
    let seen = faults.authorizations.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|a| a == "Bearer proxy-credential"),
        "{seen:?}"
    );
    // A body over the limit: 413 with a JSON-RPC error, and nothing sent on.
    let before: usize = faults.hits.lock().unwrap().values().sum();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    let (code, body) = post_json(&url, &big, &[]);
    assert_eq!(code, 413, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(body["error"]["data"]["limit"], 4096, "{body}");
    let after: usize = faults.hits.lock().unwrap().values().sum();
    assert_eq!(before, after, "an oversized body was sent on");
}
