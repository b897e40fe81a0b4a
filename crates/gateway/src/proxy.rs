//! The request path: authenticate, inspect, decide, forward, filter, audit.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use jiff::Timestamp;
use mcp_runtime_audit::{AuditEvent, Auditor, Decision as AuditDecision};
use mcp_runtime_policy::{AuthMode, Decision, Identity, Policy, PolicyDocument, ToolCall, Trust};
use serde_json::{Value, json};

use crate::auth::{
    AuthConfig, AuthFailure, Caller, DEFAULT_IDENTITY_HEADERS, authenticate, identity_header_names,
};
use crate::jsonrpc::{self, Body as RpcBody, Id, Message, Refusal};
use crate::metrics::{DecisionLabels, Metrics, RequestLabels, method_label};
use crate::oauth;
use crate::policy_source::PolicyStore;
use crate::sse;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type GatewayBody = BoxBody<Bytes, BoxError>;

/// Protocol versions whose JSON-RPC layer allows batches (removed in 2025-06-18).
const BATCH_VERSIONS: [&str; 2] = ["2024-11-05", "2025-03-26"];
/// Without a version header, the Streamable HTTP spec says to assume this one.
const DEFAULT_VERSION: &str = "2025-03-26";
/// First protocol version of the stateless era.
const STATELESS_FROM: &str = "2026-07-28";

/// Limits of the request path.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub upstream_timeout: Duration,
    /// Largest `tools/list` JSON response the gateway buffers to filter.
    pub max_list_bytes: usize,
}

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

/// Everything the request path needs, shared by all connections.
pub struct Gateway {
    pub store: PolicyStore,
    pub auth: AuthConfig,
    pub upstream: Upstream,
    pub limits: Limits,
    pub strip_prefix: Option<String>,
    pub audit: Option<Auditor>,
    pub audit_source: String,
    pub capture_arguments: bool,
    pub metrics: Metrics,
}

/// Per-request facts carried to the audit event.
struct Exchange {
    start: Instant,
    http_method: Method,
    caller: Caller,
    protocol_version: Option<String>,
}

fn full(body: impl Into<Bytes>) -> GatewayBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_response(status: StatusCode, body: String) -> Response<GatewayBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("static response")
}

fn refusal_response(status: StatusCode, refusal: &Refusal) -> Response<GatewayBody> {
    json_response(
        status,
        jsonrpc::error_response(refusal.id.as_ref(), refusal.code, &refusal.message, None),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl Gateway {
    /// Entry point for every request on the MCP listener.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, Infallible> {
        let start = Instant::now();
        let method = method_label(req.method());
        let response = self.route(req, start).await;
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                http_method: method,
                status: response.status().as_u16(),
            })
            .inc();
        self.metrics.duration.observe(start.elapsed().as_secs_f64());
        Ok(response)
    }

    async fn route(&self, req: Request<Incoming>, start: Instant) -> Response<GatewayBody> {
        let Some(policy) = self.store.current() else {
            self.emit_simple(None, &req, start, "policy_unavailable");
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                jsonrpc::error_response(
                    None,
                    -32603,
                    "policy_unavailable: the gateway has no valid policy yet",
                    Some(json!({"reason": "policy_unavailable"})),
                ),
            );
        };
        let doc = policy.document();
        let oauth = doc.auth.mode == AuthMode::Oauth;
        if oauth
            && req.method() == Method::GET
            && let Some(path) = req
                .uri()
                .path()
                .strip_prefix("/.well-known/oauth-protected-resource")
        {
            return self.protected_resource_metadata(doc, req.headers(), path);
        }
        let caller = match authenticate(&self.auth, doc, req.headers(), Timestamp::now()).await {
            Ok(caller) => caller,
            Err(failure) => {
                self.emit_simple(Some(doc), &req, start, failure.reason());
                let metadata = oauth.then(|| {
                    oauth::metadata_url(&oauth::resource_url(
                        self.auth.oauth.settings().resource.as_ref(),
                        req.headers(),
                        req.uri().path(),
                    ))
                });
                return unauthorized(doc, &failure, metadata.as_deref());
            }
        };
        let exchange = Exchange {
            start,
            http_method: req.method().clone(),
            caller,
            protocol_version: header_str(req.headers(), "mcp-protocol-version").map(str::to_owned),
        };
        if req.method() == Method::POST {
            self.post(req, &policy, exchange).await
        } else {
            // GET opens the server's SSE stream, DELETE ends a session: nothing to decide on, but
            // only an authenticated caller reaches the upstream.
            let (parts, _) = req.into_parts();
            match self.send(&parts, Bytes::new(), &exchange.caller, doc).await {
                Ok(resp) => passthrough(resp),
                Err(resp) => resp,
            }
        }
    }

    /// RFC 9728 protected-resource metadata: where clients get tokens for this endpoint.
    fn protected_resource_metadata(
        &self,
        doc: &PolicyDocument,
        headers: &HeaderMap,
        resource_path: &str,
    ) -> Response<GatewayBody> {
        let Some(issuer) = doc.auth.issuer_url.as_deref() else {
            return unauthorized(
                doc,
                &AuthFailure::Misconfigured(
                    "oauth mode needs spec.auth.issuerURL on the MCPServer".to_owned(),
                ),
                None,
            );
        };
        let resource = oauth::resource_url(
            self.auth.oauth.settings().resource.as_ref(),
            headers,
            if resource_path.is_empty() {
                "/"
            } else {
                resource_path
            },
        );
        json_response(
            StatusCode::OK,
            oauth::metadata_document(&resource, issuer).to_string(),
        )
    }

    async fn post(
        &self,
        req: Request<Incoming>,
        policy: &Arc<Policy>,
        mut ex: Exchange,
    ) -> Response<GatewayBody> {
        let doc = policy.document();
        let (parts, body) = req.into_parts();
        let too_large = || {
            let message = format!(
                "request body exceeds the gateway limit of {} bytes",
                self.limits.max_body_bytes
            );
            json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                jsonrpc::error_response(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    &message,
                    Some(json!({"reason": "body_too_large", "limit": self.limits.max_body_bytes})),
                ),
            )
        };
        let declared =
            header_str(&parts.headers, "content-length").and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body_bytes) {
            self.emit_refusal(doc, &ex, None, "body_too_large");
            return too_large();
        }
        let bytes = match Limited::new(body, self.limits.max_body_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                self.emit_refusal(doc, &ex, None, "body_too_large");
                return too_large();
            }
            Err(e) => {
                let refusal = Refusal {
                    code: jsonrpc::PARSE_ERROR,
                    message: format!("could not read the request body: {e}"),
                    id: None,
                };
                return refusal_response(StatusCode::BAD_REQUEST, &refusal);
            }
        };
        let parsed = match jsonrpc::parse(&bytes) {
            Ok(p) => p,
            Err(refusal) => {
                let reason = if refusal.code == jsonrpc::PARSE_ERROR {
                    "parse_error"
                } else {
                    "invalid_request"
                };
                self.emit_refusal(doc, &ex, None, reason);
                return refusal_response(StatusCode::BAD_REQUEST, &refusal);
            }
        };
        match parsed {
            RpcBody::Single(Message::Request(request)) => {
                if ex.protocol_version.is_none() {
                    ex.protocol_version = request
                        .meta_protocol_version
                        .clone()
                        .or_else(|| request.initialize_version.clone());
                }
                if let Err(refusal) =
                    check_headers(&parts.headers, &request, ex.protocol_version.as_deref())
                {
                    self.emit_refusal(doc, &ex, Some(&request), "header_mismatch");
                    return refusal_response(StatusCode::BAD_REQUEST, &refusal);
                }
                if request.is_tool_call() {
                    let tool = request.name.as_deref().unwrap_or_default();
                    let decision = self.decide(policy, &ex.caller, tool);
                    if !decision.allowed {
                        self.emit_decision(doc, &ex, &request, &decision, None, &bytes);
                        return json_response(StatusCode::OK, denial(&request.id, tool, &decision));
                    }
                    let response = self.send(&parts, bytes.clone(), &ex.caller, doc).await;
                    let status = match &response {
                        Ok(r) => r.status().as_u16(),
                        Err(r) => r.status().as_u16(),
                    };
                    self.emit_decision(doc, &ex, &request, &decision, Some(status), &bytes);
                    return match response {
                        Ok(r) => passthrough(r),
                        Err(r) => r,
                    };
                }
                let lists_tools = request.method == "tools/list";
                match self.send(&parts, bytes, &ex.caller, doc).await {
                    Ok(resp) if lists_tools => {
                        self.filter_tool_list(resp, policy.clone(), ex, request.id.clone())
                            .await
                    }
                    Ok(resp) => passthrough(resp),
                    Err(resp) => resp,
                }
            }
            RpcBody::Single(_) => match self.send(&parts, bytes, &ex.caller, doc).await {
                Ok(resp) => passthrough(resp),
                Err(resp) => resp,
            },
            RpcBody::Batch(messages) => self.batch(parts, bytes, messages, policy, ex).await,
        }
    }

    async fn batch(
        &self,
        parts: http::request::Parts,
        bytes: Bytes,
        messages: Vec<Message>,
        policy: &Arc<Policy>,
        ex: Exchange,
    ) -> Response<GatewayBody> {
        let doc = policy.document();
        let version = ex.protocol_version.as_deref().unwrap_or(DEFAULT_VERSION);
        if !BATCH_VERSIONS.contains(&version) {
            let refusal = Refusal {
                code: jsonrpc::INVALID_REQUEST,
                message: format!("JSON-RPC batches are not allowed in protocol version {version}"),
                id: None,
            };
            self.emit_refusal(doc, &ex, None, "batch_not_allowed");
            return refusal_response(StatusCode::BAD_REQUEST, &refusal);
        }
        // Every call in the batch is decided; one denial refuses the whole batch, so no call can
        // ride along with others past the policy.
        let mut denied = Vec::new();
        for message in &messages {
            if let Message::Request(r) = message
                && r.is_tool_call()
            {
                let tool = r.name.as_deref().unwrap_or_default();
                let decision = self.decide(policy, &ex.caller, tool);
                self.emit_decision(doc, &ex, r, &decision, None, &bytes);
                if !decision.allowed {
                    denied.push((r.id.clone(), denial(&r.id, tool, &decision)));
                }
            }
        }
        if denied.is_empty() {
            return match self.send(&parts, bytes, &ex.caller, doc).await {
                Ok(resp) => passthrough(resp),
                Err(resp) => resp,
            };
        }
        let mut answers = Vec::new();
        for message in &messages {
            if let Message::Request(r) = message {
                match denied.iter().find(|(id, _)| id == &r.id) {
                    Some((_, answer)) => answers.push(answer.clone()),
                    None => answers.push(jsonrpc::error_response(
                        Some(&r.id),
                        jsonrpc::POLICY_DENIED,
                        "not executed: the batch contains a call denied by policy",
                        Some(json!({"reason": "batch_denied"})),
                    )),
                }
            }
        }
        json_response(StatusCode::OK, format!("[{}]", answers.join(",")))
    }

    fn decide<'p>(&self, policy: &'p Policy, caller: &Caller, tool: &str) -> Decision<'p> {
        let call = ToolCall {
            identity: Identity::new(
                caller.human.as_deref(),
                caller.agent.as_deref(),
                caller.team.as_deref(),
                caller.session.as_deref(),
            ),
            tool,
            now: Timestamp::now(),
        };
        let decision = policy.evaluate(&call);
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                decision: if decision.allowed { "allow" } else { "deny" },
                reason: decision.reason.as_str(),
            })
            .inc();
        decision
    }

    /// Forwards to the upstream. `Err` carries the response to give the client instead.
    async fn send(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        caller: &Caller,
        doc: &PolicyDocument,
    ) -> Result<Response<Incoming>, Response<GatewayBody>> {
        let path = parts.uri.path();
        let path = match &self.strip_prefix {
            Some(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                _ => path,
            },
            None => path,
        };
        let path = if path.is_empty() { "/" } else { path };
        let path_and_query = match parts.uri.query() {
            Some(q) => format!("{}{path}?{q}", self.upstream.base_path),
            None => format!("{}{path}", self.upstream.base_path),
        };
        let uri = Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| bad_gateway(&format!("cannot build the upstream URI: {e}")))?;
        let mut request = Request::builder().method(parts.method.clone()).uri(uri);
        let headers = request.headers_mut().expect("fresh builder");
        let stripped = identity_header_names(doc);
        for (name, value) in &parts.headers {
            let n = name.as_str();
            if is_hop_by_hop(n)
                || n == "host"
                // The gateway consumed the credential; the upstream gets the verified identity
                // (no token passthrough, as the MCP authorization spec requires).
                || (n == "authorization"
                    && matches!(doc.auth.mode, AuthMode::Token | AuthMode::Oauth))
                || stripped
                    .iter()
                    .chain(&DEFAULT_IDENTITY_HEADERS)
                    .any(|s| s.eq_ignore_ascii_case(n))
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        // The upstream learns the verified caller; nothing the client claimed survives.
        for (name, value) in
            stripped
                .iter()
                .zip([&caller.human, &caller.agent, &caller.team, &caller.session])
        {
            if let (Some(v), Ok(name)) = (value, HeaderName::try_from(*name))
                && let Ok(v) = HeaderValue::from_str(v)
            {
                headers.insert(name, v);
            }
        }
        if let Ok(host) = HeaderValue::from_str(self.upstream.authority.as_str()) {
            headers.insert(header::HOST, host);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| bad_gateway(&e.to_string()))?;
        match tokio::time::timeout(
            self.limits.upstream_timeout,
            self.upstream.client().request(request),
        )
        .await
        {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream request failed");
                Err(bad_gateway(
                    "the MCP server behind the gateway is unreachable",
                ))
            }
            Err(_) => Err(json_response(
                StatusCode::GATEWAY_TIMEOUT,
                jsonrpc::error_response(
                    None,
                    -32603,
                    "the MCP server did not answer in time",
                    Some(json!({"reason": "upstream_timeout"})),
                ),
            )),
        }
    }

    /// Hides from a `tools/list` result the tools the caller may not call, deciding each with the
    /// same evaluation as a call. JSON results are rewritten whole; SSE streams event by event.
    async fn filter_tool_list(
        &self,
        resp: Response<Incoming>,
        policy: Arc<Policy>,
        ex: Exchange,
        id: Id,
    ) -> Response<GatewayBody> {
        let is_sse = header_str(resp.headers(), "content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let want_id: Value = serde_json::from_str(&id.0).unwrap_or(Value::Null);
        let filter = ListFilter {
            policy,
            caller: ex.caller.clone(),
        };
        if !is_sse {
            let bytes = match Limited::new(body, self.limits.max_list_bytes)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => return bad_gateway("the tools/list response is too large to filter"),
            };
            let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
                // Not JSON: nothing we can show safely.
                return bad_gateway("the MCP server answered tools/list with malformed JSON");
            };
            let counts = filter.apply(&mut value, &want_id);
            self.emit_list(&filter, &ex, &id, counts);
            parts.headers.remove(header::CONTENT_LENGTH);
            let body = serde_json::to_vec(&value).expect("JSON re-encodes");
            return Response::from_parts(parts, full(body));
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
        let audit = self
            .audit
            .clone()
            .map(|a| (a, self.list_event(&filter, &ex, &id).into_owned()));
        tokio::spawn(async move {
            let mut body = body;
            let mut splitter = sse::EventSplitter::default();
            let mut audit = audit;
            while let Some(frame) = body.frame().await {
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = tx.send(Err(Box::new(e))).await;
                        return;
                    }
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                for event in splitter.push(&data) {
                    let out = match sse::event_data(&event)
                        .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                    {
                        Some(mut value) if value.get("id") == Some(&want_id) => {
                            let counts = filter.apply(&mut value, &want_id);
                            if let Some((auditor, mut event)) = audit.take() {
                                event.tools_listed = Some(counts.0);
                                event.tools_hidden = Some(counts.1);
                                auditor.emit(event);
                            }
                            sse::with_data(&event, &value.to_string())
                        }
                        _ => event,
                    };
                    if tx.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
                        return;
                    }
                }
            }
            let rest = splitter.finish();
            if !rest.is_empty() {
                let _ = tx.send(Ok(Frame::data(Bytes::from(rest)))).await;
            }
        });
        Response::from_parts(parts, BodyExt::boxed(ChannelBody { rx }))
    }
}

/// Filters `result.tools` of the response with a matching id.
struct ListFilter {
    policy: Arc<Policy>,
    caller: Caller,
}

impl ListFilter {
    /// Returns (tools listed to the caller, tools hidden).
    fn apply(&self, value: &mut Value, want_id: &Value) -> (u32, u32) {
        if value.get("id") != Some(want_id) {
            return (0, 0);
        }
        let Some(tools) = value
            .pointer_mut("/result/tools")
            .and_then(Value::as_array_mut)
        else {
            return (0, 0);
        };
        let now = Timestamp::now();
        let c = &self.caller;
        let before = tools.len();
        tools.retain(|tool| {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return false;
            };
            let call = ToolCall {
                identity: Identity::new(
                    c.human.as_deref(),
                    c.agent.as_deref(),
                    c.team.as_deref(),
                    c.session.as_deref(),
                ),
                tool: name,
                now,
            };
            self.policy.evaluate(&call).allowed
        });
        (tools.len() as u32, (before - tools.len()) as u32)
    }
}

/// A response body fed by a task through a channel.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

fn passthrough(resp: Response<Incoming>) -> Response<GatewayBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
}

fn is_hop_by_hop(name: &str) -> bool {
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
    )
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n.as_str()))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

fn bad_gateway(message: &str) -> Response<GatewayBody> {
    json_response(
        StatusCode::BAD_GATEWAY,
        jsonrpc::error_response(
            None,
            -32603,
            message,
            Some(json!({"reason": "upstream_error"})),
        ),
    )
}

/// HTTP 401 with the challenge of the MCP authorization spec (`resource_metadata` in oauth
/// mode), or 503 when the fault is the gateway's.
fn unauthorized(
    doc: &PolicyDocument,
    failure: &AuthFailure,
    resource_metadata: Option<&str>,
) -> Response<GatewayBody> {
    if failure.is_gateway_fault() {
        tracing::error!(error = %failure, "gateway cannot authenticate callers; refusing the request");
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            jsonrpc::error_response(
                None,
                -32603,
                &failure.to_string(),
                Some(json!({"reason": failure.reason()})),
            ),
        );
    }
    let mut challenge = match resource_metadata {
        Some(url) => format!("Bearer realm=\"mcp-runtime\", resource_metadata=\"{url}\""),
        None => format!(
            "Bearer realm=\"mcp-runtime\", scope=\"{}/{}\"",
            doc.server.namespace, doc.server.name
        ),
    };
    if let Some(error) = failure.bearer_error() {
        challenge.push_str(&format!(
            ", error=\"{error}\", error_description=\"{}\"",
            failure.to_string().replace('"', "'")
        ));
    }
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        jsonrpc::error_response(
            None,
            jsonrpc::UNAUTHENTICATED,
            &failure.to_string(),
            Some(json!({"reason": failure.reason()})),
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The JSON-RPC error answering a denied call: a stable code, a sentence, and the decision.
fn denial(id: &Id, tool: &str, d: &Decision<'_>) -> String {
    let mut data = json!({
        "reason": d.reason.as_str(),
        "tool": tool,
        "policy_revision": d.policy_revision,
    });
    let fields = [
        ("required_trust", d.required_trust),
        ("admin_trust", d.admin_trust),
        ("consented_trust", d.consented_trust),
        ("effective_trust", d.effective_trust),
    ];
    for (key, value) in fields {
        if let Some(t) = value {
            data[key] = json!(t.as_str());
        }
    }
    if let Some(s) = d.tool.side_effect {
        data["required_side_effect"] = json!(s.as_str());
    }
    if let Some(g) = d.grant_ref() {
        data["matched_grant"] = json!(g);
    }
    if let Some(s) = d.session_ref() {
        data["matched_session"] = json!(s);
    }
    let message = format!("Denied by policy ({}): {}", d.reason, d.reason.summary());
    jsonrpc::error_response(Some(id), jsonrpc::POLICY_DENIED, &message, Some(data))
}

/// Stateless-era headers must mirror the body; in any era a present header must agree.
fn check_headers(
    headers: &HeaderMap,
    request: &jsonrpc::Request,
    version: Option<&str>,
) -> Result<(), Refusal> {
    let stateless = version.is_some_and(|v| v >= STATELESS_FROM);
    let mismatch = |message: String| Refusal {
        code: jsonrpc::HEADER_MISMATCH,
        message,
        id: Some(request.id.clone()),
    };
    match header_str(headers, "mcp-method") {
        Some(m) if m != request.method => {
            return Err(mismatch(format!(
                "Mcp-Method header `{m}` does not match the body's method `{}`",
                request.method
            )));
        }
        None if stateless => {
            return Err(mismatch(
                "the Mcp-Method header is required in protocol version 2026-07-28 and later".into(),
            ));
        }
        _ => {}
    }
    let named = match request.method.as_str() {
        "tools/call" | "prompts/get" => request.name.as_deref(),
        "resources/read" => request.uri.as_deref(),
        _ => return Ok(()),
    };
    match (header_str(headers, "mcp-name").map(decode_header_value), named) {
        (Some(Some(h)), Some(body)) if h == body => Ok(()),
        (Some(_), body) => Err(mismatch(format!("Mcp-Name header does not match the body's name `{}`", body.unwrap_or_default()))),
        (None, _) if stateless => Err(mismatch("the Mcp-Name header is required for this method in protocol version 2026-07-28 and later".into())),
        (None, _) => Ok(()),
    }
}

/// Header values carry non-ASCII names as `=?base64?<data>?=`.
fn decode_header_value(v: &str) -> Option<String> {
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(encoded) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(v.to_owned()),
    }
}

// === audit ===
//
// Events borrow what they report (the policy document, the caller, the request) and are
// serialised by `Auditor::emit` before the borrow ends, so building one copies no string.

fn borrowed(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

impl Gateway {
    fn base_event<'a>(
        &'a self,
        doc: Option<&'a PolicyDocument>,
        http_method: &'a Method,
        decision: AuditDecision,
        reason: &'a str,
    ) -> AuditEvent<'a> {
        let (server, namespace) = doc.map_or(("", ""), |d| {
            (d.server.name.as_str(), d.server.namespace.as_str())
        });
        let mut event = AuditEvent::new(
            self.audit_source.as_str(),
            server,
            namespace,
            http_method.as_str(),
            decision,
            reason,
        );
        if let Some(d) = doc {
            event.cluster = borrowed(&d.server.cluster);
            event.team_id = borrowed(&d.server.team_id);
            event.policy_revision = Some(Cow::Borrowed(&d.revision));
            event.policy_version = borrowed(&d.policy.policy_version);
        }
        event
    }

    fn with_exchange<'a>(
        &self,
        mut event: AuditEvent<'a>,
        ex: &'a Exchange,
        request: Option<&'a jsonrpc::Request>,
    ) -> AuditEvent<'a> {
        event.human_id = borrowed(&ex.caller.human);
        event.agent_id = borrowed(&ex.caller.agent);
        event.subject_team_id = borrowed(&ex.caller.team);
        event.session_id = borrowed(&ex.caller.session);
        event.protocol_version = borrowed(&ex.protocol_version);
        event.latency_ms = ex.start.elapsed().as_secs_f64() * 1000.0;
        if let Some(r) = request {
            event.rpc_method = Some(Cow::Borrowed(&r.method));
            event.rpc_id = serde_json::from_str(&r.id.0).ok();
            event.tool = if r.is_tool_call() {
                borrowed(&r.name)
            } else {
                None
            };
        }
        event
    }

    /// A request refused before any decision (no policy, no credential).
    fn emit_simple(
        &self,
        doc: Option<&PolicyDocument>,
        req: &Request<Incoming>,
        start: Instant,
        reason: &str,
    ) {
        self.count_denial(reason);
        if let Some(auditor) = &self.audit {
            let mut event = self.base_event(doc, req.method(), AuditDecision::Deny, reason);
            event.latency_ms = start.elapsed().as_secs_f64() * 1000.0;
            auditor.emit(event);
        }
    }

    fn emit_refusal(
        &self,
        doc: &PolicyDocument,
        ex: &Exchange,
        request: Option<&jsonrpc::Request>,
        reason: &str,
    ) {
        self.count_denial(reason);
        if let Some(auditor) = &self.audit {
            let event = self.base_event(Some(doc), &ex.http_method, AuditDecision::Deny, reason);
            auditor.emit(self.with_exchange(event, ex, request));
        }
    }

    fn count_denial(&self, reason: &str) {
        let reason: &'static str = match reason {
            "policy_unavailable" => "policy_unavailable",
            "missing_bearer_token" => "missing_bearer_token",
            "invalid_token" => "invalid_token",
            "token_expired" => "token_expired",
            "body_too_large" => "body_too_large",
            "parse_error" => "parse_error",
            "invalid_request" => "invalid_request",
            "header_mismatch" => "header_mismatch",
            "batch_not_allowed" => "batch_not_allowed",
            _ => "other",
        };
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                decision: "deny",
                reason,
            })
            .inc();
    }

    fn emit_decision(
        &self,
        doc: &PolicyDocument,
        ex: &Exchange,
        request: &jsonrpc::Request,
        d: &Decision<'_>,
        upstream_status: Option<u16>,
        body: &Bytes,
    ) {
        let Some(auditor) = &self.audit else { return };
        let decision = if d.allowed {
            AuditDecision::Allow
        } else {
            AuditDecision::Deny
        };
        let mut event = self.with_exchange(
            self.base_event(Some(doc), &ex.http_method, decision, d.reason.as_str()),
            ex,
            Some(request),
        );
        let trust = |t: Option<Trust>| t.map(|t| Cow::Borrowed(t.as_str()));
        event.enforced = d.enforced;
        event.required_trust = trust(d.required_trust);
        event.admin_trust = trust(d.admin_trust);
        event.consented_trust = trust(d.consented_trust);
        event.effective_trust = trust(d.effective_trust);
        event.matched_grant = d.grant_ref().map(Cow::Owned);
        event.matched_session = d.session_ref().map(Cow::Owned);
        event.policy_version = d.policy_version.map(Cow::Borrowed);
        event.upstream_status = upstream_status;
        if self.capture_arguments {
            event.arguments = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.pointer("/params/arguments").cloned());
        }
        auditor.emit(event);
    }

    fn list_event<'a>(
        &'a self,
        filter: &'a ListFilter,
        ex: &'a Exchange,
        id: &Id,
    ) -> AuditEvent<'a> {
        let doc = filter.policy.document();
        let mut event = self.with_exchange(
            self.base_event(Some(doc), &ex.http_method, AuditDecision::Allow, "allowed"),
            ex,
            None,
        );
        event.rpc_method = Some(Cow::Borrowed("tools/list"));
        event.rpc_id = serde_json::from_str(&id.0).ok();
        event
    }

    fn emit_list(&self, filter: &ListFilter, ex: &Exchange, id: &Id, (listed, hidden): (u32, u32)) {
        if let Some(auditor) = &self.audit {
            let mut event = self.list_event(filter, ex, id);
            event.tools_listed = Some(listed);
            event.tools_hidden = Some(hidden);
            auditor.emit(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, name: Option<&str>) -> jsonrpc::Request {
        jsonrpc::Request {
            id: Id("1".into()),
            method: method.into(),
            name: name.map(Into::into),
            uri: None,
            meta_protocol_version: None,
            initialize_version: None,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn stateless_headers_must_mirror_the_body() {
        let call = request("tools/call", Some("echo"));
        let v = Some("2026-07-28");
        assert!(
            check_headers(
                &headers(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]),
                &call,
                v
            )
            .is_ok()
        );
        assert!(
            check_headers(
                &headers(&[("mcp-method", "tools/call"), ("mcp-name", "wipe")]),
                &call,
                v
            )
            .is_err()
        );
        assert!(
            check_headers(
                &headers(&[("mcp-method", "tools/list"), ("mcp-name", "echo")]),
                &call,
                v
            )
            .is_err()
        );
        assert!(
            check_headers(&headers(&[("mcp-method", "tools/call")]), &call, v).is_err(),
            "name required"
        );
        assert!(
            check_headers(&headers(&[]), &call, v).is_err(),
            "method required"
        );
        assert!(
            check_headers(&headers(&[]), &call, Some("2025-11-25")).is_ok(),
            "handshake era: optional"
        );
        assert!(
            check_headers(&headers(&[("mcp-name", "wipe")]), &call, Some("2025-11-25")).is_err(),
            "present must agree"
        );
        // =?base64?ZWNobw==?= is "echo".
        assert!(
            check_headers(
                &headers(&[
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "=?base64?ZWNobw==?=")
                ]),
                &call,
                v
            )
            .is_ok()
        );
    }
}
