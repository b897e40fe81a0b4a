//! The admin listener: probes and `/metrics` on their own port, away from the traffic a server
//! carries, with a cap on open connections, a header timeout and a lifetime limit per connection
//! (probes and scrapes take milliseconds; a client that holds a connection longer is cut off).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// An admin answer: always a whole body.
pub type Answer = Response<Full<Bytes>>;

/// Content type of the text exposition `prometheus-client` writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Longest an admin connection may stay open.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Longest wait for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// An answer with `body` as it is.
pub fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Answer {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("a status and a content type from code are a valid response")
}

/// `/metrics`: `registry` in the OpenMetrics text format.
pub fn metrics(registry: &Registry) -> Answer {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, registry) {
        Ok(()) => text(StatusCode::OK, OPENMETRICS, out),
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "cannot encode the metrics\n",
            )
        }
    }
}

/// `404` for a path the admin listener does not serve.
pub fn not_found() -> Answer {
    text(StatusCode::NOT_FOUND, "text/plain", "not found\n")
}

/// Binds `addr`, with an error that names what the listener is for.
pub async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}"))
    })
}

/// Serves `listener` forever: every request is answered by `handler`, with at most
/// `max_connections` connections open at once (the next is accepted when one closes).
pub async fn serve<H, F>(listener: TcpListener, max_connections: usize, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an admin connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_with_the_handler_and_holds_no_more_than_the_cap() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), "test").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, 1, |req: Request<Incoming>| async move {
            match req.uri().path() {
                "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
                _ => not_found(),
            }
        }));
        let ok = get(addr, "/healthz").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("ok\n"), "{ok}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        // One slot: an idle connection holds it, so the next request waits until it closes.
        let idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::spawn(get(addr, "/healthz"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "answered past the connection cap");
        drop(idle);
        let answer = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("answered once the idle connection closed")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
