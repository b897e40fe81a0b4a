//! The dashboard, tested as a person would use it: headless Chromium (Debian's package, driven
//! by `tests/browser/dashboard.mjs` with puppeteer-core) against the real services.
//!
//! Here: a real kube-apiserver with the operator, `mcp-platform --kube` on a real PostgreSQL
//! serving the dashboard at `/ui/` and reading analytics from a real `mcp-sentinel`, one team
//! (an owner and a member), an MCPServer with two tools of different required trust behind a
//! real `mcp-gateway` (in front of the example `hello-mcp-server`) that ships its decisions to
//! Sentinel, a grant, and a session issued by the platform. The member's agent calls the tools
//! with the official Python MCP SDK (`tests/peers/py_client.py`): one allowed, one denied for
//! trust. Then the owner, in the browser: logs in by keyboard, sees the decisions arrive, filters,
//! reads an explanation, asks what the agent can do, revokes the session; this test's next SDK
//! call must be denied `session_revoked`, and the browser must see that denial. Each view gets an
//! axe-core check, the keyboard order is checked, and time to first render is printed.
//!
//! ```sh
//! cargo build --workspace          # mcp-platform, mcp-gateway, mcp-sentinel, hello-mcp-server
//! scripts/peers.sh; scripts/browser-deps.sh; scripts/platform-deps.sh
//! cargo test -p mcp-runtime-operator --test dashboard -- --nocapture
//! ```
//!
//! `MCP_DASHBOARD_SCREENSHOTS=DIR` keeps the screenshots there (docs/dashboard/ holds a few);
//! otherwise they go to `target/tmp/dashboard-screenshots/`.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::gateway::*;
use common::platform::*;
use common::*;
use kube::api::PostParams;
use mcp_runtime_api::{MCPServer, ServerPhase};
use serde_json::{Value, json};

const TEAM: &str = "red";
const SERVER: &str = "notes";
const AGENT: &str = "claude";
/// Allowed: read, default (low) trust.
const ALLOWED_TOOL: &str = "echo";
/// Denied: needs high trust, the grant caps the session at medium.
const DENIED_TOOL: &str = "upper";
const INGEST_KEY: &str = "gateway-ingest-key";
const READ_KEY: &str = "platform-read-key";
/// Bound on each wait (a revocation reaching the gateway, decisions reaching Sentinel).
const BOUND: Duration = Duration::from_secs(30);
const SETUP: &str = "run scripts/browser-deps.sh";

fn cache() -> PathBuf {
    std::env::var_os("MCP_RUNTIME_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/mcp-runtime")
        })
}

/// The official Python MCP SDK's venv (scripts/peers.sh).
fn python() -> PathBuf {
    let path = std::env::var_os("PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("peers/venv/bin/python"));
    assert!(
        path.exists(),
        "no Python MCP SDK at {}: run scripts/peers.sh",
        path.display()
    );
    path
}

/// Chromium and the npm packages of tests/browser (scripts/browser-deps.sh).
fn browser_env() -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("MCP_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let modules = std::env::var_os("BROWSER_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("browser/npm/node_modules"));
    assert!(
        chromium.exists(),
        "no Chromium at {}: {SETUP}",
        chromium.display()
    );
    for module in ["puppeteer-core", "axe-core"] {
        assert!(
            modules.join(module).join("package.json").exists(),
            "no {module} in {}: {SETUP}",
            modules.display()
        );
    }
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "no `node` on PATH (Node 20 or later): install nodejs, then {SETUP}"
    );
    (chromium, modules)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_path_buf()
}

/// The server: two read tools, `upper` needing more trust than the grant allows.
fn server() -> MCPServer {
    yaml(&format!(
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPServer\nmetadata: {{name: {SERVER}}}\nspec:\n  image: ghcr.io/acme/{SERVER}:1\n  description: Notes of the red team\n  tools:\n    - {{name: {ALLOWED_TOOL}, sideEffect: read}}\n    - {{name: {DENIED_TOOL}, sideEffect: read, requiredTrust: high}}\n  session: {{required: true}}\n  gateway: {{enabled: true}}\n"
    ))
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
async fn wait_listening(port: u16, what: &str, process: &mut mcp_runtime_kube_testenv::Process) {
    let deadline = Instant::now() + BOUND;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = process.try_wait() {
            panic!("{what} exited ({status})\n{}", process.log_tail(30));
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening\n{}",
            process.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `tools/call` by the official Python SDK through the gateway: `Ok(text)` or
/// `Err(reason)` (the gateway's `error.data.reason`).
fn sdk_call(url: &str, token: &str, tool: &str) -> Result<String, String> {
    let out = Command::new(python())
        .arg(repo_root().join("tests/peers/py_client.py"))
        .args(["--url", url, "--token", token, "--timeout", "20"])
        .args(["call", tool, r#"{"text": "hello"}"#])
        .output()
        .expect("run py_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "py_client.py printed no JSON ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    if let Some(result) = last.get("result") {
        assert_ne!(result["isError"], true, "{tool} failed in the tool: {last}");
        return Ok(result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned());
    }
    match last.pointer("/error/data/reason").and_then(Value::as_str) {
        Some(reason) => Err(reason.to_owned()),
        None => panic!("{tool}: neither a result nor a denial: {last}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_sees_decisions_explains_one_revokes_the_session_and_the_next_call_is_denied() {
    let (chromium, modules) = browser_env();
    python(); // fails now, naming scripts/peers.sh, rather than after the set-up
    let c = cluster();
    let client = c.env.client().await;

    // Sentinel (embedded SQLite): the gateway writes with the ingest key, the platform reads
    // with the (unscoped) read key.
    let sentinel_dir = c
        .env
        .dir()
        .join(format!("dashboard-sentinel-{}", std::process::id()));
    std::fs::create_dir_all(&sentinel_dir).unwrap();
    std::fs::write(sentinel_dir.join("ingest-keys"), format!("{INGEST_KEY}\n")).unwrap();
    std::fs::write(sentinel_dir.join("read-keys"), format!("{READ_KEY}\n")).unwrap();
    std::fs::write(sentinel_dir.join("gateway-key"), INGEST_KEY).unwrap();
    std::fs::write(sentinel_dir.join("platform-key"), format!("{READ_KEY}\n")).unwrap();
    let sentinel_port = free_port();
    let mut cmd = Command::new(sibling_binary("mcp-sentinel"));
    cmd.args(["--listen", &format!("127.0.0.1:{sentinel_port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--db")
        .arg(sentinel_dir.join("events.db"))
        .arg("--api-keys-file")
        .arg(sentinel_dir.join("ingest-keys"))
        .arg("--read-api-keys-file")
        .arg(sentinel_dir.join("read-keys"));
    let mut sentinel = c
        .env
        .spawn(
            "mcp-sentinel",
            cmd,
            &c.env.log_dir().join("dashboard-sentinel.log"),
        )
        .expect("spawn mcp-sentinel");
    wait_listening(sentinel_port, "mcp-sentinel", &mut sentinel).await;

    let sentinel_url = format!("http://127.0.0.1:{sentinel_port}");
    let platform_key = sentinel_dir.join("platform-key");
    let platform = Platform::start(
        c.env,
        "dashboard",
        "dashboard",
        &[
            "--sentinel-url",
            &sentinel_url,
            "--sentinel-read-key-file",
            platform_key.to_str().unwrap(),
        ],
    )
    .await;

    // rita owns red; alice, a member, is granted the server up to medium trust.
    let admin = platform.login(ADMIN, PASSWORD);
    for name in ["rita", "alice"] {
        platform.expect(
            "POST",
            "/v1/users",
            &admin,
            Some(json!({"email": email(name), "password": PASSWORD})),
            201,
        );
    }
    platform.expect(
        "POST",
        "/v1/teams",
        &admin,
        Some(json!({"slug": TEAM, "display_name": "Red team", "owner": email("rita")})),
        201,
    );
    platform.expect(
        "POST",
        &format!("/v1/teams/{TEAM}/members"),
        &admin,
        Some(json!({"email": email("alice"), "role": "member"})),
        200,
    );
    let ns = format!("mcp-team-{TEAM}");
    server_api(&client, &ns)
        .create(&PostParams::default(), &server())
        .await
        .unwrap_or_else(|e| panic!("creating {ns}/{SERVER}: {e}"));
    let rita = platform.login(&email("rita"), PASSWORD);
    platform.expect(
        "POST",
        &format!("/v1/teams/{TEAM}/grants"),
        &rita,
        Some(json!({"name": "alice-notes", "spec": {
            "serverRef": {"name": SERVER},
            "subject": {"humanID": email("alice")},
            "maxTrust": "medium",
            "allowedSideEffects": ["read"],
        }})),
        201,
    );
    let alice = platform.login(&email("alice"), PASSWORD);
    let session = platform.expect(
        "POST",
        "/v1/runtime/adapter/sessions",
        &alice,
        Some(json!({"server": SERVER, "agent": AGENT, "team": TEAM, "requested_trust": "high"})),
        200,
    );
    assert_eq!(session["consented_trust"], "medium", "{session}");
    let session_name = session["name"].as_str().unwrap().to_owned();
    let token = session["token"].as_str().unwrap().to_owned();

    // The gateway, once the operator has the server Ready and the session in its policy, in
    // front of the example server, shipping its decisions to Sentinel.
    wait_phase(&server_api(&client, &ns), SERVER, ServerPhase::Ready).await;
    wait_policy(
        &client,
        &ns,
        SERVER,
        "the issued session in the policy",
        |d| d.sessions.iter().any(|s| s.name == session_name),
    )
    .await;
    let upstream_port = free_port();
    let mut cmd = Command::new(sibling_binary("hello-mcp-server"));
    cmd.args(["--listen", &format!("127.0.0.1:{upstream_port}")]);
    let mut upstream = c
        .env
        .spawn(
            "hello-mcp-server",
            cmd,
            &c.env.log_dir().join("dashboard-upstream.log"),
        )
        .expect("spawn hello-mcp-server");
    wait_listening(upstream_port, "hello-mcp-server", &mut upstream).await;
    let ingest_url = format!("{sentinel_url}/v1/ingest/events");
    let gateway_key = sentinel_dir.join("gateway-key");
    let (_gateway, gateway_port) = start_gateway_with(
        c.env,
        &ns,
        SERVER,
        &platform.dir.join("signing.pub"),
        &format!("http://127.0.0.1:{upstream_port}"),
        &[
            "--audit-ingest-url",
            &ingest_url,
            "--audit-api-key-file",
            gateway_key.to_str().unwrap(),
        ],
    )
    .await;
    let mcp_url = format!("http://127.0.0.1:{gateway_port}/mcp");

    // Real SDK calls: the decisions the dashboard must show.
    for _ in 0..2 {
        assert_eq!(
            sdk_call(&mcp_url, &token, ALLOWED_TOOL),
            Ok("hello".to_owned())
        );
        assert_eq!(
            sdk_call(&mcp_url, &token, DENIED_TOOL),
            Err("trust_too_low".to_owned())
        );
    }

    // The browser, as rita.
    let screenshots = std::env::var_os("MCP_DASHBOARD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots"));
    let config = json!({
        "url": format!("{}/ui/", platform.url()),
        "email": email("rita"),
        "password": PASSWORD,
        "team": TEAM,
        "server": SERVER,
        "human": email("alice"),
        "agent": AGENT,
        "session": session_name,
        "allowed_tool": ALLOWED_TOOL,
        "denied_tool": DENIED_TOOL,
        "denied_reason": "trust_too_low",
        "screenshots": screenshots,
        "wait_seconds": BOUND.as_secs(),
    });
    let started = Instant::now();
    let mut browser = Command::new("node")
        .arg(repo_root().join("tests/browser/dashboard.mjs"))
        .env("DASHBOARD_TEST", config.to_string())
        .env("MCP_CHROMIUM", &chromium)
        .env("BROWSER_NODE_MODULES", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node tests/browser/dashboard.mjs");
    let mut to_browser = browser.stdin.take().unwrap();
    let from_browser = BufReader::new(browser.stdout.take().unwrap());
    let mut result = None;
    let mut denied_after = None;
    let mut allowed_after_revoke = 0;
    // The script's stdout, line by line; blocking reads are fine: nothing else runs meanwhile.
    for line in from_browser.lines() {
        let line = line.expect("the script's stdout");
        eprintln!("browser: {line}");
        if let Some(name) = line.strip_prefix("REVOKED ") {
            assert_eq!(name, session_name);
            // The revocation travels platform → apiserver → operator → policy → gateway: the
            // next call is denied once it arrives (bounded, like tests/teams.rs).
            let t0 = Instant::now();
            let answer = loop {
                match sdk_call(&mcp_url, &token, ALLOWED_TOOL) {
                    Err(reason) => break Err(reason),
                    Ok(_) if t0.elapsed() > BOUND => break Ok(()),
                    Ok(_) => {
                        allowed_after_revoke += 1;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            };
            let reply = match &answer {
                Err(reason) => format!("DENIED {reason}"),
                Ok(()) => format!("FAILED still allowed {BOUND:?} after the revocation"),
            };
            writeln!(to_browser, "{reply}").expect("answer the script");
            assert_eq!(
                answer,
                Err("session_revoked".to_owned()),
                "the call after the Revoke click"
            );
            denied_after = Some(t0.elapsed());
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<Value>(json).expect("RESULT is JSON"));
        }
    }
    let status = browser.wait().expect("the script ends");
    let result = result.expect("the script printed no RESULT line");
    eprintln!(
        "\nRESULT dashboard journey in {:.1} s (browser {} s)\n  first render: {}\n  bytes: {}\n  \
         accessibility (all impacts): {}\n  after the Revoke click: {} SDK calls allowed, then \
         denied; {} from the click's answer to the denial (each call starts Python)\n  \
         screenshots: {}",
        started.elapsed().as_secs_f64(),
        result["seconds"],
        result["first_render"],
        result["bytes"],
        result["accessibility"],
        allowed_after_revoke,
        denied_after.map(ms).unwrap_or_else(|| "-".into()),
        screenshots.display(),
    );
    assert!(
        status.success(),
        "the browser journey failed ({status}):\n  {}",
        result["failures"]
            .as_array()
            .map(|f| f
                .iter()
                .map(|x| x.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n  "))
            .unwrap_or_default()
    );
    assert!(
        denied_after.is_some(),
        "the script never revoked the session"
    );
    assert_no_forbidden(c.operator.lock().unwrap().log());
}
