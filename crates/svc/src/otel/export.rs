//! The span exporter: a bounded queue in front of one background task that posts batches to
//! `<endpoint>/v1/traces` as OTLP/HTTP JSON (`ExportTraceServiceRequest`).
//!
//! Delivery is best effort, as tracing should be: a span that finds the queue full is dropped and
//! counted; a batch the collector does not take (down, slow, an error status) is dropped and
//! counted, not retried, so a collector outage costs the servers nothing but those spans.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::ser::SerializeStruct as _;
use tokio::sync::{mpsc, oneshot};

use super::{Span, Status, Value};

/// Where spans go and how they are batched.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// The collector's OTLP/HTTP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`, e.g.
    /// `http://otel-collector:4318`); spans are posted to `<endpoint>/v1/traces`.
    pub endpoint: Uri,
    /// `service.name` of every span (`mcp-gateway`, `mcp-sentinel`).
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// Spans waiting for export; beyond, new spans are dropped.
    pub queue_capacity: usize,
    /// Spans per request to the collector.
    pub max_batch: usize,
    /// The longest a span waits for its batch to fill.
    pub flush_interval: Duration,
    /// Time allowed for one export request.
    pub timeout: Duration,
}

impl ExportConfig {
    /// Defaults for `endpoint` and `service_name`: a queue of 2048 spans, batches of up to 512
    /// sent at least every second, 10 s per request.
    pub fn new(endpoint: Uri, service_name: impl Into<String>) -> ExportConfig {
        ExportConfig {
            endpoint,
            service_name: service_name.into(),
            service_version: String::new(),
            queue_capacity: 2048,
            max_batch: 512,
            flush_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("OTLP endpoint {url}: {reason}")]
    Endpoint { url: String, reason: String },
    #[error("TLS for the OTLP endpoint: {0}")]
    Tls(#[from] mcp_runtime_tls::TlsError),
}

/// What the exporter did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Spans dropped because their export request failed.
    pub dropped_export_failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_export_failed: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    queue: mpsc::Sender<Span>,
    counters: Arc<Counters>,
}

/// The handle spans are recorded through; cheap to clone. A disabled tracer (no endpoint)
/// records nothing, and callers check [`Tracer::enabled`] before building a span.
#[derive(Clone, Debug, Default)]
pub struct Tracer {
    inner: Option<Arc<Inner>>,
}

/// The background task that exports; [`ExportTask::shutdown`] flushes what is queued.
#[derive(Debug)]
pub struct ExportTask {
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn disabled() -> Tracer {
        Tracer { inner: None }
    }

    /// Starts the exporter task on the current Tokio runtime (spans may be recorded from any
    /// thread or runtime).
    pub fn start(config: ExportConfig) -> Result<(Tracer, ExportTask), OtelError> {
        let url = traces_url(&config.endpoint)?;
        let trust = mcp_runtime_tls::Trust::system_and(None);
        let connector = mcp_runtime_tls::connector(&trust)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        let (queue, spans) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = oneshot::channel();
        let exporter = Exporter {
            url,
            client,
            body_prefix: body_prefix(&config),
            max_batch: config.max_batch.max(1),
            flush_interval: config.flush_interval,
            timeout: config.timeout,
            counters: counters.clone(),
            failing: AtomicBool::new(false),
        };
        let handle = tokio::spawn(exporter.run(spans, stopped));
        tracing::info!(endpoint = %config.endpoint, service = %config.service_name, "exporting traces (OTLP/HTTP JSON)");
        Ok((
            Tracer {
                inner: Some(Arc::new(Inner { queue, counters })),
            },
            ExportTask { stop, handle },
        ))
    }

    /// Whether spans are exported at all.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues a finished span; never waits: when the queue is full the span is dropped and
    /// counted.
    pub fn record(&self, span: Span) {
        let Some(inner) = &self.inner else { return };
        if inner.queue.try_send(span).is_err() {
            inner
                .counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> TraceStats {
        self.inner.as_ref().map_or_else(TraceStats::default, |i| {
            let c = &i.counters;
            TraceStats {
                exported: c.exported.load(Ordering::Relaxed),
                dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
                dropped_export_failed: c.dropped_export_failed.load(Ordering::Relaxed),
            }
        })
    }

    /// Exports the counts at each scrape of `registry` (`trace_spans_exported_total`,
    /// `trace_spans_dropped_total{reason="queue_full"|"export_failed"}` under its prefix).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(TraceCollector(self.clone())));
    }
}

impl ExportTask {
    /// Exports what is queued (for at most `timeout`), then ends the task.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(());
        let mut handle = self.handle;
        if tokio::time::timeout(timeout, &mut handle).await.is_err() {
            tracing::warn!(
                ?timeout,
                "trace export did not finish in time; spans left unsent"
            );
            handle.abort();
        }
    }
}

/// `<endpoint>/v1/traces`, the path of the base URL kept (OTLP's rule for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`).
fn traces_url(endpoint: &Uri) -> Result<Uri, OtelError> {
    let invalid = |reason: &str| OtelError::Endpoint {
        url: endpoint.to_string(),
        reason: reason.to_owned(),
    };
    match endpoint.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("the scheme must be http or https")),
    }
    let authority = endpoint.authority().ok_or_else(|| invalid("no host"))?;
    if authority.as_str().contains('@') {
        // It would end up in logs; collectors that need credentials sit behind an agent.
        return Err(invalid("credentials in the URL are not supported"));
    }
    if endpoint.query().is_some() {
        return Err(invalid("a query is not allowed in the base URL"));
    }
    let path = format!("{}/v1/traces", endpoint.path().trim_end_matches('/'));
    Uri::builder()
        .scheme(endpoint.scheme_str().unwrap_or("http"))
        .authority(authority.as_str())
        .path_and_query(path)
        .build()
        .map_err(|e| invalid(&e.to_string()))
}

struct Exporter {
    url: Uri,
    client: Client<mcp_runtime_tls::Connector, Full<Bytes>>,
    /// The request up to the first span (the resource and scope are the same in every batch).
    body_prefix: Vec<u8>,
    max_batch: usize,
    flush_interval: Duration,
    timeout: Duration,
    counters: Arc<Counters>,
    /// Whether the last export failed (a failure is logged as a warning once, then quietly
    /// until an export succeeds again).
    failing: AtomicBool,
}

impl Exporter {
    async fn run(self, mut spans: mpsc::Receiver<Span>, mut stop: oneshot::Receiver<()>) {
        let mut batch: Vec<Span> = Vec::with_capacity(self.max_batch);
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let flush_at = deadline;
            // Below max_batch here: a full batch was exported at the end of the last turn.
            let room = self.max_batch - batch.len();
            tokio::select! {
                biased;
                _ = &mut stop => {
                    while let Ok(span) = spans.try_recv() {
                        batch.push(span);
                        if batch.len() >= self.max_batch {
                            self.export(&mut batch).await;
                        }
                    }
                    self.export(&mut batch).await;
                    return;
                }
                received = spans.recv_many(&mut batch, room) => {
                    if received == 0 {
                        // Every tracer is gone.
                        self.export(&mut batch).await;
                        return;
                    }
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.flush_interval);
                }
                () = sleep_until(flush_at), if flush_at.is_some() => {}
            }
            let due = deadline.is_some_and(|d| d <= tokio::time::Instant::now());
            if batch.len() >= self.max_batch || due {
                self.export(&mut batch).await;
                deadline = None;
            }
        }
    }

    /// Posts `batch` (emptied either way).
    async fn export(&self, batch: &mut Vec<Span>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let body = encode_request(&self.body_prefix, batch);
        batch.clear();
        match self.post(body).await {
            Ok(()) => {
                self.counters.exported.fetch_add(count, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export works again");
                }
            }
            Err(why) => {
                self.counters
                    .dropped_export_failed
                    .fetch_add(count, Ordering::Relaxed);
                if self.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(spans = count, error = %why, "trace export failed; spans dropped");
                } else {
                    tracing::warn!(spans = count, error = %why, url = %self.url,
                        "trace export failed; spans dropped (logged once until it works again)");
                }
            }
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("mcp-runtime/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{e}: {}", source_chain(&e)))?;
            let status = response.status();
            // Read the (small) answer so the connection can be reused.
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else {
                let snippet = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
                Err(format!("the collector answered {status}: {snippet}"))
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        out.push(s.to_string());
        source = s.source();
    }
    out.join(": ")
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

// ---- OTLP JSON ------------------------------------------------------------------------------
//
// The protobuf JSON mapping, as OTLP/HTTP specifies it for JSON: lowerCamelCase field names,
// trace and span ids as hex strings (not base64), enums as integers, 64-bit integers as strings.

/// `{"resourceSpans":[{"resource":{...},"scopeSpans":[{"scope":{...},"spans":[` — everything
/// before the spans, the same for every batch.
fn body_prefix(config: &ExportConfig) -> Vec<u8> {
    #[derive(Serialize)]
    struct Resource<'a> {
        attributes: Vec<Attribute<'a>>,
    }
    #[derive(Serialize)]
    struct Scope<'a> {
        name: &'a str,
        version: &'a str,
    }
    let mut attributes = vec![Attribute(
        "service.name",
        AnyValue::Str(&config.service_name),
    )];
    if !config.service_version.is_empty() {
        attributes.push(Attribute(
            "service.version",
            AnyValue::Str(&config.service_version),
        ));
    }
    let resource = serde_json::to_string(&Resource { attributes }).expect("serialisable");
    let scope = serde_json::to_string(&Scope {
        name: "mcp-runtime",
        version: env!("CARGO_PKG_VERSION"),
    })
    .expect("serialisable");
    format!(
        r#"{{"resourceSpans":[{{"resource":{resource},"scopeSpans":[{{"scope":{scope},"spans":["#
    )
    .into_bytes()
}

/// One `ExportTraceServiceRequest` holding `spans`.
fn encode_request(prefix: &[u8], spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 512 * spans.len());
    out.extend_from_slice(prefix);
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &OtlpSpan(span)).expect("a span serialises");
    }
    out.extend_from_slice(b"]}]}]}");
    out
}

enum AnyValue<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

impl Serialize for AnyValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = s.serialize_struct("AnyValue", 1)?;
        match self {
            AnyValue::Str(text) => v.serialize_field("stringValue", text)?,
            AnyValue::Int(n) => v.serialize_field("intValue", &n.to_string())?,
            AnyValue::Bool(b) => v.serialize_field("boolValue", b)?,
        }
        v.end()
    }
}

struct Attribute<'a>(&'a str, AnyValue<'a>);

impl Serialize for Attribute<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut a = s.serialize_struct("KeyValue", 2)?;
        a.serialize_field("key", self.0)?;
        a.serialize_field("value", &self.1)?;
        a.end()
    }
}

struct OtlpSpan<'a>(&'a Span);

impl Serialize for OtlpSpan<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Link<'a> {
            trace_id: &'a str,
            span_id: &'a str,
        }
        #[derive(Serialize)]
        struct SpanStatus<'a> {
            code: u8,
            #[serde(skip_serializing_if = "str::is_empty")]
            message: &'a str,
        }
        let span = self.0;
        let mut o = s.serialize_struct("Span", 10)?;
        o.serialize_field("traceId", span.trace_id.to_hex().as_str())?;
        o.serialize_field("spanId", span.span_id.to_hex().as_str())?;
        if let Some(parent) = span.parent {
            o.serialize_field("parentSpanId", parent.to_hex().as_str())?;
        }
        o.serialize_field("name", span.name)?;
        o.serialize_field("kind", &span.kind.otlp())?;
        o.serialize_field("startTimeUnixNano", &span.start.to_string())?;
        o.serialize_field("endTimeUnixNano", &span.end.to_string())?;
        let attributes: Vec<Attribute<'_>> = span
            .attributes
            .iter()
            .map(|(k, v)| {
                Attribute(
                    k,
                    match v {
                        Value::Str(s) => AnyValue::Str(s),
                        Value::Int(n) => AnyValue::Int(*n),
                        Value::Bool(b) => AnyValue::Bool(*b),
                    },
                )
            })
            .collect();
        o.serialize_field("attributes", &attributes)?;
        if !span.links.is_empty() {
            let ids: Vec<_> = span
                .links
                .iter()
                .map(|l| (l.trace_id.to_hex(), l.span_id.to_hex()))
                .collect();
            let links: Vec<Link<'_>> = ids
                .iter()
                .map(|(t, s)| Link {
                    trace_id: t.as_str(),
                    span_id: s.as_str(),
                })
                .collect();
            o.serialize_field("links", &links)?;
        }
        let status = match &span.status {
            Status::Unset => None,
            Status::Ok => Some(SpanStatus {
                code: 1,
                message: "",
            }),
            Status::Error(message) => Some(SpanStatus { code: 2, message }),
        };
        if let Some(status) = status {
            o.serialize_field("status", &status)?;
        }
        o.end()
    }
}

/// The exporter's counts, read at each scrape.
struct TraceCollector(Tracer);

impl std::fmt::Debug for TraceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceCollector")
    }
}

impl Collector for TraceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let exported = ConstCounter::new(s.exported);
        let metric = encoder.encode_descriptor(
            "trace_spans_exported",
            "Spans the OTLP collector accepted",
            None,
            exported.metric_type(),
        )?;
        exported.encode(metric)?;
        let mut family = encoder.encode_descriptor(
            "trace_spans_dropped",
            "Spans dropped: the export queue was full, or their export request failed",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, value) in [
            ("queue_full", s.dropped_queue_full),
            ("export_failed", s.dropped_export_failed),
        ] {
            let labels = [("reason", reason)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::{SpanContext, SpanId, SpanKind, TraceId};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn config(endpoint: &str) -> ExportConfig {
        let mut c = ExportConfig::new(endpoint.parse().unwrap(), "svc-test");
        c.service_version = "1.2.3".into();
        c.flush_interval = Duration::from_millis(50);
        c
    }

    fn span(name: &'static str) -> Span {
        let parent = SpanContext::from_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        let mut s = Span::child_of(name, SpanKind::Server, &parent, 1_700_000_000_000_000_001)
            .with("mcp.tool.name", "echo \"quoted\"")
            .with("http.response.status_code", 200u16)
            .with("mcp.enforced", true)
            .end_at(1_700_000_000_000_000_999);
        s.links.push(SpanContext {
            trace_id: TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            span_id: SpanId::from_hex("b7ad6b7169203331").unwrap(),
            sampled: true,
        });
        s.status = Status::Error("upstream_timeout".into());
        s
    }

    #[test]
    fn the_request_is_otlp_json() {
        let s = span("mcp.gateway.request");
        let body = encode_request(&body_prefix(&config("http://c:4318")), &[s.clone(), s]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let rs = &v["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"],
            serde_json::json!([
                {"key": "service.name", "value": {"stringValue": "svc-test"}},
                {"key": "service.version", "value": {"stringValue": "1.2.3"}},
            ])
        );
        let ss = &rs["scopeSpans"][0];
        assert_eq!(ss["scope"]["name"], "mcp-runtime");
        let spans = ss["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);
        let s = &spans[0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(s["spanId"].as_str().unwrap().len(), 16);
        assert_eq!(s["name"], "mcp.gateway.request");
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "1700000000000000001");
        assert_eq!(s["endTimeUnixNano"], "1700000000000000999");
        assert_eq!(
            s["attributes"],
            serde_json::json!([
                {"key": "mcp.tool.name", "value": {"stringValue": "echo \"quoted\""}},
                {"key": "http.response.status_code", "value": {"intValue": "200"}},
                {"key": "mcp.enforced", "value": {"boolValue": true}},
            ])
        );
        assert_eq!(
            s["links"],
            serde_json::json!([{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}])
        );
        assert_eq!(
            s["status"],
            serde_json::json!({"code": 2, "message": "upstream_timeout"})
        );
        // A root span has no parent field, an unset status no status.
        let root = Span::new("r", SpanKind::Internal, TraceId::random(), None, 5);
        let body = encode_request(&body_prefix(&config("http://c:4318")), &[root]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert!(
            s.get("parentSpanId").is_none() && s.get("status").is_none(),
            "{s}"
        );
        assert!(s.get("links").is_none(), "{s}");
    }

    #[test]
    fn the_traces_path_is_appended_to_the_base_url() {
        for (base, want) in [
            ("http://c:4318", "http://c:4318/v1/traces"),
            ("http://c:4318/", "http://c:4318/v1/traces"),
            ("https://c/otlp/", "https://c/otlp/v1/traces"),
        ] {
            assert_eq!(
                traces_url(&base.parse().unwrap()).unwrap().to_string(),
                want
            );
        }
        for bad in [
            "c:4318",
            "ftp://c/",
            "http://c:4318/?x=1",
            "http://u:p@c:4318",
        ] {
            let Ok(uri) = bad.parse::<Uri>() else {
                continue;
            };
            assert!(traces_url(&uri).is_err(), "{bad}");
        }
    }

    /// A one-shot OTLP receiver: answers every request `status` and hands over the bodies.
    async fn receiver(status: u16) -> (u16, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = s.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            continue;
                        }
                        let body = buf[end + 4..end + 4 + len].to_vec();
                        buf.drain(..end + 4 + len);
                        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                        let _ = tx.send((path, body));
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
                        );
                        s.write_all(answer.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn spans_are_batched_to_the_collector_and_flushed_on_shutdown() {
        let (port, mut bodies) = receiver(200).await;
        let (tracer, task) = Tracer::start(config(&format!("http://127.0.0.1:{port}"))).unwrap();
        tracer.record(span("a"));
        tracer.record(span("b"));
        let (path, body) = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(path, "/v1/traces");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let names: Vec<&str> = v["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        // Counted once the collector has answered.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tracer.stats().exported < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                tracer.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(tracer.stats().exported, 2);

        // Shutdown sends what is queued without waiting for the interval.
        tracer.record(span("c"));
        task.shutdown(Duration::from_secs(10)).await;
        let (_, body) = bodies.try_recv().expect("flushed at shutdown");
        assert!(String::from_utf8_lossy(&body).contains(r#""name":"c""#));
        assert_eq!(tracer.stats().exported, 3);
    }

    #[tokio::test]
    async fn a_collector_that_is_down_or_refuses_costs_only_the_spans() {
        // Nothing listens on this port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = config(&format!("http://127.0.0.1:{port}"));
        c.queue_capacity = 4;
        c.flush_interval = Duration::from_secs(3600);
        let (tracer, task) = Tracer::start(c).unwrap();
        // The task takes up to max_batch spans off the queue at once: record more than fit.
        for _ in 0..1000 {
            tracer.record(span("x"));
        }
        task.shutdown(Duration::from_secs(10)).await;
        let s = tracer.stats();
        assert_eq!(s.exported, 0);
        assert!(s.dropped_queue_full > 0, "{s:?}");
        assert_eq!(
            s.dropped_queue_full + s.dropped_export_failed,
            1000,
            "{s:?}"
        );

        let (port, _bodies) = receiver(503).await;
        let (tracer, task) = Tracer::start(config(&format!("http://127.0.0.1:{port}"))).unwrap();
        tracer.record(span("y"));
        task.shutdown(Duration::from_secs(10)).await;
        assert_eq!(
            tracer.stats(),
            TraceStats {
                exported: 0,
                dropped_queue_full: 0,
                dropped_export_failed: 1
            }
        );
        let mut registry = Registry::with_prefix("x");
        tracer.register_metrics(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"x_trace_spans_dropped_total{reason="export_failed"} 1"#),
            "{text}"
        );
        assert!(text.contains("x_trace_spans_exported_total 0"), "{text}");
    }

    #[test]
    fn a_disabled_tracer_records_nothing() {
        let t = Tracer::disabled();
        assert!(!t.enabled());
        t.record(span("z"));
        assert_eq!(t.stats(), TraceStats::default());
    }
}
