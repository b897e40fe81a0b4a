//! The real `mcp-gateway` for Sentinel's tests: in front of a small upstream, callers named by
//! trusted identity headers, shipping its audit events to a Sentinel.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{KEY, Killed, Sentinel, free_port, gateway_bin, http};

/// A tool argument that must never leave the gateway in a span or a log.
pub const SECRET_ARGUMENT: &str = "hunter2-do-not-trace";

/// Server `test/py`, callers named by trusted identity headers, a read tool `echo` that alice
/// may call. Sealed (its revision computed) when written.
pub const POLICY: &str = r#"{
  "schema_version": "mcpruntime.org/policy/v1",
  "server": {"name": "py", "namespace": "test"},
  "auth": {"mode": "header"},
  "policy": {"mode": "allow-list", "default_decision": "deny"},
  "session": {"required": false},
  "tools": [{"name": "echo", "required_trust": "low", "side_effect": "read"}],
  "grants": [{
    "namespace": "test", "name": "alice", "subject": {"human_id": "alice"},
    "max_trust": "low", "allowed_side_effects": ["read"],
    "tool_rules": [{"name": "echo", "decision": "allow"}]
  }]
}"#;

/// What the upstream answers to every POST.
pub const RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"pong"}],"isError":false}}"#;

/// An MCP "server" that answers every POST with [`RESULT`] and records each request's
/// `traceparent` (`None` when absent), in order.
pub struct Upstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorded = recorded.clone();
                std::thread::spawn(move || serve(stream, &recorded));
            }
        });
        Upstream { port, seen }
    }

    pub fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

/// Keep-alive HTTP/1.1: requests one after another on the connection.
fn serve(stream: TcpStream, seen: &Mutex<Vec<Option<String>>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut traceparent = None;
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "traceparent" => traceparent = Some(value.trim().to_owned()),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        seen.lock().unwrap().push(traceparent);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{RESULT}",
            RESULT.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

pub struct Gateway {
    pub port: u16,
    pub admin_port: u16,
    _process: Killed,
}

impl Gateway {
    /// The gateway in front of `upstream`, shipping audit events to `sentinel` (its spool in
    /// `dir`), with `extra` flags.
    pub fn start(dir: &Path, upstream: &Upstream, sentinel: &Sentinel, extra: &[&str]) -> Gateway {
        let doc: mcp_runtime_policy::PolicyDocument = serde_json::from_str(POLICY).unwrap();
        let sealed = doc.seal().unwrap().to_json_pretty();
        std::fs::write(dir.join("policy.json"), sealed).unwrap();
        std::fs::write(dir.join("ingest-key"), KEY).unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let process = Command::new(gateway_bin())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--upstream", &format!("http://127.0.0.1:{}", upstream.port)])
            .arg("--policy-file")
            .arg(dir.join("policy.json"))
            .arg("--trust-identity-headers")
            .arg("--audit-ingest-url")
            .arg(format!(
                "http://127.0.0.1:{}/v1/ingest/events",
                sentinel.port
            ))
            .arg("--audit-api-key-file")
            .arg(dir.join("ingest-key"))
            .arg("--audit-spool-dir")
            .arg(dir.join("spool"))
            .args(extra)
            .env_remove("OTEL_SERVICE_NAME")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("gateway.log")).unwrap())
            .spawn()
            .unwrap();
        let gateway = Gateway {
            port,
            admin_port,
            _process: Killed(process),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(admin_port, "GET", "/ready", &[], "").ok().map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "gateway not ready:\n{}",
                std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }

    /// alice calls `echo` (with a secret argument), with these extra headers: the status and
    /// the body.
    pub fn call(&self, headers: &[(&str, &str)]) -> (u16, String) {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{SECRET_ARGUMENT}"}}}}}}"#
        );
        let mut all = vec![
            ("accept", "application/json, text/event-stream"),
            ("x-mcp-human-id", "alice"),
        ];
        all.extend_from_slice(headers);
        http(self.port, "POST", "/mcp", &all, &body).unwrap()
    }

    pub fn metrics(&self) -> String {
        http(self.admin_port, "GET", "/metrics", &[], "").unwrap().1
    }
}
