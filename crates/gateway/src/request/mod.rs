//! The request path, one module per concern over one per-request context ([`Ctx`]):
//! [`inspect`] reads the body, authentication lives in [`crate::auth`], [`decide`] admits the
//! caller and decides the tool, prompt or resource a request names, [`forward`] sends it on,
//! [`filter`] makes responses fail closed, [`audit`] records every decision, and [`refusal`] is
//! the one place where a refusal becomes a response.
//!
//! Every request is decided: the caller's session must be live and a grant must name them
//! (admission) for any method, GET stream or DELETE; `tools/call`, `prompts/get`,
//! `resources/read|subscribe|unsubscribe` and `completion/complete` are decided on what they
//! name; lists are filtered; methods that are not MCP are refused.

pub mod audit;
pub mod decide;
pub mod filter;
pub mod forward;
pub mod inspect;
pub mod refusal;

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
use mcp_runtime_policy::{AuthMode, Decision, Policy, PolicyDocument};
use mcp_runtime_wire::era;
use mcp_runtime_wire::jsonrpc::{Body as RpcBody, Message, Request as RpcRequest};
use mcp_runtime_wire::method::{Governance, ListKind, governance, is_notification_method};

use self::audit::Unauthenticated;
use self::decide::{admit, decide_target};
use self::filter::{ListFilter, Pending};
use self::forward::{Outgoing, strip_hop_by_hop};
pub use self::forward::{Upstream, set_worker_index};
use self::refusal::{Reason, Refusal, unauthorized};
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
}

/// What is known about a request once its caller is: the policy snapshot it is decided with
/// (a reload mid-request changes nothing), the verified caller, the protocol version.
pub struct Ctx {
    pub start: Instant,
    pub now: Timestamp,
    pub http_method: Method,
    pub policy: Arc<Policy>,
    pub caller: Caller,
    pub protocol_version: Option<String>,
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

/// Admission, decided at most once per request and only when a message needs it (a decision on a
/// named item takes the same steps itself).
struct Admission<'p, 'c> {
    policy: &'p Policy,
    caller: &'c Caller,
    now: Timestamp,
    decided: std::cell::Cell<Option<Decision<'p>>>,
}

impl<'p, 'c> Admission<'p, 'c> {
    fn new(policy: &'p Policy, caller: &'c Caller, now: Timestamp) -> Self {
        Self {
            policy,
            caller,
            now,
            decided: std::cell::Cell::new(None),
        }
    }

    fn get(&self) -> Decision<'p> {
        if let Some(d) = self.decided.get() {
            return d;
        }
        let d = admit(self.policy, self.caller, self.now);
        self.decided.set(Some(d));
        d
    }
}

/// The verdict on one message of a POST.
enum Verdict<'p> {
    /// Forward; the decision is recorded with the upstream's status.
    Forward(Decision<'p>),
    /// Forward, then filter the answer to this list.
    List(Decision<'p>, ListKind),
    Refuse(Refusal, Option<Decision<'p>>),
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
            self.refuse_unauthenticated(None, req.method(), Reason::PolicyUnavailable);
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
    async fn stream_or_end(&self, req: Request<Incoming>, ctx: Ctx) -> Response<GatewayBody> {
        let admission = admit(&ctx.policy, &ctx.caller, ctx.now);
        let doc = ctx.policy.document();
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
        let response = self.forward(out, &ctx.caller, doc).await;
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

    fn filter(&self, ctx: &Ctx, pending: Vec<Pending>) -> ListFilter {
        ListFilter {
            policy: ctx.policy.clone(),
            caller: ctx.caller.clone(),
            pending,
            auditor: self.audit.clone(),
            now: ctx.now,
        }
    }

    /// The verdict on one request of an admitted or refused caller.
    fn verdict<'p>(
        &self,
        policy: &'p Policy,
        ctx: &Ctx,
        request: &RpcRequest,
        admission: &Admission<'p, '_>,
    ) -> Verdict<'p> {
        // Cloned only for a refusal: an allowed call copies nothing.
        let id = || Some(request.id.clone());
        let governed = governance(&request.method);
        if governed == Governance::Unknown {
            let refusal = Refusal::new(
                Reason::MethodNotAllowed,
                format!(
                    "`{}` is not an MCP method this gateway governs, so it is not forwarded",
                    request.method
                ),
            )
            .with_id(id());
            return Verdict::Refuse(refusal, None);
        }
        match governed {
            // The decision on an item includes admission's steps, with the same outcome.
            Governance::Target(_) => {
                let (kind, name) = request.target().expect("the wire reader requires a target");
                let d = decide_target(policy, &ctx.caller, kind, name, ctx.now);
                if d.allowed {
                    Verdict::Forward(d)
                } else {
                    Verdict::Refuse(
                        Refusal::denied(id(), Some((kind.as_str(), name)), &d),
                        Some(d),
                    )
                }
            }
            _ => {
                let d = admission.get();
                match governed {
                    _ if !d.allowed => Verdict::Refuse(Refusal::denied(id(), None, &d), Some(d)),
                    Governance::List(kind) => Verdict::List(d, kind),
                    _ => Verdict::Forward(d),
                }
            }
        }
    }

    async fn post(&self, req: Request<Incoming>, mut ctx: Ctx) -> Response<GatewayBody> {
        let (parts, body) = req.into_parts();
        let bytes = match inspect::check_content_type(&parts.headers) {
            Ok(()) => {
                inspect::read_body(
                    &parts.headers,
                    body,
                    self.limits.max_body_bytes,
                    self.limits.body_timeout,
                )
                .await
            }
            Err(refusal) => Err(refusal),
        };
        let parsed = bytes.and_then(|b| inspect::parse(&b).map(|p| (b, p)));
        let (bytes, parsed) = match parsed {
            Ok(p) => p,
            Err(refusal) => {
                self.emit_refusal(&ctx, None, refusal.reason);
                return refusal.into_response();
            }
        };
        let messages = match parsed {
            RpcBody::Single(Message::Request(request)) => {
                if ctx.protocol_version.is_none() {
                    ctx.protocol_version = request
                        .meta_protocol_version
                        .clone()
                        .or_else(|| request.initialize_version.clone());
                }
                if let Err(refusal) =
                    era::check_headers(&parts.headers, &request, ctx.protocol_version.as_deref())
                {
                    let refusal = Refusal::from_wire(Reason::HeaderMismatch, refusal);
                    self.emit_refusal(&ctx, Some(&request), refusal.reason);
                    return refusal.into_response();
                }
                return self.single(&ctx, &parts, bytes, request).await;
            }
            RpcBody::Single(other) => vec![other],
            RpcBody::Batch(messages) => {
                if !era::allows_batches(ctx.protocol_version.as_deref()) {
                    let refusal = Refusal::new(
                        Reason::BatchNotAllowed,
                        format!(
                            "JSON-RPC batches are not allowed in protocol version {}",
                            ctx.protocol_version
                                .as_deref()
                                .unwrap_or(era::DEFAULT_VERSION)
                        ),
                    );
                    self.emit_refusal(&ctx, None, refusal.reason);
                    return refusal.into_response();
                }
                messages
            }
        };
        self.batch(&ctx, &parts, bytes, messages).await
    }

    /// One request: refused with its reason, forwarded, or forwarded and its list filtered.
    async fn single(
        &self,
        ctx: &Ctx,
        parts: &http::request::Parts,
        bytes: Bytes,
        request: RpcRequest,
    ) -> Response<GatewayBody> {
        // Borrowed from the context, not cloned: an `Arc` clone is a write to a cache line every
        // request thread shares.
        let policy: &Policy = &ctx.policy;
        let admission = Admission::new(policy, &ctx.caller, ctx.now);
        let verdict = self.verdict(policy, ctx, &request, &admission);
        let (decision, list) = match verdict {
            Verdict::Refuse(refusal, decision) => {
                self.emit_refused(ctx, Some(&request), &refusal, decision.as_ref(), &bytes);
                return refusal.into_response();
            }
            Verdict::Forward(d) => (d, None),
            Verdict::List(d, kind) => (d, Some(kind)),
        };
        self.count(true, decision.reason.into());
        let out = Outgoing::new(parts, Some(bytes.clone()));
        let response = self.forward(out, &ctx.caller, policy.document()).await;
        match (response, list) {
            (Ok(resp), Some(kind)) => {
                let pending = vec![Pending {
                    id: request.id.clone(),
                    kind,
                    event: self.list_event(ctx, &request, &decision).map(|mut e| {
                        e.upstream_status = Some(resp.status().as_u16());
                        e
                    }),
                }];
                self.filter(ctx, pending)
                    .response(resp, self.limits.max_list_bytes)
                    .await
            }
            (Ok(resp), None) => {
                let status = resp.status().as_u16();
                self.emit_decision(ctx, Some(&request), &decision, Some(status), &bytes);
                passthrough(resp)
            }
            (Err(refusal), _) => {
                self.emit_decision(ctx, Some(&request), &decision, None, &bytes);
                refusal.into_response()
            }
        }
    }

    /// A batch (or a lone notification or response): every message is decided; one refusal
    /// refuses the whole batch, so no call rides along with others past the policy.
    async fn batch(
        &self,
        ctx: &Ctx,
        parts: &http::request::Parts,
        bytes: Bytes,
        messages: Vec<Message>,
    ) -> Response<GatewayBody> {
        let policy: &Policy = &ctx.policy;
        let admission = Admission::new(policy, &ctx.caller, ctx.now);
        let mut verdicts = Vec::with_capacity(messages.len());
        let mut refused = false;
        for message in &messages {
            let verdict = match message {
                Message::Request(r) => self.verdict(policy, ctx, r, &admission),
                Message::Notification { method } if !is_notification_method(method) => {
                    Verdict::Refuse(
                        Refusal::new(
                            Reason::NotificationNotAllowed,
                            format!(
                                "`{method}` is a request method and needs an `id`: sent as a notification it would reach the server undecided"
                            ),
                        ),
                        None,
                    )
                }
                Message::Notification { .. } | Message::Response { .. } => {
                    let d = admission.get();
                    if d.allowed {
                        Verdict::Forward(d)
                    } else {
                        Verdict::Refuse(Refusal::denied(None, None, &d), Some(d))
                    }
                }
            };
            refused |= matches!(verdict, Verdict::Refuse(..));
            verdicts.push(verdict);
        }
        if refused {
            return self.refuse_batch(ctx, &messages, verdicts, &bytes);
        }
        for v in &verdicts {
            if let Verdict::Forward(d) | Verdict::List(d, _) = v {
                self.count(true, d.reason.into());
            }
        }
        let out = Outgoing::new(parts, Some(bytes.clone()));
        let response = self.forward(out, &ctx.caller, policy.document()).await;
        let status = response.as_ref().map(|r| r.status().as_u16()).ok();
        let mut pending = Vec::new();
        for (message, verdict) in messages.iter().zip(&verdicts) {
            match (message, verdict) {
                (Message::Request(r), Verdict::List(d, kind)) if response.is_ok() => {
                    pending.push(Pending {
                        id: r.id.clone(),
                        kind: *kind,
                        event: self.list_event(ctx, r, d).map(|mut e| {
                            e.upstream_status = status;
                            e
                        }),
                    });
                }
                (Message::Request(r), Verdict::Forward(d) | Verdict::List(d, _)) => {
                    self.emit_decision(ctx, Some(r), d, status, &bytes);
                }
                (Message::Notification { method }, Verdict::Forward(d)) => {
                    self.emit_message(ctx, Some(method), d, status);
                }
                (_, Verdict::Forward(d)) => self.emit_message(ctx, None, d, status),
                _ => {}
            }
        }
        match response {
            Ok(resp) if !pending.is_empty() => {
                self.filter(ctx, pending)
                    .response(resp, self.limits.max_list_bytes)
                    .await
            }
            Ok(resp) => passthrough(resp),
            Err(refusal) => refusal.into_response(),
        }
    }

    fn refuse_batch(
        &self,
        ctx: &Ctx,
        messages: &[Message],
        verdicts: Vec<Verdict<'_>>,
        bytes: &Bytes,
    ) -> Response<GatewayBody> {
        let mut answers = Vec::new();
        let mut first_unanswered: Option<Refusal> = None;
        for (message, verdict) in messages.iter().zip(verdicts) {
            let request = match message {
                Message::Request(r) => Some(r),
                _ => None,
            };
            let refusal = match verdict {
                Verdict::Refuse(refusal, decision) => {
                    self.emit_refused(ctx, request, &refusal, decision.as_ref(), bytes);
                    refusal
                }
                Verdict::Forward(_) | Verdict::List(..) => {
                    self.emit_refusal(ctx, request, Reason::BatchDenied);
                    Refusal::new(
                        Reason::BatchDenied,
                        "not executed: the batch contains a message the gateway refused",
                    )
                    .with_id(request.map(|r| r.id.clone()))
                }
            };
            if request.is_some() {
                answers.push(refusal.to_json_rpc());
            } else if first_unanswered.is_none() && refusal.reason != Reason::BatchDenied {
                first_unanswered = Some(refusal);
            }
        }
        if answers.is_empty() {
            // Only notifications and responses: the refusal is the HTTP answer.
            let mut refusal = first_unanswered.expect("a refused batch has a refusal");
            if let Reason::Policy(_) = refusal.reason {
                refusal.status = Some(StatusCode::FORBIDDEN);
            }
            return refusal.into_response();
        }
        json_response(StatusCode::OK, format!("[{}]", answers.join(",")))
    }
}
