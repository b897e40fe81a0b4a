//! Listeners: the MCP listener and the admin listener.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcp_runtime_svc::admin::{self, Answer, text};
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

/// Serves /healthz, /ready, /metrics and /config/status, with at most `max_connections` open at
/// once, each with a header timeout and a lifetime limit.
pub async fn serve_admin(listener: TcpListener, gateway: Arc<Gateway>, max_connections: usize) {
    admin::serve(listener, max_connections, move |req| {
        admin_answer(gateway.clone(), req)
    })
    .await;
}

async fn admin_answer(gateway: Arc<Gateway>, req: Request<Incoming>) -> Answer {
    let policy = gateway.store.current();
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/ready" => ready(&gateway).await,
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
        "/metrics" => admin::metrics(&gateway.metrics.registry),
        _ => admin::not_found(),
    }
}

/// How long `/ready` waits for a TCP connection to the upstream.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Ready when a policy is loaded and the upstream accepts a TCP connection. In a pod the
/// upstream is the server container on 127.0.0.1, which the kubelet cannot probe there: this
/// check stands for its readiness, so the server need not listen on the pod IP.
async fn ready(gateway: &Gateway) -> Answer {
    let not_ready = |reason: &str, detail: Option<String>| {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            serde_json::json!({"status": "not_ready", "reason": reason, "last_error": detail})
                .to_string(),
        )
    };
    if gateway.store.current().is_none() {
        return not_ready("policy_not_loaded", gateway.store.last_error());
    }
    let authority = &gateway.upstream.authority;
    let port = authority.port_u16().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((authority.host(), port));
    match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(_)) => text(StatusCode::OK, "text/plain", "ready\n"),
        Ok(Err(e)) => not_ready(
            "upstream_unreachable",
            Some(format!("connecting to the upstream {authority}: {e}")),
        ),
        Err(_) => not_ready(
            "upstream_unreachable",
            Some(format!(
                "connecting to the upstream {authority}: no answer within {UPSTREAM_CONNECT_TIMEOUT:?}"
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthConfig;
    use crate::metrics::Metrics;
    use crate::oauth::{ClaimNames, OauthSettings};
    use crate::policy_source::PolicyStore;
    use crate::request::{Limits, Upstream};
    use http_body_util::BodyExt;
    use mcp_runtime_policy::{PolicyDocument, ServerRef};

    fn gateway(upstream_port: u16) -> Gateway {
        let store = PolicyStore::default();
        let doc = PolicyDocument::new(ServerRef {
            name: "s".into(),
            namespace: "ns".into(),
            team_id: None,
            cluster: None,
        })
        .seal()
        .unwrap();
        store.load_bytes(doc.to_json_pretty().as_bytes());
        let url: http::Uri = format!("http://127.0.0.1:{upstream_port}").parse().unwrap();
        Gateway {
            store,
            auth: AuthConfig::new(
                crate::token_keys::TokenKeys::default(),
                false,
                OauthSettings {
                    resource: None,
                    ca_file: None,
                    claims: ClaimNames::default(),
                },
            ),
            upstream: Upstream::new(&url, 1).unwrap(),
            limits: Limits {
                max_body_bytes: 1 << 20,
                body_timeout: Duration::from_secs(5),
                upstream_timeout: Duration::from_secs(5),
                max_list_bytes: 1 << 20,
            },
            strip_prefix: None,
            audit: None,
            audit_source: "test".into(),
            capture_arguments: false,
            metrics: Metrics::new(),
            unauthenticated: Default::default(),
            tracing: Default::default(),
        }
    }

    #[tokio::test]
    async fn ready_only_while_the_upstream_accepts_connections() {
        // A port nothing listens on: bind, note, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let gw = gateway(port);
        let r = ready(&gw).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("upstream_unreachable"), "{body}");

        let _upstream = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        assert_eq!(ready(&gw).await.status(), StatusCode::OK);
    }
}
