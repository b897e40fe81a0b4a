//! Starts the real `mcp-sentinel` binary (SQLite store) for the analytics tests. It is another
//! crate's binary, so Cargo does not build it for these tests: run
//! `cargo build -p mcp-runtime-sentinel` first, or point `MCP_SENTINEL_BIN` at one.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Reply, free_port, http, temp_dir};

/// The key producers ingest with.
pub const INGEST_KEY: &str = "test-ingest-key";
/// The read key the platform presents (unscoped).
pub const READ_KEY: &str = "test-platform-read-key";

/// The `mcp-sentinel` binary: `MCP_SENTINEL_BIN`, else the one next to this test's target
/// directory (a missing binary fails the test, naming the command that builds it).
pub fn sentinel_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("MCP_SENTINEL_BIN") {
        return path.into();
    }
    // Tests run from <target>/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("mcp-sentinel");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p mcp-runtime-sentinel` first (or set MCP_SENTINEL_BIN)",
        path.display()
    );
    path
}

/// A running `mcp-sentinel`, killed on drop.
pub struct Sentinel {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Sentinel {
    pub fn start(name: &str) -> Sentinel {
        let dir = temp_dir(&format!("sentinel-{name}"));
        std::fs::write(dir.join("ingest-keys"), format!("{INGEST_KEY}\n")).unwrap();
        std::fs::write(dir.join("read-keys"), format!("{READ_KEY}\n")).unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let child = Command::new(sentinel_bin())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .arg("--db")
            .arg(dir.join("events.db"))
            .arg("--api-keys-file")
            .arg(dir.join("ingest-keys"))
            .arg("--read-api-keys-file")
            .arg(dir.join("read-keys"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sentinel.log")).unwrap())
            .spawn()
            .unwrap();
        let mut s = Sentinel { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http(port, "GET", "/healthz", &[], "") {
                assert_eq!(r.status, 200);
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("mcp-sentinel exited ({status}):\n{}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "mcp-sentinel did not start:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sentinel.log")).unwrap_or_default()
    }

    /// Kills it (SIGKILL), as a crash would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ingests `events` (envelopes) with the ingest key; panics unless all are accepted.
    pub fn ingest(&self, events: &[serde_json::Value]) {
        let body = serde_json::json!({ "events": events }).to_string();
        let r = http(
            self.port,
            "POST",
            "/v1/ingest/events",
            &[("x-api-key", INGEST_KEY.to_owned())],
            &body,
        )
        .unwrap();
        assert_eq!(r.status, 200, "ingest: {}", r.text);
        assert_eq!(r.json["accepted"], events.len(), "ingest: {}", r.text);
    }

    /// `GET path` on Sentinel's read API with the read key (to compare with the platform).
    pub fn read(&self, path: &str) -> Reply {
        http(
            self.port,
            "GET",
            path,
            &[("x-api-key", READ_KEY.to_owned())],
            "",
        )
        .unwrap()
    }
}
