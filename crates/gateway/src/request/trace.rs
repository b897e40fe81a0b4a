//! Tracing of the request path: the W3C trace context a request brings, whether the gateway
//! records it (a span `mcp.gateway.request`), what the audit events carry (`trace_id`,
//! `span_id`) and the `traceparent` the upstream receives.
//!
//! Sampling follows the parent: a request whose `traceparent` says sampled is recorded, one
//! that says not sampled is not; a request without one is recorded with the gateway's ratio
//! (`--trace-sample-ratio`, 0 by default: the gateway starts no trace of its own). Without an
//! exporter nothing is recorded, and a valid incoming trace id still reaches the audit events.
//!
//! A request that is not recorded costs a header lookup: no allocation, no lock.

use std::sync::Mutex;

use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use mcp_runtime_audit::capped;
use mcp_runtime_policy::PolicyDocument;
use mcp_runtime_svc::otel::{
    Hex, Sampler, Span, SpanContext, SpanId, SpanKind, Status, TRACEPARENT, TraceId, Tracer,
    unix_nanos,
};
use mcp_runtime_wire::method::TargetKind;

use super::refusal::Reason;

/// The gateway span's name.
pub const SPAN_NAME: &str = "mcp.gateway.request";

/// How the gateway traces.
#[derive(Clone, Debug, Default)]
pub struct Tracing {
    /// Where recorded spans go (disabled: no `--otlp-endpoint`).
    pub tracer: Tracer,
    /// Which requests without a trace context start a trace (none by default).
    pub sampler: Sampler,
}

impl Tracing {
    /// Reads the request's `traceparent` and decides whether this request is recorded.
    pub fn begin(&self, headers: &HeaderMap) -> RequestSpan {
        let incoming = headers
            .get(TRACEPARENT)
            .and_then(|v| SpanContext::from_traceparent(v.as_bytes()));
        let recorded = |trace_id, parent| {
            RequestSpan::new(
                trace_id,
                parent,
                Some(Own {
                    span_id: SpanId::random(),
                    start: unix_nanos(),
                }),
            )
        };
        match incoming {
            Some(parent) if parent.sampled && self.tracer.enabled() => {
                recorded(parent.trace_id, Some(parent.span_id))
            }
            Some(parent) => RequestSpan::new(parent.trace_id, Some(parent.span_id), None),
            None if self.sampler.starts_traces() && self.tracer.enabled() => {
                let trace_id = TraceId::random();
                if self.sampler.samples(trace_id) {
                    recorded(trace_id, None)
                } else {
                    RequestSpan::none()
                }
            }
            None => RequestSpan::none(),
        }
    }
}

/// The trace context of one request, and while it is recorded, what its span will say.
#[derive(Debug)]
pub struct RequestSpan {
    ids: Option<Ids>,
    /// Written only while recorded.
    notes: Mutex<Notes>,
}

#[derive(Clone, Copy, Debug)]
struct Ids {
    trace_id: TraceId,
    /// `trace_id` as text, borrowed by the audit events.
    trace_hex: Hex<32>,
    /// The caller's span, when the request came with a context.
    parent: Option<SpanId>,
    /// The gateway's span, when this request is recorded.
    own: Option<Own>,
    own_hex: Option<Hex<16>>,
}

#[derive(Clone, Copy, Debug)]
struct Own {
    span_id: SpanId,
    start: u64,
}

/// What the request path learned, for the span's attributes.
#[derive(Debug, Default)]
struct Notes {
    server: Option<(String, String)>,
    rpc_method: Option<String>,
    target: Option<(TargetKind, String)>,
    /// Allowed, and the reason code.
    decision: Option<(bool, &'static str)>,
    /// Messages decided (more than one for a batch).
    messages: u32,
}

impl Notes {
    const EMPTY: Notes = Notes {
        server: None,
        rpc_method: None,
        target: None,
        decision: None,
        messages: 0,
    };
}

/// A JSON-RPC message as the span names it: its method and what it targets.
pub type RpcNote<'a> = (&'a str, Option<(TargetKind, &'a str)>);

impl RequestSpan {
    /// No trace context and not recorded.
    pub const fn none() -> RequestSpan {
        RequestSpan {
            ids: None,
            notes: Mutex::new(Notes::EMPTY),
        }
    }

    fn new(trace_id: TraceId, parent: Option<SpanId>, own: Option<Own>) -> RequestSpan {
        RequestSpan {
            ids: Some(Ids {
                trace_id,
                trace_hex: trace_id.to_hex(),
                parent,
                own,
                own_hex: own.map(|o| o.span_id.to_hex()),
            }),
            notes: Mutex::new(Notes::EMPTY),
        }
    }

    /// Whether the gateway records a span for this request.
    pub fn recording(&self) -> bool {
        self.ids.is_some_and(|i| i.own.is_some())
    }

    /// The trace id for the audit events (also of a request that is not recorded).
    pub fn trace_id(&self) -> Option<&str> {
        self.ids.as_ref().map(|i| i.trace_hex.as_str())
    }

    /// The gateway span's id, when recorded.
    pub fn span_id(&self) -> Option<&str> {
        self.ids
            .as_ref()
            .and_then(|i| i.own_hex.as_ref())
            .map(Hex::as_str)
    }

    /// The `traceparent` for the upstream when recorded: the gateway's span is the parent of
    /// the server's work. (Otherwise the caller's header, if any, is passed on unchanged.)
    pub fn upstream_traceparent(&self) -> Option<(HeaderName, HeaderValue)> {
        let ids = self.ids?;
        let own = ids.own?;
        let context = SpanContext {
            trace_id: ids.trace_id,
            span_id: own.span_id,
            sampled: true,
        };
        let value = HeaderValue::from_str(context.traceparent().as_str()).ok()?;
        Some((HeaderName::from_static(TRACEPARENT), value))
    }

    /// Records a decision on (part of) the request. For a batch the first refusal is kept, else
    /// the first decision; caller-controlled names are capped like in audit events.
    pub fn note(
        &self,
        doc: Option<&PolicyDocument>,
        rpc: Option<RpcNote<'_>>,
        allowed: bool,
        reason: Reason,
    ) {
        if !self.recording() {
            return;
        }
        let Ok(mut notes) = self.notes.lock() else {
            return;
        };
        notes.messages += 1;
        if notes.server.is_none()
            && let Some(doc) = doc
        {
            notes.server = Some((doc.server.name.clone(), doc.server.namespace.clone()));
        }
        let replace = match notes.decision {
            None => true,
            Some((was_allowed, _)) => was_allowed && !allowed,
        };
        if replace {
            notes.decision = Some((allowed, reason.as_str()));
            notes.rpc_method = rpc.map(|(m, _)| capped(m).to_owned());
            notes.target = rpc
                .and_then(|(_, t)| t)
                .map(|(kind, name)| (kind, capped(name).to_owned()));
        }
    }

    /// Ends the span with the answer's status and hands it to `tracer` (nothing when the
    /// request is not recorded).
    pub fn finish(&self, tracer: &Tracer, http_method: &'static str, status: StatusCode) {
        let Some(ids) = self.ids else { return };
        let Some(own) = ids.own else { return };
        let notes = match self.notes.lock() {
            Ok(mut n) => std::mem::take(&mut *n),
            Err(_) => Notes::default(),
        };
        let mut span = Span::new(
            SPAN_NAME,
            SpanKind::Server,
            ids.trace_id,
            ids.parent,
            own.start,
        )
        .end_at(unix_nanos());
        span.span_id = own.span_id;
        span.set("http.request.method", http_method);
        span.set("http.response.status_code", status.as_u16());
        if let Some((server, namespace)) = notes.server {
            span.set("mcp.server", server);
            span.set("mcp.namespace", namespace);
        }
        if let Some(method) = notes.rpc_method {
            span.set("rpc.system", "jsonrpc");
            span.set("rpc.method", method);
        }
        if let Some((kind, name)) = notes.target {
            let key = match kind {
                TargetKind::Tool => "mcp.tool.name",
                TargetKind::Prompt => "mcp.prompt.name",
                TargetKind::Resource => "mcp.resource.uri",
            };
            span.set(key, name);
        }
        if let Some((allowed, reason)) = notes.decision {
            span.set("mcp.decision", if allowed { "allow" } else { "deny" });
            span.set("mcp.reason", reason);
        }
        if notes.messages > 1 {
            span.set("mcp.batch.messages", i64::from(notes.messages));
        }
        if status.is_server_error() {
            span.status = Status::Error(match notes.decision {
                Some((_, reason)) => reason.to_owned(),
                None => format!("HTTP {}", status.as_u16()),
            });
        }
        tracer.record(span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    fn headers(traceparent: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = traceparent {
            h.insert(TRACEPARENT, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// A tracer that looks enabled but whose spans go nowhere (no task runs in these tests).
    fn enabled() -> Tracer {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tracer, _task) = rt.block_on(async {
            Tracer::start(mcp_runtime_svc::otel::ExportConfig::new(
                "http://127.0.0.1:9".parse().unwrap(),
                "t",
            ))
            .unwrap()
        });
        tracer
    }

    #[test]
    fn the_parent_decides_and_the_ratio_only_starts_traces() {
        let off = Tracing::default();
        let on = Tracing {
            tracer: enabled(),
            sampler: Sampler::NEVER,
        };
        let all = Tracing {
            tracer: on.tracer.clone(),
            sampler: Sampler::ratio(1.0),
        };

        // No exporter: nothing recorded, the incoming trace id still known.
        let s = off.begin(&headers(Some(SAMPLED)));
        assert!(!s.recording());
        assert_eq!(s.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(s.span_id(), None);
        assert!(s.upstream_traceparent().is_none());

        // A sampled parent is continued, with a span of the gateway's own as the next parent.
        let s = on.begin(&headers(Some(SAMPLED)));
        assert!(s.recording());
        assert_eq!(s.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let own = s.span_id().unwrap();
        assert_ne!(own, "00f067aa0ba902b7");
        let (name, value) = s.upstream_traceparent().unwrap();
        assert_eq!(name, "traceparent");
        assert_eq!(
            value.to_str().unwrap(),
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{own}-01")
        );

        // An unsampled parent is respected, even by a gateway that samples everything.
        for t in [&on, &all] {
            let s = t.begin(&headers(Some(UNSAMPLED)));
            assert!(!s.recording());
            assert_eq!(s.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        }

        // Without a context: nothing, unless the ratio starts a trace.
        assert_eq!(on.begin(&headers(None)).trace_id(), None);
        assert_eq!(off.begin(&headers(None)).trace_id(), None);
        let s = all.begin(&headers(Some("garbage")));
        assert!(s.recording());
        assert_ne!(s.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let never = Tracing {
            tracer: on.tracer.clone(),
            sampler: Sampler::ratio(0.0),
        };
        assert!(!never.begin(&headers(None)).recording());
    }

    #[test]
    fn a_refusal_in_a_batch_names_the_span() {
        let on = Tracing {
            tracer: enabled(),
            sampler: Sampler::NEVER,
        };
        let s = on.begin(&headers(Some(SAMPLED)));
        let allowed = Reason::Policy(mcp_runtime_policy::Reason::Allowed);
        s.note(
            None,
            Some(("tools/call", Some((TargetKind::Tool, "a")))),
            true,
            allowed,
        );
        s.note(
            None,
            Some(("tools/call", Some((TargetKind::Tool, "b")))),
            false,
            Reason::UpstreamError,
        );
        s.note(None, Some(("tools/list", None)), true, allowed);
        let notes = s.notes.lock().unwrap();
        assert_eq!(notes.messages, 3);
        assert_eq!(notes.decision, Some((false, "upstream_error")));
        assert_eq!(notes.target.as_ref().map(|t| t.1.as_str()), Some("b"));

        // Nothing is noted for a request that is not recorded.
        let quiet = RequestSpan::none();
        quiet.note(None, None, true, allowed);
        assert_eq!(quiet.notes.lock().unwrap().messages, 0);
    }
}
