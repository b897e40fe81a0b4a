//! Prometheus metrics of the gateway.

use mcp_runtime_audit::Auditor;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
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
        Self {
            registry,
            requests,
            decisions,
            duration,
            reloads,
        }
    }

    /// Exports the audit pipeline's counts (queue, spool, shipper), read from `auditor` at each
    /// scrape.
    pub fn register_audit(&mut self, auditor: Auditor) {
        self.registry
            .register_collector(Box::new(AuditCollector(auditor)));
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

/// The auditor's own counts, as counters (`_total`) and gauges, at each scrape.
struct AuditCollector(Auditor);

impl std::fmt::Debug for AuditCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditCollector")
    }
}

impl Collector for AuditCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let counters = [
            ("audit_emitted_events", "Audit events emitted", s.emitted),
            (
                "audit_dropped_events",
                "Audit events lost before a sink: queue full, emitted after shutdown, spool full",
                s.dropped,
            ),
            (
                "audit_shipped_events",
                "Audit events acknowledged by the ingest (a re-sent batch counts again)",
                s.shipped,
            ),
            (
                "audit_ship_failures",
                "Ingest POSTs that failed and will be retried (connection error, timeout, 5xx, 429)",
                s.ship_failures,
            ),
            (
                "audit_skipped_events",
                "Audit events given up on: in batches the ingest refused with a 4xx, or unreadable in the spool",
                s.skipped,
            ),
            (
                "audit_write_errors",
                "Audit events a sink failed to write (JSON-lines file or spool)",
                s.write_errors,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "audit_spool_pending_events",
                "Audit events spooled and not yet acknowledged by the ingest",
                s.spooled_pending,
            ),
            (
                "audit_spool_bytes",
                "Bytes of spool segment files on disk",
                s.spool_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
