//! `mcp-runtime sentinel events|stats` against the real `mcp-sentinel` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mcp_runtime_testkit::workspace_root;
use serde_json::Value;

/// The workspace's `mcp-sentinel` (built with the workspace; MCP_SENTINEL_BIN overrides).
fn sentinel_bin() -> PathBuf {
    let path = std::env::var_os("MCP_SENTINEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/mcp-sentinel"));
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (scripts/test.sh does)",
        path.display()
    );
    path
}

struct Sentinel {
    child: Child,
    url: String,
    key_file: PathBuf,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Sentinel {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key_file = dir.join("key");
    std::fs::write(&key_file, "read-and-write-key\n").unwrap();
    let child = Command::new(sentinel_bin())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        // Not used here; any free port, so that tests running side by side do not collide.
        .args(["--admin-listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(dir.join("sentinel.db"))
        .arg("--api-keys-file")
        .arg(&key_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mcp-sentinel did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Sentinel {
        child,
        url: format!("http://127.0.0.1:{port}"),
        key_file,
    }
}

fn event(id: &str, time: &str, decision: &str, reason: &str, tool: &str) -> Value {
    serde_json::json!({
        "event_id": id, "time": time, "source": "hello-gateway", "server": "hello",
        "namespace": "demo", "human_id": "alice", "agent_id": "claude", "http_method": "POST",
        "rpc_method": "tools/call", "tool": tool, "decision": decision, "reason": reason,
        "enforced": true, "latency_ms": 0.5
    })
}

fn cli(args: &[&str], sentinel: &Sentinel) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .args(args)
        .env("MCP_SENTINEL_URL", &sentinel.url)
        .env("MCP_SENTINEL_API_KEY_FILE", &sentinel.key_file)
        .env("COLUMNS", "120")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn events_and_stats_come_from_sentinel() {
    let dir = std::env::temp_dir().join(format!("mcp-cli-sentinel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sentinel = start(&dir);
    let batch = serde_json::json!({"events": [
        event("01a21a21-0000-7000-8000-000000000001", "2026-11-26T10:00:00Z", "allow", "allowed", "echo"),
        event("01a21a21-0000-7000-8000-000000000002", "2026-11-26T10:00:01Z", "deny", "trust_too_low", "upper"),
        event("01a21a21-0000-7000-8000-000000000003", "2026-11-26T10:00:02Z", "deny", "tool_denied", "delete_note"),
    ]});
    let posted = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "x-api-key: read-and-write-key",
        ])
        .args(["--data", &batch.to_string()])
        .arg(format!("{}/v1/ingest/events", sentinel.url))
        .output()
        .unwrap();
    assert_eq!(text(&posted.stdout), "200");

    // JSON: the filter applies, newest first, pages follow the cursor.
    let out = cli(
        &[
            "sentinel",
            "events",
            "--decision",
            "deny",
            "--limit",
            "1",
            "-o",
            "json",
        ],
        &sentinel,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["events"][0]["tool"], "delete_note");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let out = cli(
        &[
            "sentinel",
            "events",
            "--decision",
            "deny",
            "--limit",
            "1",
            "--cursor",
            &cursor,
            "-o",
            "json",
        ],
        &sentinel,
    );
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["events"][0]["tool"], "upper");

    // Table: one line per decision, with the call and the reason.
    let out = cli(
        &["sentinel", "events", "--since", "2026-11-26T10:00:01+00:00"],
        &sentinel,
    );
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(table.starts_with("TIME"), "{table}");
    assert!(
        table.contains("trust_too_low") && table.contains("delete_note"),
        "{table}"
    );
    assert!(!table.contains("echo"), "--since did not apply:\n{table}");

    // Stats add up.
    let out = cli(
        &["sentinel", "stats", "--server", "hello", "-o", "json"],
        &sentinel,
    );
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["decisions"], 3);
    assert_eq!(stats["by_decision"]["deny"], 2);
    let out = cli(&["sentinel", "stats"], &sentinel);
    assert!(
        text(&out.stdout).contains("trust_too_low"),
        "{}",
        text(&out.stdout)
    );

    // A wrong key and a bad filter fail with exit 1 and say what to do.
    std::fs::write(&sentinel.key_file, "wrong").unwrap();
    let out = cli(&["sentinel", "events"], &sentinel);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("refused the key"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&sentinel.key_file, "read-and-write-key").unwrap();
    let out = cli(&["sentinel", "events", "--since", "yesterday"], &sentinel);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("since"), "{}", text(&out.stderr));
    drop(sentinel);
    let _ = std::fs::remove_dir_all(&dir);
}
