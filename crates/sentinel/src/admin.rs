//! The admin listener's answers: `/healthz` (the process runs), `/ready` (what the role needs
//! answers: its store, Kafka for an ingest that queues on it) and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use mcp_runtime_svc::admin::{self, Answer, text};

use crate::server::Api;

/// How long `/ready` waits for the store: a probe that hangs is worse than one that says no.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn handle(api: Arc<Api>, request: Request<Incoming>) -> Answer {
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/ready" => ready(&api).await,
        "/metrics" => admin::metrics(api.metrics.registry()),
        _ => admin::not_found(),
    }
}

async fn ready(api: &Api) -> Answer {
    match tokio::time::timeout(READY_TIMEOUT, api.readiness()).await {
        Ok(Ok(())) => text(StatusCode::OK, "text/plain", "ready\n"),
        Ok(Err(e)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            serde_json::json!({"status": "not_ready", "reason": e.message()}).to_string(),
        ),
        Err(_) => {
            api.metrics.store_error("ready");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                serde_json::json!({
                    "status": "not_ready",
                    "reason": format!("no answer within {READY_TIMEOUT:?}"),
                })
                .to_string(),
            )
        }
    }
}
