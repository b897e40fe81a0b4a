//! POST: one JSON-RPC message or a batch, each message decided — admission, or the decision on
//! the item it names — then forwarded whole, or refused whole.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use jiff::Timestamp;
use mcp_runtime_policy::{Decision, Policy};
use mcp_runtime_wire::era;
use mcp_runtime_wire::jsonrpc::{Body as RpcBody, Message, Request as RpcRequest};
use mcp_runtime_wire::method::{Governance, ListKind, governance, is_notification_method};

use super::decide::{admit, decide_target};
use super::forward::Outgoing;
use super::refusal::{Reason, Refusal};
use super::{Ctx, Gateway, GatewayBody, inspect, json_response, passthrough};
use crate::auth::Caller;

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
    /// The verdict on one request of an admitted or refused caller.
    fn verdict<'p>(
        &self,
        policy: &'p Policy,
        ctx: &Ctx<'_>,
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

    pub(super) async fn post(
        &self,
        req: Request<Incoming>,
        mut ctx: Ctx<'_>,
    ) -> Response<GatewayBody> {
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
        ctx: &Ctx<'_>,
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
        let response = self.forward(out, ctx).await;
        match (response, list) {
            (Ok(resp), Some(kind)) => {
                let status = Some(resp.status().as_u16());
                let pending = vec![self.pending_list(ctx, &request, &decision, kind, status)];
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
        ctx: &Ctx<'_>,
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
        let response = self.forward(out, ctx).await;
        let status = response.as_ref().map(|r| r.status().as_u16()).ok();
        let mut pending = Vec::new();
        for (message, verdict) in messages.iter().zip(&verdicts) {
            match (message, verdict) {
                (Message::Request(r), Verdict::List(d, kind)) if response.is_ok() => {
                    pending.push(self.pending_list(ctx, r, d, *kind, status));
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
        ctx: &Ctx<'_>,
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
