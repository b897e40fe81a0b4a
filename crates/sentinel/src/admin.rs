//! The admin listener's answers: `/healthz` (the process runs), `/ready` (the store answers a
//! trivial query) and `/metrics`.

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
    let store = api.store.clone();
    let not_ready = |why: String| {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            serde_json::json!({"status": "not_ready", "reason": why}).to_string(),
        )
    };
    match tokio::time::timeout(
        READY_TIMEOUT,
        tokio::task::spawn_blocking(move || store.ready()),
    )
    .await
    {
        Ok(Ok(Ok(()))) => text(StatusCode::OK, "text/plain", "ready\n"),
        Ok(Ok(Err(e))) => {
            api.metrics.store_error("ready");
            not_ready(e.to_string())
        }
        Ok(Err(e)) => not_ready(format!("the store check panicked: {e}")),
        Err(_) => {
            api.metrics.store_error("ready");
            not_ready(format!("the store did not answer within {READY_TIMEOUT:?}"))
        }
    }
}
