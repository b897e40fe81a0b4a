//! Listeners: the MCP listener and the admin listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::request::Gateway;

/// Serves the MCP listener until the process ends, on one request thread per upstream pool.
///
/// Each request thread runs its own single-threaded runtime and keeps every connection it is
/// given, together with its own upstream connection pool: a call is read, decided, forwarded and
/// answered on one thread, with no hand-over between threads (nginx's worker model). Connections
/// are dealt out round-robin as they are accepted.
/// At most `max_connections` are open at once: the next is accepted when one closes (the kernel's
/// backlog holds the rest), so a flood of idle connections cannot exhaust file descriptors.
pub async fn serve_mcp(listener: TcpListener, gateway: Arc<Gateway>, max_connections: usize) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut queues = Vec::new();
    for index in 0..gateway.upstream.pools() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Connection>();
        let gateway = gateway.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("mcp-worker-{index}"))
            .spawn(move || request_thread(index, rx, gateway));
        match spawned {
            Ok(_) => queues.push(tx),
            Err(e) => tracing::error!(error = %e, "cannot start a request thread"),
        }
    }
    if queues.is_empty() {
        tracing::error!("no request thread could start; not serving MCP traffic");
        return;
    }
    let mut next = 0;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let _ = queues[next % queues.len()].send((stream, slot));
        next = next.wrapping_add(1);
    }
}

/// An accepted connection and the slot it holds until it closes.
type Connection = (std::net::TcpStream, OwnedSemaphorePermit);

fn request_thread(
    index: usize,
    mut connections: tokio::sync::mpsc::UnboundedReceiver<Connection>,
    gateway: Arc<Gateway>,
) {
    crate::request::set_worker_index(index);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime of a request thread");
            return;
        }
    };
    runtime.block_on(async move {
        while let Some((stream, slot)) = connections.recv().await {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            let gateway = gateway.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |req| gateway.clone().handle(req));
                let result = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
    });
}

/// Longest an admin connection may stay open: probes and scrapes take milliseconds.
const ADMIN_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves /healthz, /ready, /metrics and /config/status, with at most `max_connections` open at
/// once, each with a header timeout and a lifetime limit.
pub async fn serve_admin(listener: TcpListener, gateway: Arc<Gateway>, max_connections: usize) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| admin(gateway.clone(), req));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(ADMIN_CONNECTION_TIMEOUT, connection).await;
        });
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}

async fn admin(
    gateway: Arc<Gateway>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let policy = gateway.store.current();
    Ok(match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/ready" => match &policy {
            Some(_) => text(StatusCode::OK, "text/plain", "ready\n".into()),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                serde_json::json!({"status": "not_ready", "reason": "policy_not_loaded", "last_error": gateway.store.last_error()}).to_string(),
            ),
        },
        "/config/status" => text(
            StatusCode::OK,
            "application/json",
            serde_json::json!({
                "ready": policy.is_some(),
                "revision": policy.as_ref().map(|p| p.revision().to_owned()),
                "server": policy.as_ref().map(|p| format!("{}/{}", p.document().server.namespace, p.document().server.name)),
                "loaded_at": gateway.store.loaded_at().map(|t| t.to_string()),
                "last_error": gateway.store.last_error(),
            })
            .to_string(),
        ),
        "/metrics" => {
            if let Some(audit) = &gateway.audit {
                let stats = audit.stats();
                gateway.metrics.audit_pending.set(stats.spooled_pending as i64);
                gateway.metrics.audit_dropped.set(stats.dropped as i64);
                gateway.metrics.audit_emitted.set(stats.emitted as i64);
            }
            text(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", gateway.metrics.encode())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

/// Binds a listener with a message that names the address.
pub async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}"))
    })
}
