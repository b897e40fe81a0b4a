//! Starts the real `mcp-sentinel` binary and talks HTTP/1.1 to it over a plain socket.
#![allow(dead_code)]

pub mod gateway;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "ingest-key-1";
pub const READ_KEY: &str = "reader-key-1";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the system's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-sentinel-{name}-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Which store the binary under test runs on: the same API tests run on each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    ClickHouse,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::ClickHouse => "clickhouse",
        }
    }
}

/// One real ClickHouse server for the whole test binary (a database per test); the testenv's
/// watchdog stops it when the tests end.
fn clickhouse() -> &'static mcp_runtime_sentinel_testenv::ClickHouse {
    static SERVER: std::sync::OnceLock<mcp_runtime_sentinel_testenv::ClickHouse> =
        std::sync::OnceLock::new();
    SERVER.get_or_init(mcp_runtime_sentinel_testenv::ClickHouse::start)
}

/// A new directory with the ingest key file (`KEY` in plain text) and the read key file
/// (`READ_KEY` as its SHA-256 hash).
fn key_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("keys"), format!("# ingest\n{KEY}\n")).unwrap();
    std::fs::write(
        dir.join("read-keys"),
        format!("sha256:{}\n", sha256_hex(READ_KEY)),
    )
    .unwrap();
    dir
}

pub struct Sentinel {
    pub port: u16,
    /// The admin listener (`/metrics`, `/healthz`, `/ready`).
    pub admin_port: u16,
    pub dir: PathBuf,
    pub backend: Backend,
    extra: Vec<String>,
    child: Child,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sentinel {
    /// Starts `mcp-sentinel` on a free port with a database in a new directory; the ingest key
    /// file holds `KEY` in plain text, the read key file `READ_KEY` as its SHA-256 hash.
    pub fn start(name: &str, backend: Backend) -> Sentinel {
        let dir = key_dir(name);
        Self::start_in(dir, backend)
    }

    pub fn start_in(dir: PathBuf, backend: Backend) -> Sentinel {
        Self::start_with(dir, backend, &[])
    }

    /// Like [`Sentinel::start_in`], with more flags. On ClickHouse, the database is named
    /// after the directory, so a restart on the same directory finds the same events.
    pub fn start_with(dir: PathBuf, backend: Backend, extra: &[&str]) -> Sentinel {
        let mut extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        if backend == Backend::ClickHouse {
            let database: String = dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            extra.extend([
                "--store".to_owned(),
                "clickhouse".to_owned(),
                "--clickhouse-url".to_owned(),
                clickhouse().http_url(),
                "--clickhouse-database".to_owned(),
                format!("t_{database}"),
            ]);
        }
        Self::spawn(dir, backend, extra)
    }

    /// `mcp-sentinel` with exactly these extra flags (a role, Kafka, a store), in a new
    /// directory holding the usual key files.
    pub fn start_args(name: &str, extra: &[&str]) -> Sentinel {
        let dir = key_dir(name);
        Self::spawn(
            dir,
            Backend::Sqlite,
            extra.iter().map(|a| (*a).to_owned()).collect(),
        )
    }

    /// `GET path` on the admin listener: the status and the body.
    pub fn admin(&self, path: &str) -> (u16, String) {
        http(self.admin_port, "GET", path, &[], "").unwrap()
    }

    /// The process id (for its CPU time and memory in the figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The flags given beyond the usual ones (role, store, Kafka).
    pub fn extra_args(&self) -> &[String] {
        &self.extra
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops this one and starts another on the same directory (and database).
    pub fn restart(mut self) -> Sentinel {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Self::spawn(
            self.dir.clone(),
            self.backend,
            std::mem::take(&mut self.extra),
        )
    }

    fn spawn(dir: PathBuf, backend: Backend, extra: Vec<String>) -> Sentinel {
        let (port, admin_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.join("sentinel.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mcp-sentinel"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .arg("--db")
            .arg(dir.join("events.db"))
            .arg("--api-keys-file")
            .arg(dir.join("keys"))
            .arg("--read-api-keys-file")
            .arg(dir.join("read-keys"))
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Sentinel {
            port,
            admin_port,
            dir,
            backend,
            extra,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = s.try_request("GET", "/healthz", None, "") {
                assert_eq!(r.0, 200);
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "mcp-sentinel did not start: {}",
                std::fs::read_to_string(s.dir.join("sentinel.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        http(self.port, method, path, &headers, body)
    }

    /// One request; the status and the body parsed as JSON.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let (status, body) = self.try_request(method, path, key, body).unwrap();
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {path}: {status} body is not JSON ({e}): {body}"));
        (status, json)
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (`connection: close`): the status and the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
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
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, body.to_owned()))
}

/// The `mcp-gateway` binary: `MCP_GATEWAY_BIN`, else the one in this test's target directory
/// (build it first with `cargo build -p mcp-runtime-gateway`; a missing binary fails the test).
pub fn gateway_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("MCP_GATEWAY_BIN") {
        return path.into();
    }
    // Tests run from <target>/debug/deps/.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("mcp-gateway");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p mcp-runtime-gateway` first (or set MCP_GATEWAY_BIN)",
        path.display()
    );
    path
}

/// A child process killed (and reaped) on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
