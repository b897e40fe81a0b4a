//! The admin listener's answers (`--admin-listen`): `/healthz` (the process runs), `/ready` (the
//! database answers within 2 s) and `/metrics`. No authentication: keep it off public networks.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use mcp_runtime_svc::admin::{self, Answer, text};

use super::Api;

/// How long `/ready` waits for the database: a probe that hangs is worse than one that says no.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn handle(api: Arc<Api>, request: Request<Incoming>) -> Answer {
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/ready" => match tokio::time::timeout(READY_TIMEOUT, api.ready()).await {
            Ok(Ok(_)) => text(StatusCode::OK, "text/plain", "ready\n"),
            Ok(Err(e)) => not_ready(&e.message),
            Err(_) => not_ready(&format!(
                "the database did not answer within {READY_TIMEOUT:?}"
            )),
        },
        "/metrics" => admin::metrics(api.metrics.registry()),
        _ => admin::not_found(),
    }
}

fn not_ready(reason: &str) -> Answer {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "application/json",
        serde_json::json!({"status": "not_ready", "reason": reason}).to_string(),
    )
}
