//! `mcp-runtime dev` on the example: a newcomer's first governed endpoint, called with the
//! official Python SDK client using the token `dev` prints. The example sits in a scratch git
//! repository laid out as this one (its `.gitignore` at the root, the example in
//! `examples/hello`), so the test sees what `git status` would show a newcomer afterwards.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn workspace_binary(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_mcp-gateway"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

#[test]
fn dev_serves_the_example_behind_the_gateway() {
    let peers = peers();
    let scratch = tempdir("dev");
    // Copy the example so the test never writes into the repository.
    let work = scratch.join("repo/examples/hello");
    let state_home = scratch.join("state");
    let example = repo_root().join("examples/hello");
    for sub in [".mcp", "access"] {
        std::fs::create_dir_all(work.join(sub)).unwrap();
        for entry in std::fs::read_dir(example.join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), work.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    std::fs::copy(
        repo_root().join(".gitignore"),
        scratch.join("repo/.gitignore"),
    )
    .unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(scratch.join("repo"))
            .args(args)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "example"]);
    let (port, admin, server_port, sentinel_port) =
        (free_port(), free_port(), free_port(), free_port());
    let mut child = Command::new(workspace_binary("mcp-runtime"))
        .args([
            "dev",
            "--port",
            &port.to_string(),
            "--admin-port",
            &admin.to_string(),
            "--server-port",
            &server_port.to_string(),
            "--sentinel-port",
            &sentinel_port.to_string(),
        ])
        .current_dir(&work)
        .env("XDG_STATE_HOME", &state_home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the server and gateway it starts are stopped with it (as
        // Ctrl-C does in a terminal).
        .process_group(0)
        .spawn()
        .unwrap();
    let group = format!("-{}", child.id());
    let stop = move || {
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut token = None;
    let mut saw_sentinel = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("MCP endpoint: ") {
            url = Some(u.to_owned());
        }
        if let Some(rest) = line.strip_prefix("token for session demo/alice-claude: ") {
            token = Some(rest.to_owned());
        }
        if line.starts_with("decisions: Sentinel at") {
            saw_sentinel = true;
        }
        if line.starts_with("call it with") {
            break;
        }
    }
    let (url, token) = match (url, token) {
        (Some(u), Some(t)) => (u, t),
        _ => {
            stop();
            let out = child.wait_with_output().unwrap();
            panic!(
                "dev printed no endpoint/token:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let call = |era: &str, tool: &str| {
        let out = Command::new(&peers.python)
            .arg(repo_root().join("tests/peers/py_client.py"))
            .args([
                "--url",
                &url,
                "--era",
                era,
                "--token",
                &token,
                "--timeout",
                "20",
                "call",
                tool,
                r#"{"text":"hello"}"#,
            ])
            .output()
            .unwrap();
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (out.status.code(), lines)
    };
    for era in ["handshake", "stateless"] {
        let (code, lines) = call(era, "echo");
        assert_eq!(code, Some(0), "{era}: {lines:?}");
        assert_eq!(lines[0]["result"]["content"][0]["text"], "hello", "{era}");
        let (code, lines) = call(era, "upper");
        assert_eq!(code, Some(3), "{era}: {lines:?}");
        assert_eq!(
            lines[0]["error"]["data"]["reason"], "trust_too_low",
            "{era}"
        );
    }
    assert!(saw_sentinel, "dev did not say where the decisions go");

    // The decisions, allowed and denied, are queryable through Sentinel with the CLI alone:
    // `sentinel events` finds dev's Sentinel key by itself.
    let query = |tool: &str| -> Vec<Value> {
        let out = Command::new(workspace_binary("mcp-runtime"))
            .args(["sentinel", "events", "--tool", tool, "-o", "json"])
            .env(
                "MCP_SENTINEL_URL",
                format!("http://127.0.0.1:{sentinel_port}"),
            )
            .env_remove("MCP_SENTINEL_API_KEY_FILE")
            .env("XDG_STATE_HOME", &state_home)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sentinel events: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let page: Value = serde_json::from_slice(&out.stdout).unwrap();
        page["events"].as_array().unwrap().clone()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (echo, upper) = loop {
        let (echo, upper) = (query("echo"), query("upper"));
        if echo.len() >= 2 && upper.len() >= 2 {
            break (echo, upper);
        }
        if std::time::Instant::now() > deadline {
            stop();
            panic!("Sentinel did not receive the decisions: echo {echo:?}, upper {upper:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        echo.iter()
            .all(|e| e["decision"] == "allow" && e["human_id"] == "alice")
    );
    assert!(
        upper
            .iter()
            .all(|e| e["decision"] == "deny" && e["reason"] == "trust_too_low")
    );
    stop();
    let _ = child.wait();

    // Nothing new for git to commit in the project; the signing key, created 0600, is outside.
    let status = git(&["status", "--porcelain", "--untracked-files=all"]);
    assert_eq!(status, "", "dev left files to commit in the project");
    let state_dirs: Vec<PathBuf> = std::fs::read_dir(state_home.join("mcp-runtime/dev"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(state_dirs.len(), 1, "{state_dirs:?}");
    // The signing key and Sentinel's API key (one per user, beside the projects' state).
    for key in [
        state_dirs[0].join("token.key"),
        state_home.join("mcp-runtime/dev/sentinel.key"),
    ] {
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", key.display());
    }
}

/// Copies the example's `.mcp` and `access` into `dir`, so a test never writes into the
/// repository.
fn copy_example(dir: &std::path::Path) {
    let example = repo_root().join("examples/hello");
    for sub in [".mcp", "access"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(example.join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
}

/// A stateless MCP call of `tool` with `token`: the HTTP status and the denial reason, if any.
fn call_tool(url: &str, token: &str, tool: &str) -> (u16, Option<String>) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"x"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let auth = format!("Bearer {token}");
    let (status, head, body) = post(
        url,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
            ("authorization", &auth),
        ],
        body.as_bytes(),
    );
    // The answer is JSON, or one server-sent event carrying it.
    let json = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&body);
    let v: Value = serde_json::from_str(json).unwrap_or_else(|_| panic!("{head}{body}"));
    let reason = v["error"]["data"]["reason"].as_str().map(str::to_owned);
    if reason.is_none() {
        assert_eq!(v["result"]["content"][0]["text"], "x", "{head}{body}");
    }
    (status, reason)
}

/// Retries `f` until it returns `Some`, for at most `secs` seconds.
fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
}

#[test]
fn dev_serves_the_dashboard_on_loopback_from_the_project() {
    let scratch = tempdir("dev-dashboard");
    let work = scratch.join("hello");
    copy_example(&work);
    let (port, admin, server_port, sentinel_port, dashboard_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let mut child = Command::new(workspace_binary("mcp-runtime"))
        .args(["dev", "--port", &port.to_string()])
        .args(["--admin-port", &admin.to_string()])
        .args(["--server-port", &server_port.to_string()])
        .args(["--sentinel-port", &sentinel_port.to_string()])
        .args(["--dashboard-port", &dashboard_port.to_string()])
        .current_dir(&work)
        .env("XDG_STATE_HOME", scratch.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = format!("-{}", child.id());
    let stdout = child.stdout.take().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    /// Stops dev and what it started (its process group), whatever the test's outcome.
    struct Stop(String, std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-KILL", "--", &self.0]).status();
            let _ = self.1.wait();
        }
    }
    let stop = Stop(group, child);
    let (mut url, mut token, mut dashboard) = (None, None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("MCP endpoint: ") {
            url = Some(u.to_owned());
        }
        if let Some(t) = line.strip_prefix("token for session demo/alice-claude: ") {
            token = Some(t.to_owned());
        }
        if let Some(d) = line.strip_prefix("dashboard: ") {
            dashboard = Some(d.to_owned());
            break;
        }
    }
    let (Some(url), Some(token), Some(dashboard)) = (url, token, dashboard) else {
        drop(stop);
        let rest: Vec<String> = stderr.by_ref().map_while(|l| l.ok()).collect();
        panic!(
            "dev printed no endpoint, token or dashboard URL:\n{}",
            rest.join("\n")
        );
    };
    // The README's first command ends with where to look.
    let base = format!("http://127.0.0.1:{dashboard_port}");
    assert_eq!(dashboard, format!("{base}/ui/"));
    let get =
        |path: &str, headers: &[(&str, &str)]| send("GET", &format!("{base}{path}"), headers, b"");
    let get_json = |path: &str| -> Value {
        let (status, head, body) = get(path, &[]);
        assert_eq!(status, 200, "GET {path}: {head}{body}");
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("GET {path}: {body}"))
    };
    let post_to = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        post(&format!("{base}{path}"), headers, body)
    };

    // The page, with the platform's headers; revalidated with its ETag.
    let (status, head, body) = get("/ui/", &[]);
    assert_eq!(status, 200, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(head.contains("referrer-policy: no-referrer"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(body.contains("app.js"), "{body}");
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(get("/ui/", &[("if-none-match", &etag)]).0, 304);
    let (status, head, _) = get("/", &[]);
    assert_eq!(status, 302);
    assert!(
        head.to_ascii_lowercase().contains("location: /ui/"),
        "{head}"
    );

    // No login on loopback: the local user, admin of the one team, the server's namespace.
    let me = get_json("/v1/auth/me");
    assert_eq!(me["user"]["email"], "you@localhost");
    assert_eq!(me["user"]["role"], "admin");
    assert_eq!(me["teams"][0]["slug"], "dev");
    assert_eq!(me["teams"][0]["namespace"], "demo");
    // ...but only for this origin: another site's page (or a rebound DNS name) is refused.
    assert_eq!(get("/v1/auth/me", &[("host", "evil.example")]).0, 403);
    let servers = get_json("/v1/teams/dev/servers");
    let server = &servers["servers"][0];
    assert_eq!(
        (&server["name"], &server["namespace"]),
        (&"hello".into(), &"demo".into())
    );
    assert_eq!(server["gateway"]["ready"], true);
    let upper_decl = server["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "upper")
        .unwrap();
    assert_eq!(upper_decl["required_trust"], "medium");
    let grants = get_json("/v1/teams/dev/grants");
    assert_eq!(grants["grants"][0]["name"], "alice-hello");
    assert_eq!(grants["grants"][0]["spec"]["maxTrust"], "high");
    assert_eq!(
        get_json("/v1/api-keys"),
        serde_json::json!({"api_keys": []})
    );

    // Real calls through the gateway, as the README makes them.
    assert_eq!(call_tool(&url, &token, "echo").1, None);
    assert_eq!(
        call_tool(&url, &token, "upper").1.as_deref(),
        Some("trust_too_low")
    );

    // Both decisions, through dev's Sentinel.
    let events = eventually(30, "both decisions in the analytics", || {
        let page = get_json("/v1/teams/dev/analytics/events?limit=50");
        let events = page["events"].as_array().unwrap().clone();
        let has = |tool: &str, decision: &str| {
            events
                .iter()
                .any(|e| e["tool"] == tool && e["decision"] == decision)
        };
        (has("echo", "allow") && has("upper", "deny")).then_some(events)
    });
    let denied = events.iter().find(|e| e["tool"] == "upper").unwrap();
    assert_eq!(denied["reason"], "trust_too_low");

    // The denial explained as the dashboard asks: the event's caller, at its time.
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let who = format!(
        "human={}&agent={}&session={}",
        text(&denied["human_id"]),
        text(&denied["agent_id"]),
        text(&denied["session_id"]).replace('/', "%2F")
    );
    let x = get_json(&format!(
        "/v1/teams/dev/servers/hello/explain?kind=tool&name=upper&{who}&at={}",
        text(&denied["time"])
            .replace(':', "%3A")
            .replace('+', "%2B")
    ));
    assert_eq!(x["decision"]["allowed"], false, "{x}");
    assert_eq!(x["decision"]["reason"], "trust_too_low", "{x}");
    assert_eq!(x["server"], "demo/hello");
    assert!(
        x["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["text"].is_string()),
        "{x}"
    );
    assert!(!x["steps"].as_array().unwrap().is_empty());
    assert!(text(&x["hint"]).contains("access/*.yaml"), "{x}");
    let c = get_json(&format!("/v1/teams/dev/servers/hello/capabilities?{who}"));
    let verdict = |name: &str| {
        let item = c["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap();
        (item["allowed"].as_bool().unwrap(), text(&item["reason"]))
    };
    assert_eq!(c["admission"]["allowed"], true, "{c}");
    assert_eq!(verdict("echo"), (true, "allowed".into()));
    assert_eq!(verdict("upper"), (false, "trust_too_low".into()));
    assert!(!verdict("delete_note").0);
    assert_eq!(
        get("/v1/teams/dev/servers/other/explain?kind=tool&name=x", &[]).0,
        404
    );

    // Another site's page cannot revoke (its browser sends its Origin).
    let (status, _, _) = post_to(
        "/v1/teams/dev/sessions/alice-claude/revoke",
        &[("origin", "http://evil.example")],
        b"",
    );
    assert_eq!(status, 403);
    assert_eq!(call_tool(&url, &token, "echo").1, None);

    // Revoked from the dashboard: the next call is denied; unrevoked: allowed again.
    let (status, _, body) = post_to(
        "/v1/teams/dev/sessions/alice-claude/revoke",
        &[("origin", &base)],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["session"]["spec"]["revoked"], true, "{answer}");
    assert_eq!(answer["session"]["phase"], "Revoked", "{answer}");
    eventually(10, "the revocation enforced", || {
        (call_tool(&url, &token, "echo").1.as_deref() == Some("session_revoked")).then_some(())
    });
    let sessions = get_json("/v1/teams/dev/sessions");
    assert_eq!(sessions["sessions"][0]["spec"]["revoked"], true);
    let (status, _, body) = post_to("/v1/teams/dev/sessions/alice-claude/unrevoke", &[], b"");
    assert_eq!(status, 200, "{body}");
    eventually(10, "the unrevocation enforced", || {
        call_tool(&url, &token, "echo").1.is_none().then_some(())
    });
    let reported: Vec<String> = stderr
        .by_ref()
        .map_while(|l| l.ok())
        .take_while(|l| !l.contains("alice-claude unrevoked"))
        .collect();
    assert!(
        reported
            .iter()
            .any(|l| l.contains("session demo/alice-claude revoked from the dashboard")),
        "{reported:?}"
    );

    // Grants are the project's files.
    let (status, head, body) = post_to(
        "/v1/teams/dev/grants",
        &[("content-type", "application/json")],
        br#"{"name":"bob","spec":{"serverRef":{"name":"hello"},"subject":{"humanID":"bob"}}}"#,
    );
    assert_eq!(status, 405, "{head}{body}");
    assert!(
        body.contains("edit access/*.yaml (the policy is re-rendered on save)"),
        "{body}"
    );
    assert_eq!(
        send(
            "DELETE",
            &format!("{base}/v1/teams/dev/sessions/alice-claude"),
            &[],
            b""
        )
        .0,
        405
    );
    assert_eq!(get("/v1/teams/other/grants", &[]).0, 404);
}

#[test]
fn dev_without_sentinel_answers_analytics_unavailable_and_without_dashboard_prints_no_url() {
    let scratch = tempdir("dev-no-sentinel");
    let work = scratch.join("hello");
    copy_example(&work);
    let start = |extra: &[&str]| {
        let child = Command::new(workspace_binary("mcp-runtime"))
            .args(["dev", "--port", &free_port().to_string()])
            .args(["--admin-port", &free_port().to_string()])
            .args(["--server-port", &free_port().to_string()])
            .args(extra)
            .current_dir(&work)
            .env("XDG_STATE_HOME", scratch.join("state"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let group = format!("-{}", child.id());
        (child, group)
    };
    let kill = |group: &str| {
        let _ = Command::new("kill").args(["-KILL", "--", group]).status();
    };
    let printed = |child: &mut std::process::Child, last: &str| -> Vec<String> {
        let mut seen = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let done = line.starts_with(last);
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    };

    let dashboard_port = free_port();
    let (mut child, group) = start(&[
        "--no-sentinel",
        "--dashboard-port",
        &dashboard_port.to_string(),
    ]);
    let lines = printed(&mut child, "dashboard: ");
    let base = format!("http://127.0.0.1:{dashboard_port}");
    let (status, head, body) = send(
        "GET",
        &format!("{base}/v1/teams/dev/analytics/events"),
        &[],
        b"",
    );
    kill(&group);
    let _ = child.wait();
    assert!(
        lines
            .last()
            .is_some_and(|l| l == &format!("dashboard: {base}/ui/")),
        "{lines:?}"
    );
    assert_eq!(status, 503, "{head}{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "analytics_unavailable", "{body}");

    let (mut child, group) = start(&["--no-sentinel", "--no-dashboard"]);
    let lines = printed(&mut child, "call it with");
    kill(&group);
    let _ = child.wait();
    assert!(
        lines.last().is_some_and(|l| l.starts_with("call it with")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("dashboard:")),
        "{lines:?}"
    );
}
