//! The real `mcp-gateway` as a local process, configured as the operator configures the sidecar
//! (`--policy-configmap NS/NAME-gateway-policy`, acting as the server's ServiceAccount with a
//! TokenRequest token, so the Role the operator generated is what lets it read its policy),
//! in front of a tiny fixed upstream; and calls through it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use mcp_runtime_kube_testenv::{Process, TestEnv};

use super::{free_port, http_get};

/// How long a gateway may take to become ready.
const READY: Duration = Duration::from_secs(30);

/// The `mcp-gateway` binary built next to the operator (`cargo build --workspace`).
pub fn gateway_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MCP_GATEWAY_BIN") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_BIN_EXE_mcp-runtime-operator"))
        .parent()
        .expect("the operator binary has a directory")
        .join("mcp-gateway");
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` first (scripts/test.sh does), or set \
         MCP_GATEWAY_BIN",
        path.display()
    );
    path
}

/// The fixed-result upstream (`mcp_runtime_testkit::fixed_upstream`), so the figures are the
/// gateway's and the control plane's, not a tool's.
pub async fn tiny_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the upstream");
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(mcp_runtime_testkit::fixed_upstream::serve(listener));
    port
}

#[derive(Debug, PartialEq)]
pub enum Outcome {
    Allowed,
    Denied(String),
}

/// One `tools/call` through the gateway (keep-alive connection).
pub async fn call(
    http: &HttpClient<HttpConnector, Full<Bytes>>,
    url: &str,
    token: &str,
) -> Outcome {
    const BODY: &[u8] =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("request");
    let response = http
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("calling the gateway: {e}"));
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the gateway's answer")
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({status}, {e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    if status == 200 && json.get("result").is_some() {
        return Outcome::Allowed;
    }
    match json
        .pointer("/error/data/reason")
        .and_then(serde_json::Value::as_str)
    {
        Some(reason) if status == 200 => Outcome::Denied(reason.to_owned()),
        _ => panic!("unexpected answer {status}: {json}"),
    }
}

/// Starts a gateway for MCPServer `server` of `ns` trusting the session-token keys in
/// `public_keys` and waits until it is ready: the process and its MCP port.
pub async fn start_gateway(
    env: &TestEnv,
    ns: &str,
    server: &str,
    public_keys: &Path,
) -> (Process, u16) {
    let upstream = format!("http://127.0.0.1:{}", tiny_upstream().await);
    start_gateway_with(env, ns, server, public_keys, &upstream, &[]).await
}

/// [`start_gateway`] in front of `upstream` (a URL), with `extra` flags (e.g. where to ship
/// its audit events).
pub async fn start_gateway_with(
    env: &TestEnv,
    ns: &str,
    server: &str,
    public_keys: &Path,
    upstream: &str,
    extra: &[&str],
) -> (Process, u16) {
    let sa = env.service_account(ns, server).await.unwrap();
    let sa_token_file = env
        .dir()
        .join("pki")
        .join(format!("{ns}-{server}-gateway-sa.token"));
    std::fs::write(&sa_token_file, &sa.token).unwrap();
    let (port, admin) = (free_port(), free_port());
    let mut cmd = Command::new(gateway_binary());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("MCP_GATEWAY_KUBE_API_URL", env.api_url())
        .env("MCP_GATEWAY_KUBE_CA_FILE", env.ca_file())
        .env("MCP_GATEWAY_KUBE_TOKEN_FILE", &sa_token_file)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--upstream", upstream])
        .args([
            "--policy-configmap",
            &format!("{ns}/{server}-gateway-policy"),
        ])
        .arg("--token-public-keys-file")
        .arg(public_keys)
        .arg("--audit-file")
        .arg(env.log_dir().join(format!("{ns}-{server}-audit.jsonl")))
        .arg("--audit-spool-dir")
        .arg(env.dir().join(format!("{ns}-{server}-spool")))
        .args(extra);
    let mut gateway = env
        .spawn(
            "mcp-gateway",
            cmd,
            &env.log_dir().join(format!("{ns}-{server}-gateway.log")),
        )
        .expect("spawn mcp-gateway");
    let admin_addr = format!("127.0.0.1:{admin}");
    let deadline = Instant::now() + READY;
    loop {
        match http_get(&admin_addr, "/ready") {
            Ok((200, _)) => return (gateway, port),
            answer => {
                if let Some(status) = gateway.try_wait() {
                    panic!(
                        "mcp-gateway exited ({status}); a binary older than --policy-configmap? \
                         rebuild with `cargo build --workspace`\n{}",
                        gateway.log_tail(30)
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "the gateway is not ready after {READY:?}: {answer:?}\n{}",
                    gateway.log_tail(30)
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nearest-rank percentile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub fn summary(what: &str, samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    format!(
        "{what}: n={} min={} p50={} p90={} p99={} max={}",
        sorted.len(),
        ms(sorted[0]),
        ms(percentile(&sorted, 50.0)),
        ms(percentile(&sorted, 90.0)),
        ms(percentile(&sorted, 99.0)),
        ms(*sorted.last().unwrap()),
    )
}
