//! `/metrics`, `/healthz` and `/readyz` on one listener.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use mcp_runtime_svc::admin::{self, Answer, text};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

fn route(metrics: &Metrics, path: &str) -> Answer {
    match path {
        "/healthz" | "/livez" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => match metrics.readiness() {
            Ok(state) => text(StatusCode::OK, "text/plain", format!("ok: {state}\n")),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => admin::metrics(&metrics.registry),
        _ => admin::not_found(),
    }
}

/// Admin connections open at once (probes and scrapes).
const MAX_CONNECTIONS: usize = 16;

/// Binds `addr`; the returned future serves until dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = admin::serve(listener, MAX_CONNECTIONS, move |req: Request<Incoming>| {
        let answer = route(&metrics, req.uri().path());
        async move { answer }
    });
    Ok((local, server))
}
