//! The HTTP API: ingest, events, stats, usage, status, health and the OpenAPI document. Every
//! error is one JSON envelope: `{"error":{"code":"...","message":"..."}}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::value::RawValue;

use mcp_runtime_svc::otel::{Span, SpanContext, SpanKind, Status, Tracer, unix_nanos};

use crate::ingest::{self, Accepted, BodyShape, Rejected};
use crate::keys::{Access, ApiKeys};
use crate::metrics::{self, IngestOutcome, Metrics};
use crate::query::{self, EventsQuery, ParamError};
use crate::redact::Redactor;
use crate::store::{EventFilter, Record, Store};

/// The OpenAPI document of this API (served at `/v1/openapi.yaml`).
pub const OPENAPI: &str = include_str!("../openapi.yaml");

/// Every route and its method: anything else is 404, or 405 on a known path.
pub const ROUTES: &[(&str, Method)] = &[
    ("/healthz", Method::GET),
    ("/ready", Method::GET),
    ("/v1/openapi.yaml", Method::GET),
    ("/v1/ingest/events", Method::POST),
    ("/v1/events", Method::GET),
    ("/v1/stats", Method::GET),
    ("/v1/usage", Method::GET),
    ("/v1/status", Method::GET),
];

/// An oversized body up to this size is read to its end (and discarded) before the 413, so
/// that the client, still sending, receives the answer instead of a reset connection.
const MAX_DRAIN_BYTES: u64 = 64 * 1024 * 1024;

/// The body, or `None` when it exceeds `limit` (then read on, up to [`MAX_DRAIN_BYTES`]).
async fn read_body(mut body: Incoming, limit: usize) -> Result<Option<Bytes>, hyper::Error> {
    let mut buf = Vec::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > MAX_DRAIN_BYTES {
            break;
        }
        if total <= limit as u64 {
            buf.extend_from_slice(&data);
        }
    }
    Ok((total <= limit as u64).then(|| Bytes::from(buf)))
}

/// Where accepted events go.
pub enum IngestTarget {
    /// Straight into the store (one process, no Kafka).
    Store(Arc<dyn Store>),
    /// Onto Kafka, for the processors.
    #[cfg(feature = "kafka")]
    Kafka(Arc<crate::kafka::KafkaSink>),
}

/// What the handlers share.
pub struct Api {
    /// The role this process runs (it decides which routes are served).
    pub role: &'static str,
    /// The store the read routes query; `None` in a role that does not serve them.
    pub store: Option<Arc<dyn Store>>,
    /// The store this process reads or writes, whatever its role (`None` for an ingest that
    /// queues on Kafka): readiness pings it.
    pub backing: Option<Arc<dyn Store>>,
    /// Where the ingest puts events; `None` in a role that does not ingest.
    pub ingest: Option<IngestTarget>,
    /// Keys accepted on `POST /v1/ingest/events`.
    pub ingest_keys: ApiKeys,
    /// Keys accepted on the read API.
    pub read_keys: ApiKeys,
    /// JWT producers on the ingest, when configured.
    pub ingest_jwt: Option<crate::jwt::JwtVerifier>,
    pub redactor: Redactor,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a client may take to send its body.
    pub body_timeout: Duration,
    /// Events older than this are removed (`None`: kept forever).
    pub retention: Option<SignedDuration>,
    pub started: Timestamp,
    pub metrics: Arc<Metrics>,
    /// Where the ingest's spans go (disabled without `--otlp-endpoint`).
    pub tracer: Tracer,
}

type Answer = Response<Full<Bytes>>;

fn json(status: StatusCode, body: Vec<u8>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn ok_json(status: StatusCode, value: &impl Serialize) -> Result<Answer, ApiError> {
    Ok(json(status, serde_json::to_vec(value).map_err(internal)?))
}

/// An error answer in the envelope.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    fn into_response(self) -> Answer {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        json(self.status, body.to_string().into_bytes())
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "request failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the server's log",
    )
}

/// Runs a blocking call off the async threads, returning its own result.
async fn blocking_raw<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)
}

fn list(set: &std::collections::BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".to_owned()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

impl Api {
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Result<Answer, Infallible> {
        let start = std::time::Instant::now();
        let query_route = metrics::query_route(request.uri().path());
        let ingest =
            request.method() == Method::POST && request.uri().path() == "/v1/ingest/events";
        let result = match (request.method(), request.uri().path()) {
            (&Method::GET, "/healthz") => Ok(json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())),
            (&Method::GET, "/v1/openapi.yaml") => {
                let mut r = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static("application/yaml"),
                );
                Ok(r)
            }
            (&Method::POST, "/v1/ingest/events") => self.ingest(request).await,
            (&Method::GET, "/v1/events") => self.events(request).await,
            (&Method::GET, "/v1/stats") => self.stats(request).await,
            (&Method::GET, "/v1/usage") => self.usage(request).await,
            (&Method::GET, "/v1/status") => self.status(request).await,
            (&Method::GET, "/ready") => self.ready().await,
            (method, path) => match ROUTES.iter().find(|(p, _)| *p == path) {
                Some((_, allowed)) => Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed on {path}; use {allowed}"),
                )),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no such path: {path} (see /v1/openapi.yaml)"),
                )),
            },
        };
        let answer = result.unwrap_or_else(ApiError::into_response);
        if let Some(route) = query_route {
            self.metrics.query(route, answer.status(), start.elapsed());
        }
        if ingest && !answer.status().is_success() {
            // A stored batch was counted with its receipt.
            self.metrics
                .ingest_request(IngestOutcome::of_refusal(answer.status()));
        }
        Ok(answer)
    }

    /// Runs a blocking store call off the async threads; a failure is counted under
    /// `operation`, logged, and answered 500.
    async fn store_call<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(internal)?
            .map_err(|e| {
                self.metrics.store_error(operation);
                internal(e)
            })
    }

    /// The store of the read routes, or 404 in a role without them.
    fn reader(&self) -> Result<Arc<dyn Store>, ApiError> {
        self.store.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_served_here",
                format!(
                    "this mcp-sentinel runs --role {}: queries are answered by --role api (or all)",
                    self.role
                ),
            )
        })
    }

    /// Ready when what this role needs answers: the store, and Kafka when the ingest uses it.
    async fn ready(&self) -> Result<Answer, ApiError> {
        self.readiness().await?;
        Ok(json(StatusCode::OK, br#"{"status":"ready"}"#.to_vec()))
    }

    /// Whether what this role needs answers (the `/ready` of both listeners).
    pub async fn readiness(&self) -> Result<(), ApiError> {
        let unavailable = |e: crate::store::StoreError| {
            self.metrics.store_error("ready");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.0)
        };
        if let Some(store) = self.backing.clone() {
            blocking_raw(move || store.ping())
                .await?
                .map_err(unavailable)?;
        }
        match &self.ingest {
            Some(IngestTarget::Store(store)) => {
                let store = store.clone();
                blocking_raw(move || store.ping())
                    .await?
                    .map_err(unavailable)?;
            }
            #[cfg(feature = "kafka")]
            Some(IngestTarget::Kafka(sink)) => {
                let sink = sink.clone();
                blocking_raw(move || sink.ping())
                    .await?
                    .map_err(unavailable)?;
            }
            None => {}
        }
        Ok(())
    }

    /// A producer: an API key, or (when configured) a JWT of the trusted issuer.
    fn authenticate_producer(&self, request: &Request<Incoming>) -> Result<Access, ApiError> {
        let bearer = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match (&self.ingest_jwt, bearer) {
            (Some(verifier), Some(token)) if request.headers().get("x-api-key").is_none() => {
                verifier.verify(token.trim()).map_err(|why| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        format!("invalid token: {why}"),
                    )
                })
            }
            _ => Self::authenticate(&self.ingest_keys, request),
        }
    }

    fn authenticate(keys: &ApiKeys, request: &Request<Incoming>) -> Result<Access, ApiError> {
        match request.headers().get("x-api-key") {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing x-api-key header",
            )),
            Some(k) => keys.access(k.as_bytes()).ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key")
            }),
        }
    }

    /// The filter a caller may run: confined to its scope, with filter values on redacted
    /// identity fields redacted the same way the stored values were (so hash mode still
    /// matches).
    fn confine(&self, access: Access, mut filter: EventFilter) -> Result<EventFilter, ApiError> {
        for (field, value) in [
            ("human_id", &mut filter.human),
            ("agent_id", &mut filter.agent),
            ("session_id", &mut filter.session),
        ] {
            if self.redactor.is_secret_field(field)
                && let Some(v) = value
            {
                if !self.redactor.keeps_equality() {
                    // Every stored value reads `[REDACTED:field]`: a filter would match them all.
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_parameter",
                        format!(
                            "`{field}` is redacted in replace mode, so no stored value can be matched; run Sentinel with --redact-mode hash to filter on it"
                        ),
                    ));
                }
                *v = self.redactor.redact_whole(v);
            }
        }
        if let Access::Scoped(scope) = access {
            if let Some(ns) = &filter.namespace
                && !scope.namespaces.contains(ns)
            {
                return Err(ApiError::forbidden(format!(
                    "namespace `{ns}` is outside this key's scope (namespaces: {})",
                    list(&scope.namespaces)
                )));
            }
            if let Some(team) = &filter.team
                && !scope.teams.contains(team)
            {
                return Err(ApiError::forbidden(format!(
                    "team `{team}` is outside this key's scope (teams: {})",
                    list(&scope.teams)
                )));
            }
            filter.scope = Some(scope);
        }
        Ok(filter)
    }

    async fn ingest(&self, request: Request<Incoming>) -> Result<Answer, ApiError> {
        let arrived = unix_nanos();
        let Some(target) = &self.ingest else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_served_here",
                format!(
                    "this mcp-sentinel runs --role {}: events are ingested by --role ingest (or all)",
                    self.role
                ),
            ));
        };
        let access = self.authenticate_producer(&request)?;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body exceeds {} bytes", self.max_body_bytes),
            )
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_DRAIN_BYTES) {
            // Not worth reading: answered at once (the client may see the connection close).
            return Err(too_large());
        }
        let body = tokio::time::timeout(
            self.body_timeout,
            read_body(request.into_body(), self.max_body_bytes),
        )
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive within {} s",
                    self.body_timeout.as_secs()
                ),
            )
        })?
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))?
        .ok_or_else(too_large)?;

        let parsed = ingest::parse(&body, &self.redactor, Timestamp::now())
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
        self.metrics
            .ingest_batch(parsed.records.len() + parsed.rejected.len());
        let mut rejected = parsed.rejected;
        let mut good: Vec<Record> = Vec::with_capacity(parsed.records.len());
        // The gateway span each good record continues (see crate::trace).
        let mut parents: Vec<Option<SpanContext>> = Vec::with_capacity(parsed.records.len());
        for Accepted {
            index,
            record,
            parent,
        } in parsed.records
        {
            match &access {
                Access::Scoped(scope)
                    if !record
                        .namespace
                        .as_ref()
                        .is_some_and(|n| scope.namespaces.contains(n))
                        && !record
                            .team
                            .as_ref()
                            .is_some_and(|t| scope.teams.contains(t)) =>
                {
                    rejected.push(Rejected {
                        index,
                        message: format!(
                            "namespace `{}` / team `{}` is outside this key's scope (namespaces: {}; teams: {})",
                            record.namespace.as_deref().unwrap_or("-"),
                            record.team.as_deref().unwrap_or("-"),
                            list(&scope.namespaces),
                            list(&scope.teams)
                        ),
                    });
                }
                _ => {
                    good.push(record);
                    parents.push(parent);
                }
            }
        }
        rejected.sort_by_key(|r| r.index);
        self.metrics.events_rejected(rejected.len());
        // A body of only invalid events is refused (the gateway's shipper then skips it); a
        // batch with some valid ones is stored in part, so good events are not lost with bad.
        if good.is_empty() && !rejected.is_empty() {
            let first = &rejected[0];
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_event",
                format!(
                    "no valid event in the body; event {}: {}",
                    first.index, first.message
                ),
            ));
        }
        let batch_events = good.len();
        let outcome = match target {
            IngestTarget::Store(store) => {
                let mut spans = self.ingest_spans(&good, &parents, SpanKind::Consumer, arrived);
                let kind = store.kind();
                let store = store.clone();
                let started = std::time::Instant::now();
                let insert_start = unix_nanos();
                let result = self.store_call("insert", move || store.insert(&good)).await;
                let insert = (insert_start, unix_nanos());
                for span in spans.iter_mut().flatten() {
                    span.set("db.system.name", kind);
                    self.tracer.record(crate::trace::store_insert(
                        &span.context(),
                        kind,
                        batch_events,
                        insert,
                        result.is_err(),
                    ));
                }
                self.finish_ingest_spans(spans, batch_events, result.is_err());
                let outcome = result?;
                self.metrics.stored(&outcome, started.elapsed());
                outcome
            }
            #[cfg(feature = "kafka")]
            IngestTarget::Kafka(sink) => {
                let mut spans = self.ingest_spans(&good, &parents, SpanKind::Producer, arrived);
                // Each message names the ingest span as its parent; where this process records
                // none, the gateway's span is passed on unchanged.
                let contexts = crate::trace::message_contexts(&spans, &parents);
                // Acknowledged by Kafka, not yet stored: duplicates are found (and ignored) by
                // the processor's insert, so none are reported here.
                let sent = sink.send(&good, &contexts).await;
                for span in spans.iter_mut().flatten() {
                    span.set("messaging.system", "kafka");
                    span.set("messaging.operation.type", "send");
                    span.set("messaging.destination.name", sink.topic());
                }
                self.finish_ingest_spans(spans, batch_events, sent.is_err());
                sent.map_err(|e| {
                    tracing::warn!(error = %e, "queueing events on Kafka");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        format!("{}; retry later", e.0),
                    )
                })?;
                let outcome = crate::store::InsertOutcome {
                    accepted: good.len() as u64,
                    duplicates: 0,
                };
                self.metrics.queued(&outcome);
                outcome
            }
        };

        #[derive(Serialize)]
        struct Receipt {
            accepted: u64,
            duplicates: u64,
            redacted: usize,
            rejected: Vec<Rejected>,
        }
        let receipt = Receipt {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            redacted: parsed.redacted,
            rejected,
        };
        let status = match parsed.shape {
            BodyShape::Batch => StatusCode::OK,
            BodyShape::Single => StatusCode::ACCEPTED,
        };
        ok_json(status, &receipt)
    }

    /// A `sentinel.ingest` span for each record that continues a gateway span (none when spans
    /// are not exported), started when the request arrived.
    fn ingest_spans(
        &self,
        records: &[Record],
        parents: &[Option<SpanContext>],
        kind: SpanKind,
        arrived: u64,
    ) -> Vec<Option<Span>> {
        if !self.tracer.enabled() {
            return Vec::new();
        }
        records
            .iter()
            .zip(parents)
            .map(|(record, parent)| {
                parent.as_ref().map(|p| {
                    Span::child_of(crate::trace::INGEST, kind, p, arrived)
                        .with("sentinel.event_id", record.event_id.to_string())
                })
            })
            .collect()
    }

    /// Ends and records the ingest spans once the events are queued or stored (or not).
    fn finish_ingest_spans(&self, spans: Vec<Option<Span>>, batch_events: usize, failed: bool) {
        let end = unix_nanos();
        for span in spans.into_iter().flatten() {
            let mut span = span
                .with(
                    "sentinel.batch.events",
                    i64::try_from(batch_events).unwrap_or(i64::MAX),
                )
                .end_at(end);
            if failed {
                span.status = Status::Error("the events were not taken; the client retries".into());
            }
            self.tracer.record(span);
        }
    }

    async fn events(&self, request: Request<Incoming>) -> Result<Answer, ApiError> {
        let access = Self::authenticate(&self.read_keys, &request)?;
        let query = EventsQuery::parse(request.uri().query().unwrap_or(""))?;
        let filter = self.confine(access, query.filter)?;
        let store = self.reader()?;
        let page = self
            .store_call("events", move || {
                store.events(&filter, query.limit, query.cursor.as_ref())
            })
            .await?;

        #[derive(Serialize)]
        struct Body {
            events: Vec<Box<RawValue>>,
            next_cursor: Option<String>,
        }
        ok_json(
            StatusCode::OK,
            &Body {
                events: page.events,
                next_cursor: page.next_cursor.map(|c| c.encode()),
            },
        )
    }

    async fn stats(&self, request: Request<Incoming>) -> Result<Answer, ApiError> {
        let access = Self::authenticate(&self.read_keys, &request)?;
        let filter = query::parse_filter(request.uri().query().unwrap_or(""))?;
        let filter = self.confine(access, filter)?;
        let store = self.reader()?;
        let stats = self
            .store_call("stats", move || store.stats(&filter))
            .await?;
        ok_json(StatusCode::OK, &stats)
    }

    async fn usage(&self, request: Request<Incoming>) -> Result<Answer, ApiError> {
        let access = Self::authenticate(&self.read_keys, &request)?;
        let mut usage_query =
            query::parse_usage(request.uri().query().unwrap_or(""), Timestamp::now())?;
        usage_query.filter = self.confine(access, usage_query.filter)?;
        let store = self.reader()?;
        let usage = self
            .store_call("usage", move || store.usage(&usage_query))
            .await?;
        ok_json(StatusCode::OK, &usage)
    }

    async fn status(&self, request: Request<Incoming>) -> Result<Answer, ApiError> {
        let access = Self::authenticate(&self.read_keys, &request)?;
        let filter = self.confine(access, EventFilter::default())?;
        let store = self.reader()?;
        let (stats, newest) = self
            .store_call("status", move || {
                let stats = store.stats(&filter)?;
                let newest = store.events(&filter, 1, None)?.events.pop();
                Ok((stats, newest))
            })
            .await?;

        #[derive(Serialize)]
        struct Status {
            version: &'static str,
            role: &'static str,
            store: &'static str,
            started: Timestamp,
            retention_days: Option<i64>,
            events: u64,
            decisions: u64,
            newest_event: Option<Box<RawValue>>,
        }
        ok_json(
            StatusCode::OK,
            &Status {
                version: env!("CARGO_PKG_VERSION"),
                role: self.role,
                store: self.reader()?.kind(),
                started: self.started,
                retention_days: self.retention.map(|r| r.as_hours() / 24),
                events: stats.events,
                decisions: stats.decisions,
                newest_event: newest,
            },
        )
    }
}
