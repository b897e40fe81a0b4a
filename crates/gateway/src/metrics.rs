//! Prometheus metrics of the gateway.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub http_method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub duration: Histogram,
    pub reloads: Family<ReloadLabels, Counter>,
    pub audit_pending: Gauge,
    pub audit_dropped: Gauge,
    pub audit_emitted: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        // 100 µs .. ~13 s: the gateway's own work is sub-millisecond, upstream calls are not.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0001, 2.0, 18,
        ));
        let reloads = Family::<ReloadLabels, Counter>::default();
        let (audit_pending, audit_dropped, audit_emitted) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "requests",
            "HTTP requests handled, by method and status",
            requests.clone(),
        );
        registry.register(
            "decisions",
            "Policy decisions, by decision and reason",
            decisions.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers",
            duration.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy file loads, by result",
            reloads.clone(),
        );
        registry.register(
            "audit_spool_pending_events",
            "Audit events spooled and not yet acknowledged by the ingest",
            audit_pending.clone(),
        );
        registry.register(
            "audit_dropped_events",
            "Audit events dropped (queue or spool full) since start",
            audit_dropped.clone(),
        );
        registry.register(
            "audit_emitted_events",
            "Audit events emitted since start",
            audit_emitted.clone(),
        );
        Self {
            registry,
            requests,
            decisions,
            duration,
            reloads,
            audit_pending,
            audit_dropped,
            audit_emitted,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Bounded label value for HTTP methods.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        _ => "OTHER",
    }
}
