//! One audit event per decision. Events borrow what they report (the policy document, the
//! caller, the request) and are serialised by `Auditor::emit` before the borrow ends, so building
//! one copies no string. Caller-controlled text is capped ([`mcp_runtime_audit::capped`]).
//!
//! Refusals before authentication are aggregated: the first of a kind (reason and HTTP method)
//! is recorded at once, the ones that follow within the second are counted and recorded as one
//! event with `count`, so a flood of unauthenticated requests is visible without filling the
//! spool.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use mcp_runtime_audit::{AuditEvent, Decision as AuditDecision, capped};
use mcp_runtime_policy::{Decision, PolicyDocument, Trust};
use mcp_runtime_wire::jsonrpc::{Id, Request};
use mcp_runtime_wire::method::{ListKind, TargetKind};
use serde_json::Value;

use super::Ctx;
use super::filter::Pending;
use super::refusal::{Reason, Refusal};
use super::trace::RequestSpan;

fn text(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(|s| Cow::Borrowed(capped(s)))
}

/// The JSON-RPC id as the event records it (long string ids cut like other text).
fn rpc_id(id: &Id) -> Option<Value> {
    match serde_json::from_str::<Value>(&id.0).ok()? {
        Value::String(s) => Some(Value::String(capped(&s).to_owned())),
        other => Some(other),
    }
}

impl super::Gateway {
    fn base_event<'a>(
        &'a self,
        doc: Option<&'a PolicyDocument>,
        http_method: &'a Method,
        allowed: bool,
        reason: Reason,
    ) -> AuditEvent<'a> {
        let (server, namespace) = doc.map_or(("", ""), |d| {
            (d.server.name.as_str(), d.server.namespace.as_str())
        });
        let decision = if allowed {
            AuditDecision::Allow
        } else {
            AuditDecision::Deny
        };
        let mut event = AuditEvent::new(
            self.audit_source.as_str(),
            server,
            namespace,
            http_method.as_str(),
            decision,
            reason.as_str(),
        );
        if let Some(d) = doc {
            event.cluster = d.server.cluster.as_deref().map(Cow::Borrowed);
            event.team_id = d.server.team_id.as_deref().map(Cow::Borrowed);
            event.policy_revision = Some(Cow::Borrowed(&d.revision));
            event.policy_version = d.policy.policy_version.as_deref().map(Cow::Borrowed);
        }
        event
    }

    /// An event for a request of an authenticated caller.
    pub(super) fn event<'a>(
        &'a self,
        ctx: &'a Ctx<'_>,
        request: Option<&'a Request>,
        allowed: bool,
        reason: Reason,
    ) -> AuditEvent<'a> {
        let mut event = self.base_event(
            Some(ctx.policy.document()),
            &ctx.http_method,
            allowed,
            reason,
        );
        event.human_id = text(&ctx.caller.human);
        event.agent_id = text(&ctx.caller.agent);
        event.subject_team_id = text(&ctx.caller.team);
        event.session_id = text(&ctx.caller.session);
        event.protocol_version = text(&ctx.protocol_version);
        event.latency_ms = ctx.start.elapsed().as_secs_f64() * 1000.0;
        event.trace_id = ctx.span.trace_id().map(Cow::Borrowed);
        event.span_id = ctx.span.span_id().map(Cow::Borrowed);
        if let Some(r) = request {
            event.rpc_method = Some(Cow::Borrowed(capped(&r.method)));
            event.rpc_id = rpc_id(&r.id);
            if let Some((kind, name)) = r.target() {
                let name = Some(Cow::Borrowed(capped(name)));
                match kind {
                    TargetKind::Tool => event.tool = name,
                    TargetKind::Prompt => event.prompt = name,
                    TargetKind::Resource => event.resource = name,
                }
            }
        }
        event
    }

    /// Records a refusal of an authenticated caller's request (counted in the metrics too).
    pub(super) fn emit_refusal(&self, ctx: &Ctx<'_>, request: Option<&Request>, reason: Reason) {
        self.count(false, reason);
        note(ctx, request, false, reason);
        if let Some(auditor) = &self.audit {
            auditor.emit(self.event(ctx, request, false, reason));
        }
    }

    /// Records a refused message: with the policy's decision when it was one, and counts it.
    pub(super) fn emit_refused(
        &self,
        ctx: &Ctx<'_>,
        request: Option<&Request>,
        refusal: &Refusal,
        decision: Option<&Decision<'_>>,
        body: &Bytes,
    ) {
        self.count(false, refusal.reason);
        match (decision, request) {
            (Some(d), Some(_)) => self.emit_decision(ctx, request, d, None, body),
            (Some(d), None) => self.emit_message(ctx, None, d, None),
            (None, _) => {
                note(ctx, request, false, refusal.reason);
                if let Some(auditor) = &self.audit {
                    auditor.emit(self.event(ctx, request, false, refusal.reason));
                }
            }
        }
    }

    /// Records a message that is not a request (a notification or a client's response).
    pub(super) fn emit_message(
        &self,
        ctx: &Ctx<'_>,
        method: Option<&str>,
        admission: &Decision<'_>,
        upstream_status: Option<u16>,
    ) {
        ctx.span.note(
            Some(ctx.policy.document()),
            method.map(|m| (m, None)),
            admission.allowed,
            admission.reason.into(),
        );
        if let Some(auditor) = &self.audit {
            let mut event = self.event(ctx, None, admission.allowed, admission.reason.into());
            event.rpc_method = method.map(|m| Cow::Borrowed(capped(m)));
            attribute(&mut event, admission);
            event.upstream_status = upstream_status;
            auditor.emit(event);
        }
    }

    /// Records a policy decision on a request (admission or the decision on its target).
    pub(super) fn emit_decision(
        &self,
        ctx: &Ctx<'_>,
        request: Option<&Request>,
        d: &Decision<'_>,
        upstream_status: Option<u16>,
        body: &Bytes,
    ) {
        note(ctx, request, d.allowed, d.reason.into());
        let Some(auditor) = &self.audit else { return };
        let mut event = self.event(ctx, request, d.allowed, d.reason.into());
        attribute(&mut event, d);
        event.upstream_status = upstream_status;
        if self.capture_arguments && request.is_some_and(Request::is_tool_call) {
            event.arguments = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.pointer("/params/arguments").cloned());
        }
        auditor.emit(event);
    }

    /// A list request awaiting its answer, with its owned audit event (emitted once the answer
    /// has been filtered).
    pub(super) fn pending_list(
        &self,
        ctx: &Ctx<'_>,
        request: &Request,
        d: &Decision<'_>,
        kind: ListKind,
        upstream_status: Option<u16>,
    ) -> Pending {
        note(ctx, Some(request), d.allowed, d.reason.into());
        let event = self.audit.as_ref().map(|_| {
            let mut event = self.event(ctx, Some(request), d.allowed, d.reason.into());
            attribute(&mut event, d);
            event.upstream_status = upstream_status;
            event.into_owned()
        });
        Pending::new(request.id.clone(), kind, event)
    }

    /// Records (aggregated) a refusal before the caller is known. Aggregated events stand for
    /// many requests, so they carry no trace context; the request's span records the refusal.
    pub(super) fn refuse_unauthenticated(
        &self,
        span: &RequestSpan,
        doc: Option<&PolicyDocument>,
        http_method: &Method,
        reason: Reason,
    ) {
        self.count(false, reason);
        span.note(doc, None, false, reason);
        let Some(auditor) = &self.audit else { return };
        let key = (reason.as_str(), crate::metrics::method_label(http_method));
        let first = {
            let mut buckets = self
                .unauthenticated
                .buckets
                .lock()
                .expect("refusal buckets");
            match buckets.get_mut(&key) {
                Some(bucket) => {
                    bucket.count += 1;
                    false
                }
                None => {
                    let (server, namespace) = doc.map_or_else(Default::default, |d| {
                        (d.server.name.clone(), d.server.namespace.clone())
                    });
                    buckets.insert(
                        key,
                        Bucket {
                            count: 0,
                            server,
                            namespace,
                        },
                    );
                    true
                }
            }
        };
        if first {
            auditor.emit(self.base_event(doc, http_method, false, reason));
        }
    }

    /// Records the refusals counted since the last flush, one event per kind, and forgets kinds
    /// that saw none (their next refusal is recorded at once again).
    pub fn flush_unauthenticated(&self) {
        let Some(auditor) = &self.audit else { return };
        let due: Vec<((&'static str, &'static str), Bucket)> = {
            let mut buckets = self
                .unauthenticated
                .buckets
                .lock()
                .expect("refusal buckets");
            buckets.retain(|_, b| b.count > 0);
            buckets
                .iter_mut()
                .map(|(k, b)| {
                    let taken = Bucket {
                        count: b.count,
                        server: b.server.clone(),
                        namespace: b.namespace.clone(),
                    };
                    b.count = 0;
                    (*k, taken)
                })
                .collect()
        };
        for ((reason, method), bucket) in due {
            let mut event = AuditEvent::new(
                self.audit_source.as_str(),
                bucket.server.as_str(),
                bucket.namespace.as_str(),
                method,
                AuditDecision::Deny,
                reason,
            );
            event.count = Some(bucket.count);
            auditor.emit(event);
        }
    }

    /// Flushes aggregated refusals every second, forever.
    pub async fn flush_unauthenticated_forever(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            self.flush_unauthenticated();
        }
    }
}

/// Tells the request's span about a decision (nothing to do when the request is not traced).
fn note(ctx: &Ctx<'_>, request: Option<&Request>, allowed: bool, reason: Reason) {
    if !ctx.span.recording() {
        return;
    }
    ctx.span.note(
        Some(ctx.policy.document()),
        request.map(|r| (r.method.as_str(), r.target())),
        allowed,
        reason,
    );
}

fn attribute<'a>(event: &mut AuditEvent<'a>, d: &Decision<'a>) {
    let trust = |t: Option<Trust>| t.map(|t| Cow::Borrowed(t.as_str()));
    event.enforced = d.enforced;
    event.required_trust = trust(d.required_trust);
    event.admin_trust = trust(d.admin_trust);
    event.consented_trust = trust(d.consented_trust);
    event.effective_trust = trust(d.effective_trust);
    event.matched_grant = d.grant_ref().map(Cow::Owned);
    event.matched_session = d.session_ref().map(Cow::Owned);
    if let Some(v) = d.policy_version {
        event.policy_version = Some(Cow::Borrowed(v));
    }
}

/// Refusals before authentication, counted per (reason, HTTP method).
#[derive(Default)]
pub struct Unauthenticated {
    buckets: Mutex<HashMap<(&'static str, &'static str), Bucket>>,
}

struct Bucket {
    count: u64,
    server: String,
    namespace: String,
}
