//! Forwarding to the upstream MCP server: one connection pool per request thread, the verified
//! identity in place of anything the client claimed, and only headers the upstream may see.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use mcp_runtime_policy::AuthMode;

use super::Ctx;
use super::refusal::{Reason, Refusal};
use crate::auth::{identity_header_names, is_identity_header};

/// Where requests go.
pub struct Upstream {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    pub base_path: String,
    /// One connection pool per request thread (see [`crate::server`]): a pooled connection is
    /// driven by a task on the thread that opened it, so sharing pools across threads would hand
    /// every response from one thread to another.
    clients: Vec<Client<HttpConnector, Full<Bytes>>>,
}

thread_local! {
    /// Which request thread this is (0 outside the request threads).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as request thread `index` (it uses connection pool `index`).
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index));
}

impl Upstream {
    /// An upstream at `url` with one connection pool for each of `request_threads` request threads.
    pub fn new(url: &Uri, request_threads: usize) -> Result<Self, String> {
        let scheme = url.scheme().cloned().ok_or("upstream URL needs a scheme")?;
        if scheme != http::uri::Scheme::HTTP {
            return Err(
                "upstream URL must be http:// (the upstream is the local MCP server)".into(),
            );
        }
        let authority = url
            .authority()
            .cloned()
            .ok_or("upstream URL needs a host")?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let clients = (0..request_threads.max(1))
            .map(|_| {
                Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(256)
                    .build(connector.clone())
            })
            .collect();
        Ok(Self {
            scheme,
            authority,
            base_path: url.path().trim_end_matches('/').to_owned(),
            clients,
        })
    }

    /// How many request threads this upstream has a pool for.
    pub fn pools(&self) -> usize {
        self.clients.len()
    }

    fn client(&self) -> &Client<HttpConnector, Full<Bytes>> {
        let index = WORKER.with(std::cell::Cell::get);
        &self.clients[index % self.clients.len()]
    }
}

/// Hop-by-hop headers (RFC 9110 7.6.1) and body framing: the gateway frames what it sends itself,
/// so a client's `Content-Length`/`Transfer-Encoding` can never desync a pooled upstream
/// connection.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n.as_str()) && n != &header::CONTENT_LENGTH)
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// What the request to the upstream is built from.
pub struct Outgoing<'a> {
    pub method: &'a http::Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// `None` for requests without a body (GET, DELETE).
    pub body: Option<Bytes>,
}

impl<'a> Outgoing<'a> {
    pub fn new(parts: &'a http::request::Parts, body: Option<Bytes>) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body,
        }
    }
}

impl super::Gateway {
    /// Forwards to the upstream. A refusal says why it could not.
    pub(super) async fn forward(
        &self,
        out: Outgoing<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<Response<Incoming>, Refusal> {
        let (caller, doc) = (&ctx.caller, ctx.policy.document());
        let path = out.uri.path();
        let path = match &self.strip_prefix {
            Some(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                _ => path,
            },
            None => path,
        };
        let path = if path.is_empty() { "/" } else { path };
        let path_and_query = match out.uri.query() {
            Some(q) => format!("{}{path}?{q}", self.upstream.base_path),
            None => format!("{}{path}", self.upstream.base_path),
        };
        let uri = Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| {
                Refusal::new(
                    Reason::UpstreamError,
                    format!("cannot build the upstream URI: {e}"),
                )
            })?;
        let mut request = Request::builder().method(out.method.clone()).uri(uri);
        let headers = request.headers_mut().expect("fresh builder");
        let consumes_authorization = matches!(doc.auth.mode, AuthMode::Token | AuthMode::Oauth);
        for (name, value) in out.headers {
            let n = name.as_str();
            if is_hop_by_hop(n)
                || n == "host"
                // The gateway inspects responses as they come: the upstream must not compress.
                || n == "accept-encoding"
                // The gateway decided on UTF-8 JSON and says so canonically (see inspect).
                || n == "content-type"
                // The gateway consumed the credential; the upstream gets the verified identity
                // (no token passthrough, as the MCP authorization spec requires).
                || (n == "authorization" && consumes_authorization)
                || is_identity_header(n, doc)
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        if out.body.is_some() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        // The upstream learns the verified caller; nothing the client claimed survives.
        for (name, value) in identity_header_names(doc).iter().zip([
            &caller.human,
            &caller.agent,
            &caller.team,
            &caller.session,
        ]) {
            if let (Some(v), Ok(name)) = (value, HeaderName::try_from(*name))
                && let Ok(v) = HeaderValue::from_str(v)
            {
                headers.insert(name, v);
            }
        }
        // A traced request continues with the gateway's span as the parent; otherwise the
        // caller's `traceparent` (if any) went through above, unchanged.
        if let Some((name, value)) = ctx.span.upstream_traceparent() {
            headers.insert(name, value);
        }
        if let Ok(host) = HeaderValue::from_str(self.upstream.authority.as_str()) {
            headers.insert(header::HOST, host);
        }
        let request = request
            .body(Full::new(out.body.unwrap_or_default()))
            .map_err(|e| Refusal::new(Reason::UpstreamError, e.to_string()))?;
        match tokio::time::timeout(
            self.limits.upstream_timeout,
            self.upstream.client().request(request),
        )
        .await
        {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream request failed");
                Err(Refusal::new(
                    Reason::UpstreamError,
                    "the MCP server behind the gateway is unreachable",
                ))
            }
            Err(_) => Err(Refusal::new(
                Reason::UpstreamTimeout,
                "the MCP server did not answer in time",
            )),
        }
    }
}
