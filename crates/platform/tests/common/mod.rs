//! Starts the real `mcp-platform` binary against a real PostgreSQL (one server per test binary,
//! a database per test) and talks HTTP/1.1 to it over a plain socket.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mcp_runtime_pg_testenv::{Database, Postgres};

pub mod sentinel;

pub const ADMIN: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "bootstrap password 1";
pub const PASSWORD: &str = "a long enough pass";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "mcp-platform-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `mcp-platform` with its own database.
pub struct Platform {
    pub port: u16,
    /// The admin listener (`/metrics`, `/healthz`, `/ready`).
    pub admin_port: u16,
    pub dir: PathBuf,
    pub db: Database,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    child: Child,
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An answer: status, headers (lower-case names) and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub json: serde_json::Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error envelope's code and message (panics if this is not one).
    pub fn error(&self) -> (&str, &str) {
        let e = &self.json["error"];
        match (e["code"].as_str(), e["message"].as_str()) {
            (Some(c), Some(m)) => (c, m),
            _ => panic!("not an error envelope: {} {}", self.status, self.text),
        }
    }
}

/// How a request authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Bearer(String),
    ApiKey(String),
}

impl Platform {
    /// `mcp-platform` on a new database, with the bootstrap admin [`ADMIN`].
    pub fn start(name: &str) -> Platform {
        Self::start_with(name, &[])
    }

    pub fn start_with(name: &str, extra: &[&str]) -> Platform {
        Self::start_env(name, extra, &[])
    }

    /// Like [`Platform::start_with`], with environment variables for the binary.
    pub fn start_env(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Platform {
        let db = Postgres::shared().database(name);
        let dir = temp_dir(name);
        let key = mcp_runtime_token::SigningKey::from_seed(&[9; 32]);
        std::fs::write(dir.join("signing.pem"), key.to_pem()).unwrap();
        std::fs::write(dir.join("admin-password"), format!("{ADMIN_PASSWORD}\n")).unwrap();
        Self::spawn(
            dir,
            db,
            extra.iter().map(|s| (*s).to_owned()).collect(),
            env.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// Stops this one (SIGKILL) and starts another on the same database and flags.
    pub fn restart(mut self) -> Platform {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.clone();
        let db = self.db.clone();
        let extra = std::mem::take(&mut self.extra);
        let env = std::mem::take(&mut self.env);
        std::mem::forget(self);
        Self::spawn(dir, db, extra, env)
    }

    /// The command line of the binary for this database (to run it by hand in a test).
    pub fn command(dir: &std::path::Path, db: &Database, port: u16) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mcp-platform"));
        c.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(&db.url)
            .arg("--signing-key")
            .arg(dir.join("signing.pem"))
            .arg("--bootstrap-admin-email")
            .arg(ADMIN)
            .arg("--bootstrap-admin-password-file")
            .arg(dir.join("admin-password"))
            // Any free port: tests that read it start the binary through `spawn`.
            .env("MCP_PLATFORM_ADMIN_LISTEN", "127.0.0.1:0")
            .env_remove("RUST_LOG");
        c
    }

    fn spawn(
        dir: PathBuf,
        db: Database,
        extra: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Platform {
        let (port, admin_port) = (free_port(), free_port());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("platform.log"))
            .unwrap();
        let child = Self::command(&dir, &db, port)
            .env(
                "MCP_PLATFORM_ADMIN_LISTEN",
                format!("127.0.0.1:{admin_port}"),
            )
            .args(&extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Platform {
            port,
            admin_port,
            dir,
            db,
            extra,
            env,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = p.try_request("GET", "/healthz", &Auth::None, &[], "") {
                assert_eq!(r.status, 200);
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("mcp-platform exited ({status}):\n{}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "mcp-platform did not start:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("platform.log")).unwrap_or_default()
    }

    /// `GET path` on the admin listener.
    pub fn admin_get(&self, path: &str) -> Reply {
        http(self.admin_port, "GET", path, &[], "")
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
    }

    /// The samples of `/metrics` (`name{labels}` → value), comments left out.
    pub fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let r = self.admin_get("/metrics");
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        auth: &Auth,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Reply> {
        let mut all: Vec<(&str, String)> =
            headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => all.push(("authorization", format!("Bearer {t}"))),
            Auth::ApiKey(k) => all.push(("x-api-key", k.clone())),
        }
        http(self.port, method, path, &all, body)
    }

    /// One request; panics on a transport error.
    pub fn call(&self, method: &str, path: &str, auth: &Auth, body: &str) -> Reply {
        self.try_request(method, path, auth, &[], body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Logs in; panics unless it succeeds. Returns the access token.
    pub fn login(&self, email: &str, password: &str) -> String {
        let r = self.call(
            "POST",
            "/v1/auth/login",
            &Auth::None,
            &serde_json::json!({"email": email, "password": password}).to_string(),
        );
        assert_eq!(r.status, 200, "login {email}: {}", r.text);
        r.json["access_token"].as_str().unwrap().to_owned()
    }

    pub fn admin(&self) -> Auth {
        Auth::Bearer(self.login(ADMIN, ADMIN_PASSWORD))
    }

    /// Creates a user (as `admin`) with [`PASSWORD`] and logs them in.
    pub fn user(&self, admin: &Auth, email: &str) -> Auth {
        let r = self.call(
            "POST",
            "/v1/users",
            admin,
            &serde_json::json!({"email": email, "password": PASSWORD}).to_string(),
        );
        assert_eq!(r.status, 201, "create {email}: {}", r.text);
        Auth::Bearer(self.login(email, PASSWORD))
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (`connection: close`). The body is parsed as JSON
/// unless it is empty, the path ends in `.yaml`, or the answer is `text/*` or OpenMetrics.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).map_err(std::io::Error::other)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let not_json = headers
        .iter()
        .any(|(n, v)| n == "content-type" && (v.starts_with("text/") || v.contains("openmetrics")));
    let json = if body.is_empty() || path.ends_with(".yaml") || not_json {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).map_err(|e| {
            std::io::Error::other(format!(
                "{method} {path}: {status} body is not JSON ({e}): {body}"
            ))
        })?
    };
    Ok(Reply {
        status,
        headers,
        json,
        text: body.to_owned(),
    })
}
