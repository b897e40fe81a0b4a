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
