//! The request path, one module per concern over one per-request context ([`Ctx`]):
//! [`inspect`] reads the body, `post` takes a POST message by message, authentication lives in
//! [`crate::auth`], [`decide`] admits the caller and decides the tool, prompt or resource a
//! request names, [`forward`] sends it on, [`filter`] makes responses fail closed, [`audit`]
//! records every decision, and [`refusal`] is the one place where a refusal becomes a response.
//!
//! Every request is decided: the caller's session must be live and a grant must name them
//! (admission) for any method, GET stream or DELETE; `tools/call`, `prompts/get`,
//! `resources/read|subscribe|unsubscribe` and `completion/complete` are decided on what they
//! name; lists are filtered; methods that are not MCP are refused.
//!
//! [`trace`] follows the W3C trace context through: a traced request gets the gateway's span,
//! its audit events carry the trace and span ids, and the upstream sees the trace continued.

pub mod audit;
pub mod decide;
pub mod filter;
pub mod forward;
pub mod inspect;
mod post;
pub mod refusal;
pub mod trace;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use jiff::Timestamp;
use mcp_runtime_audit::Auditor;
use mcp_runtime_policy::{AuthMode, Policy, PolicyDocument};
use mcp_runtime_wire::era;

use self::audit::Unauthenticated;
use self::decide::admit;
use self::filter::{ListFilter, Pending};
use self::forward::{Outgoing, strip_hop_by_hop};
pub use self::forward::{Upstream, set_worker_index};
use self::refusal::{Reason, Refusal, unauthorized};
use self::trace::{RequestSpan, Tracing};
use crate::auth::{AuthConfig, AuthFailure, Caller, authenticate};
use crate::metrics::{Metrics, RequestLabels, method_label};
use crate::oauth;
use crate::policy_source::PolicyStore;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type GatewayBody = BoxBody<Bytes, BoxError>;

/// Limits of the request path.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Time allowed for a request body to arrive once its headers have.
    pub body_timeout: Duration,
    pub upstream_timeout: Duration,
    /// Largest response (JSON answer, or one SSE event) the gateway buffers to filter.
    pub max_list_bytes: usize,
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
    pub unauthenticated: Unauthenticated,
    pub tracing: Tracing,
}

/// What is known about a request once its caller is: the policy snapshot it is decided with
/// (a reload mid-request changes nothing), the verified caller, the protocol version, and its
/// trace context.
pub struct Ctx<'s> {
    pub start: Instant,
    pub now: Timestamp,
    pub http_method: Method,
    pub policy: Arc<Policy>,
    pub caller: Caller,
    pub protocol_version: Option<String>,
    pub span: &'s RequestSpan,
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

fn passthrough(resp: Response<Incoming>) -> Response<GatewayBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
}

impl Gateway {
    /// Entry point for every request on the MCP listener.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, Infallible> {
        let start = Instant::now();
        let method = method_label(req.method());
        let span = self.tracing.begin(req.headers());
        let response = self.route(req, start, &span).await;
        span.finish(&self.tracing.tracer, method, response.status());
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

    async fn route(
        &self,
        req: Request<Incoming>,
        start: Instant,
        span: &RequestSpan,
    ) -> Response<GatewayBody> {
        let Some(policy) = self.store.current() else {
            self.refuse_unauthenticated(span, None, req.method(), Reason::PolicyUnavailable);
            return Refusal::new(
                Reason::PolicyUnavailable,
                "policy_unavailable: the gateway has no valid policy yet",
            )
            .into_response();
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
        let now = Timestamp::now();
        let caller = match authenticate(&self.auth, doc, req.headers(), now).await {
            Ok(caller) => caller,
            Err(failure) => {
                self.refuse_unauthenticated(
                    span,
                    Some(doc),
                    req.method(),
                    Reason::Auth(failure.reason()),
                );
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
        let protocol_version = era::single_header(req.headers(), "mcp-protocol-version");
        let ctx = Ctx {
            start,
            now,
            http_method: req.method().clone(),
            protocol_version: protocol_version
                .as_ref()
                .ok()
                .and_then(|v| v.map(str::to_owned)),
            policy,
            caller,
            span,
        };
        if let Err(message) = protocol_version {
            self.emit_refusal(&ctx, None, Reason::HeaderMismatch);
            return Refusal::new(Reason::HeaderMismatch, message).into_response();
        }
        match *req.method() {
            Method::POST => self.post(req, ctx).await,
            Method::GET | Method::DELETE => self.stream_or_end(req, ctx).await,
            _ => {
                let mut refusal = Refusal::new(
                    Reason::InvalidRequest,
                    format!(
                        "{} is not part of MCP Streamable HTTP (POST, GET, DELETE)",
                        req.method()
                    ),
                );
                refusal.status = Some(StatusCode::METHOD_NOT_ALLOWED);
                self.emit_refusal(&ctx, None, refusal.reason);
                let mut resp = refusal.into_response();
                resp.headers_mut().insert(
                    header::ALLOW,
                    http::HeaderValue::from_static("POST, GET, DELETE"),
                );
                resp
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

    /// GET opens the server's stream, DELETE ends a session: only for an admitted caller, and a
    /// GET stream is filtered like any answer.
    async fn stream_or_end(&self, req: Request<Incoming>, ctx: Ctx<'_>) -> Response<GatewayBody> {
        let admission = admit(&ctx.policy, &ctx.caller, ctx.now);
        if !admission.allowed {
            self.count(false, admission.reason.into());
            self.emit_decision(&ctx, None, &admission, None, &Bytes::new());
            let mut refusal = Refusal::denied(None, None, &admission);
            refusal.status = Some(StatusCode::FORBIDDEN);
            return refusal.into_response();
        }
        self.count(true, admission.reason.into());
        let (parts, _) = req.into_parts();
        let out = Outgoing::new(&parts, None);
        let response = self.forward(out, &ctx).await;
        let status = response.as_ref().map(|r| r.status().as_u16()).ok();
        self.emit_decision(&ctx, None, &admission, status, &Bytes::new());
        match response {
            Ok(resp) if parts.method == Method::GET => {
                self.filter(&ctx, Vec::new())
                    .response(resp, self.limits.max_list_bytes)
                    .await
            }
            Ok(resp) => passthrough(resp),
            Err(refusal) => refusal.into_response(),
        }
    }

    fn filter(&self, ctx: &Ctx<'_>, pending: Vec<Pending>) -> ListFilter {
        ListFilter {
            policy: ctx.policy.clone(),
            caller: ctx.caller.clone(),
            pending,
            auditor: self.audit.clone(),
            now: ctx.now,
        }
    }
}
