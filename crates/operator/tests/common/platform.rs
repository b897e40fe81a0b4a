//! The real `mcp-platform --kube` against the shared control plane and a real PostgreSQL
//! (crates/pg-testenv), with a bootstrap admin and a session-token signing key whose public half
//! (`signing.pub` in [`Platform::dir`]) is what gateways trust; and its HTTP API.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mcp_runtime_kube_testenv::{Process, TestEnv};
use mcp_runtime_pg_testenv::Postgres;
use mcp_runtime_token::SigningKey;
use serde_json::{Value, json};

use super::{free_port, http_get};

pub const ADMIN: &str = "admin@example.com";
/// Every test user's password (the bootstrap admin's too).
pub const PASSWORD: &str = "a long enough password";
/// How long the platform may take to answer `/healthz`.
const START: Duration = Duration::from_secs(30);

/// `mcp-platform`, built next to the operator (`cargo build --workspace`).
pub fn platform_binary() -> PathBuf {
    sibling_binary("mcp-platform")
}

/// A binary of the workspace built next to the operator; fails naming the build to run.
pub fn sibling_binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_mcp-runtime-operator"))
        .parent()
        .expect("the operator binary has a directory")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The platform's HTTP API on 127.0.0.1 (one request per connection), and its process.
pub struct Platform {
    pub port: u16,
    /// Holds `signing.pub`, the key gateways must trust for the platform's session tokens.
    pub dir: PathBuf,
    pub process: Process,
}

impl Platform {
    /// Starts `mcp-platform --kube` (database `db_hint`, log `<name>-platform.log`) with
    /// `extra` flags, and waits until it answers `/healthz`.
    pub async fn start(env: &TestEnv, name: &str, db_hint: &str, extra: &[&str]) -> Platform {
        let bin = platform_binary();
        let dir = env
            .dir()
            .join(format!("{name}-platform-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = SigningKey::from_seed(&[42; 32]);
        std::fs::write(dir.join("signing.pem"), key.to_pem()).unwrap();
        std::fs::write(dir.join("signing.pub"), key.public_pem()).unwrap();
        std::fs::write(dir.join("admin-password"), format!("{PASSWORD}\n")).unwrap();
        let db = Postgres::shared().database(db_hint);
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", env.kubeconfig())
            .env("RUST_LOG", "info")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // Not the default 9097: other platforms may run on this machine.
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--database-url", &db.url])
            .arg("--signing-key")
            .arg(dir.join("signing.pem"))
            .args(["--bootstrap-admin-email", ADMIN])
            .arg("--bootstrap-admin-password-file")
            .arg(dir.join("admin-password"))
            .arg("--kube")
            .args(extra);
        let mut process = env
            .spawn(
                "mcp-platform",
                cmd,
                &env.log_dir().join(format!("{name}-platform.log")),
            )
            .expect("spawn mcp-platform");
        let deadline = Instant::now() + START;
        while http_get(&format!("127.0.0.1:{port}"), "/healthz")
            .map(|r| r.0)
            .ok()
            != Some(200)
        {
            if let Some(status) = process.try_wait() {
                panic!("mcp-platform exited ({status})\n{}", process.log_tail(30));
            }
            assert!(
                Instant::now() < deadline,
                "mcp-platform not up\n{}",
                process.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Platform { port, dir, process }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: platform\r\nconnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    pub fn expect(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let (got, answer) = self.call(method, path, Some(token), body);
        assert_eq!(got, status, "{method} {path}: {answer}");
        answer
    }

    pub fn login(&self, email: &str, password: &str) -> String {
        let (status, answer) = self.call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        );
        assert_eq!(status, 200, "login {email}: {answer}");
        answer["access_token"].as_str().unwrap().to_owned()
    }
}

pub fn email(name: &str) -> String {
    format!("{name}@example.com")
}
