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

fn post(sentinel: &Sentinel, body: &Value) -> String {
    let posted = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "x-api-key: read-and-write-key",
        ])
        .args(["--data", &body.to_string()])
        .arg(format!("{}/v1/ingest/events", sentinel.url))
        .output()
        .unwrap();
    text(&posted.stdout)
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
    assert_eq!(post(&sentinel, &batch), "200");

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

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn usage_and_status_summarise_what_sentinel_holds() {
    let dir = temp("usage");
    let sentinel = start(&dir);
    let now = jiff::Timestamp::now();
    let at = |secs: i64| (now - jiff::SignedDuration::from_secs(secs)).to_string();
    let batch = serde_json::json!({"events": [
        event("01a21a21-0000-7000-8000-000000000011", &at(300), "allow", "allowed", "echo"),
        event("01a21a21-0000-7000-8000-000000000012", &at(200), "deny", "trust_too_low", "delete_note"),
        event("01a21a21-0000-7000-8000-000000000013", &at(100), "deny", "trust_too_low", "delete_note"),
    ]});
    assert_eq!(post(&sentinel, &batch), "200");

    let out = cli(
        &["sentinel", "usage", "--window", "1h", "-o", "json"],
        &sentinel,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let u: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(u["totals"]["decisions"], 3);
    assert_eq!(u["totals"]["denied"], 2);
    assert_eq!(u["tools"][0]["tool"], "delete_note");

    let out = cli(&["sentinel", "usage", "--window", "1h"], &sentinel);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        report.contains("3 decisions: 1 allowed, 2 denied"),
        "{report}"
    );
    for section in [
        "SERVERS",
        "CALLERS",
        "TOOLS",
        "REASONS",
        "OVER TIME",
        "demo/hello",
    ] {
        assert!(report.contains(section), "{section} missing:\n{report}");
    }
    let out = cli(&["sentinel", "usage", "--window", "2y"], &sentinel);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("`window`"),
        "{}",
        text(&out.stderr)
    );

    let out = cli(&["sentinel", "status"], &sentinel);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        report.contains("sqlite") && report.contains("30 days"),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("events") && l.ends_with(" 3")),
        "{report}"
    );
    let out = cli(&["sentinel", "status", "-o", "json"], &sentinel);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["decisions"], 3);

    // Down: status fails with exit 1 and says how to start it.
    let url = sentinel.url.clone();
    let key_file = sentinel.key_file.clone();
    drop(sentinel);
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .args(["sentinel", "status", "--url", &url])
        .env("MCP_SENTINEL_API_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach Sentinel"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tail_prints_the_latest_then_follows_new_decisions() {
    let dir = temp("tail");
    let sentinel = start(&dir);
    let batch = serde_json::json!({"events": [
        event("01a21a21-0000-7000-8000-000000000021", "2026-11-26T10:00:00Z", "allow", "allowed", "first"),
        event("01a21a21-0000-7000-8000-000000000022", "2026-11-26T10:00:01Z", "allow", "allowed", "second"),
        event("01a21a21-0000-7000-8000-000000000023", "2026-11-26T10:00:02Z", "deny", "tool_denied", "third"),
    ]});
    assert_eq!(post(&sentinel, &batch), "200");

    let out = cli(&["sentinel", "tail", "-n", "2", "--no-follow"], &sentinel);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("TIME"));
    assert!(
        lines[1].contains("second") && lines[2].contains("third"),
        "oldest first: {lines:?}"
    );

    // Following: JSON lines, each new event once, including one with the same timestamp as the
    // newest already printed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .args([
            "sentinel",
            "tail",
            "-n",
            "1",
            "--interval",
            "1",
            "-o",
            "json",
        ])
        .env("MCP_SENTINEL_URL", &sentinel.url)
        .env("MCP_SENTINEL_API_KEY_FILE", &sentinel.key_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a line from tail")
    };
    let tool = |line: String| serde_json::from_str::<Value>(&line).unwrap()["tool"].clone();
    assert_eq!(tool(next()), "third");
    let more = serde_json::json!({"events": [
        event("01a21a21-0000-7000-8000-000000000024", "2026-11-26T10:00:02Z", "allow", "allowed", "same-second"),
        event("01a21a21-0000-7000-8000-000000000025", "2026-11-26T10:00:03Z", "deny", "session_revoked", "fourth"),
    ]});
    assert_eq!(post(&sentinel, &more), "200");
    let mut got = vec![tool(next()), tool(next())];
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, ["fourth", "same-second"]);
    // Nothing is printed twice.
    assert!(rx.recv_timeout(Duration::from_secs(3)).is_err());
    let _ = child.kill();
    let _ = child.wait();
    drop(sentinel);
    let _ = std::fs::remove_dir_all(&dir);
}
