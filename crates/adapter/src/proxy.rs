//! The HTTP proxy: a local Streamable HTTP endpoint for MCP clients that can speak HTTP but not
//! attach the credential; every request goes to the configured gateway URL with the credential.
//!
//! - Any path is sent to the configured gateway URL (its path and query); `/healthz` is the
//!   proxy's own liveness check.
//! - `Authorization` from the local client is removed and the adapter's credential set; hop-by-hop
//!   headers end here; `Mcp-Session-Id`, `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and
//!   the rest pass through untouched, both ways.
//! - Answers stream through as they arrive: an SSE stream's events reach the client one by one,
//!   never held back until the stream ends.
//! - A request body over the limit gets 413 with a JSON-RPC error; a gateway that cannot be
//!   reached 502 (504 on a timeout) with a `-32000` error carrying `data.http_status`. Bodies are
//!   held whole (they are small), so the upstream layer can retry idempotent lists and resend after
//!   a credential refresh (see [`crate::upstream::Upstream::send`]). `tools/call` is never retried.
//! - Browsers are kept out: the proxy holds a credential, so a request carrying an `Origin`
//!   header (a web page) is refused unless that origin is allowed, and on a loopback address a
//!   `Host` other than a loopback name (DNS rebinding) is refused.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcp_runtime_wire::jsonrpc::{self, Body, Id, Message};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::rpc;
use crate::upstream::{
    Outgoing, ReadError, ResponseBody, Upstream, full, is_idempotent, read_body, strip_hop_by_hop,
};

/// Settings of the proxy.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Largest request body accepted from a local client.
    pub max_body_bytes: usize,
    /// Origins (`scheme://host[:port]`) whose pages may use the proxy; none by default.
    pub allowed_origins: Vec<String>,
    /// Time allowed at shutdown for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            allowed_origins: Vec::new(),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

struct Proxy {
    upstream: Arc<Upstream>,
    options: ProxyOptions,
    /// Whether the listener is on a loopback address (then `Host` must be a loopback name).
    loopback: bool,
}

/// Serves `listener` until `shutdown` completes, then lets requests in flight finish (up to
/// [`ProxyOptions::drain_timeout`]).
pub async fn serve(
    listener: TcpListener,
    upstream: Arc<Upstream>,
    options: ProxyOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let loopback = local.ip().is_loopback();
    if !loopback {
        tracing::warn!(
            listen = %local,
            "the proxy adds your credential to every request it receives: anyone who can reach {local} can call the gateway as you"
        );
    }
    let drain = options.drain_timeout;
    let proxy = Arc::new(Proxy {
        upstream,
        options,
        loopback,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let mut stop = stop_rx.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(alive);
        });
    }
    tracing::info!("proxy stopping; letting requests in flight finish");
    let _ = stop_tx.send(true);
    drop(alive);
    if tokio::time::timeout(drain, all_done.recv()).await.is_err() {
        tracing::warn!(
            "requests still in flight after {} s; stopping anyway",
            drain.as_secs()
        );
    }
    Ok(())
}

impl Proxy {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        if req.uri().path() == "/healthz" && matches!(*req.method(), Method::GET | Method::HEAD) {
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(full("ok\n"))
                .expect("static response");
        }
        if let Some(refusal) = self.refuse_browser(req.headers()) {
            tracing::warn!(%peer, "{refusal}");
            return error(
                StatusCode::FORBIDDEN,
                jsonrpc::error_response(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    &refusal,
                    Some(json!({ "http_status": 403 })),
                ),
            );
        }
        let (parts, body) = req.into_parts();
        let max = self.options.max_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(n) = declared.filter(|n| *n > max) {
            return too_large(None, Some(n), max);
        }
        let bytes = match read_body(body, max).await {
            Ok(b) => b,
            Err(ReadError::TooLarge { .. }) => return too_large(None, None, max),
            Err(ReadError::Broken(e)) => {
                tracing::debug!(error = %e, "the local client's request body broke off");
                return error(
                    StatusCode::BAD_REQUEST,
                    jsonrpc::error_response(
                        None,
                        jsonrpc::INVALID_REQUEST,
                        "the request body could not be read",
                        None,
                    ),
                );
            }
        };
        // Read only to decide on retries and to address errors: the gateway judges the body.
        let request = match jsonrpc::parse(&bytes) {
            Ok(Body::Single(Message::Request(r))) => Some(r),
            _ => None,
        };
        let id: Option<Id> = request.as_ref().map(|r| r.id.clone());
        let rpc_method = request.as_ref().map(|r| r.method.clone());
        let idempotent =
            parts.method == Method::POST && rpc_method.as_deref().is_some_and(is_idempotent);
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        for name in [header::HOST, header::AUTHORIZATION, header::CONTENT_LENGTH] {
            headers.remove(name);
        }
        let out = Outgoing {
            method: parts.method,
            headers,
            body: bytes,
            idempotent,
            rpc_method,
        };
        let label = out.rpc_method.as_deref().unwrap_or("-");
        match self.upstream.send(&out).await {
            Ok(response) => {
                let (mut head, body) = response.into_parts();
                strip_hop_by_hop(&mut head.headers);
                if head.status.is_client_error() || head.status.is_server_error() {
                    tracing::info!(
                        http_method = %out.method,
                        rpc_method = label,
                        status = head.status.as_u16(),
                        "the gateway refused or failed"
                    );
                } else {
                    tracing::debug!(http_method = %out.method, rpc_method = label, status = head.status.as_u16(), "proxied");
                }
                Response::from_parts(head, body)
            }
            Err(e) => {
                tracing::warn!(rpc_method = label, error = %e, "no answer from the gateway");
                error(e.http_status(), rpc::transport_error(id.as_ref(), &e))
            }
        }
    }

    /// Why a request that may come from a web page is refused, if it is.
    fn refuse_browser(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let allowed = self
                .options
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(origin));
            if !allowed {
                return Some(format!(
                    "refused a request from the web page origin `{origin}`: the proxy adds your credential, so pages may use it only when allowed (--allow-origin)"
                ));
            }
        }
        if self.loopback
            && let Some(host) = headers.get(header::HOST)
        {
            let host = host.to_str().unwrap_or("");
            if !is_loopback_host(host) {
                return Some(format!(
                    "refused a request for host `{host}`: this proxy listens on loopback and answers loopback names only (a different name is how DNS rebinding reaches it)"
                ));
            }
        }
        None
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn error(status: StatusCode, body: String) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(full(body))
        .expect("static response")
}

fn too_large(id: Option<&Id>, size: Option<usize>, max: usize) -> Response<ResponseBody> {
    tracing::warn!(
        size,
        limit = max,
        "a request body over the limit was refused"
    );
    error(StatusCode::PAYLOAD_TOO_LARGE, rpc::too_large(id, size, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_only() {
        for h in [
            "localhost:8099",
            "127.0.0.1:8099",
            "[::1]:8099",
            "LOCALHOST",
            "127.0.0.2",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8099",
            "10.0.0.1:8099",
            "localhost.evil.example",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
