//! The HTTP API: ingest, events, stats, health. Every error is one JSON envelope:
//! `{"error":{"code":"...","message":"..."}}`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mcp_runtime_audit::{AuditEvent, Decision};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::keys::ApiKeys;
use crate::metrics::{self, IngestOutcome, Metrics};
use crate::store::{EventFilter, NewEvent, PageCursor, Store};

/// Events per page when `limit` is not given, and the most a page may hold.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

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

/// What the handlers share.
pub struct Api {
    pub store: Arc<dyn Store>,
    /// Keys accepted on `POST /v1/ingest/events`.
    pub ingest_keys: ApiKeys,
    /// Keys accepted on the read API (`/v1/events`, `/v1/stats`).
    pub read_keys: ApiKeys,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub metrics: Metrics,
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

    fn param(name: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("parameter `{name}`: {why}"),
        )
    }

    fn into_response(self) -> Answer {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        json(self.status, body.to_string().into_bytes())
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

impl Api {
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Result<Answer, Infallible> {
        let start = std::time::Instant::now();
        let query_route = metrics::query_route(request.uri().path());
        let ingest =
            request.method() == Method::POST && request.uri().path() == "/v1/ingest/events";
        let result = match (request.method(), request.uri().path()) {
            (&Method::GET, "/healthz") => Ok(json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())),
            (&Method::POST, "/v1/ingest/events") => self.ingest(request).await,
            (&Method::GET, "/v1/events") => self.events(request).await,
            (&Method::GET, "/v1/stats") => self.stats(request).await,
            (_, "/healthz" | "/v1/ingest/events" | "/v1/events" | "/v1/stats") => {
                Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{} is not allowed here", request.method()),
                ))
            }
            (_, path) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such path: {path}"),
            )),
        };
        let answer = result.unwrap_or_else(ApiError::into_response);
        if let Some(route) = query_route {
            self.metrics.query(route, answer.status(), start.elapsed());
        }
        if ingest && answer.status() != StatusCode::OK {
            // A stored batch was counted with its receipt.
            self.metrics
                .ingest_request(IngestOutcome::of_refusal(answer.status()));
        }
        Ok(answer)
    }

    /// A store call that failed: counted, logged, answered 500.
    fn store_failed(&self, operation: &'static str, e: crate::store::StoreError) -> ApiError {
        self.metrics.store_error(operation);
        internal(e)
    }

    fn authenticate(keys: &ApiKeys, request: &Request<Incoming>) -> Result<(), ApiError> {
        match request.headers().get("x-api-key") {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing x-api-key header",
            )),
            Some(k) if keys.accepts(k.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "invalid API key",
            )),
        }
    }

    async fn ingest(&self, request: Request<Incoming>) -> Result<Answer, ApiError> {
        Self::authenticate(&self.ingest_keys, &request)?;
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
        let body = read_body(request.into_body(), self.max_body_bytes)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))?
            .ok_or_else(too_large)?;

        #[derive(Deserialize)]
        struct Batch {
            events: Vec<Box<RawValue>>,
        }
        let batch: Batch = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("expected {{\"events\":[...]}}: {e}"),
            )
        })?;
        self.metrics.ingest_batch(batch.events.len());

        #[derive(Serialize)]
        struct Rejected {
            index: usize,
            message: String,
        }
        let mut good = Vec::with_capacity(batch.events.len());
        let mut rejected = Vec::new();
        for (index, json) in batch.events.into_iter().enumerate() {
            match serde_json::from_str::<AuditEvent<'_>>(json.get()) {
                Ok(event) => good.push(NewEvent {
                    event: event.into_owned(),
                    json,
                }),
                Err(e) => rejected.push(Rejected {
                    index,
                    message: e.to_string(),
                }),
            }
        }
        self.metrics.events_rejected(rejected.len());
        // A batch of only invalid events is refused (the gateway's shipper then skips it); a
        // batch with some valid ones is stored in part, so good events are not lost with bad.
        if good.is_empty() && !rejected.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_event",
                format!(
                    "no valid event in the batch; event 0: {}",
                    rejected[0].message
                ),
            ));
        }
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let outcome = tokio::task::spawn_blocking(move || store.insert(&good))
            .await
            .map_err(internal)?
            .map_err(|e| self.store_failed("insert", e))?;
        self.metrics.stored(&outcome, started.elapsed());

        #[derive(Serialize)]
        struct Receipt {
            accepted: u64,
            duplicates: u64,
            rejected: Vec<Rejected>,
        }
        let receipt = Receipt {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            rejected,
        };
        Ok(json(
            StatusCode::OK,
            serde_json::to_vec(&receipt).map_err(internal)?,
        ))
    }

    async fn events(&self, request: Request<Incoming>) -> Result<Answer, ApiError> {
        Self::authenticate(&self.read_keys, &request)?;
        let query = Query::parse(request.uri().query().unwrap_or(""), true)?;
        let store = self.store.clone();
        let page = tokio::task::spawn_blocking(move || {
            store.events(&query.filter, query.limit, query.cursor.as_ref())
        })
        .await
        .map_err(internal)?
        .map_err(|e| self.store_failed("events", e))?;

        #[derive(Serialize)]
        struct Body {
            events: Vec<Box<RawValue>>,
            next_cursor: Option<String>,
        }
        let body = Body {
            events: page.events,
            next_cursor: page.next_cursor.map(|c| c.encode()),
        };
        Ok(json(
            StatusCode::OK,
            serde_json::to_vec(&body).map_err(internal)?,
        ))
    }

    async fn stats(&self, request: Request<Incoming>) -> Result<Answer, ApiError> {
        Self::authenticate(&self.read_keys, &request)?;
        let query = Query::parse(request.uri().query().unwrap_or(""), false)?;
        let store = self.store.clone();
        let stats = tokio::task::spawn_blocking(move || store.stats(&query.filter))
            .await
            .map_err(internal)?
            .map_err(|e| self.store_failed("stats", e))?;
        Ok(json(
            StatusCode::OK,
            serde_json::to_vec(&stats).map_err(internal)?,
        ))
    }
}

/// The query string of `/v1/events` (filters, `limit`, `cursor`) or `/v1/stats` (filters).
#[derive(Debug, Default, PartialEq)]
pub struct Query {
    pub filter: EventFilter,
    pub limit: usize,
    pub cursor: Option<PageCursor>,
}

/// Decodes `%XX` and `+` of a query-string component.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

impl Query {
    pub fn parse(query: &str, paged: bool) -> Result<Query, ApiError> {
        let mut q = Query {
            limit: DEFAULT_LIMIT,
            ..Query::default()
        };
        let mut seen = std::collections::HashSet::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name)
                .ok_or_else(|| ApiError::param(name, "not valid percent-encoded UTF-8"))?;
            let value = percent_decode(value)
                .ok_or_else(|| ApiError::param(&name, "not valid percent-encoded UTF-8"))?;
            if !seen.insert(name.clone()) {
                return Err(ApiError::param(&name, "given more than once"));
            }
            if value.is_empty() {
                return Err(ApiError::param(&name, "empty value"));
            }
            let f = &mut q.filter;
            let time = |v: &str| {
                v.parse::<jiff::Timestamp>()
                    .map_err(|e| ApiError::param(&name, format!("not an RFC 3339 time: {e}")))
            };
            match name.as_str() {
                "server" => f.server = Some(value),
                "namespace" => f.namespace = Some(value),
                "team" => f.team = Some(value),
                "human" => f.human = Some(value),
                "agent" => f.agent = Some(value),
                "session" => f.session = Some(value),
                "tool" => f.tool = Some(value),
                "reason" => f.reason = Some(value),
                "decision" => {
                    f.decision = Some(match value.as_str() {
                        "allow" => Decision::Allow,
                        "deny" => Decision::Deny,
                        _ => return Err(ApiError::param(&name, "must be allow or deny")),
                    })
                }
                "since" => f.since = Some(time(&value)?),
                "until" => f.until = Some(time(&value)?),
                "limit" if paged => {
                    q.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::param(&name, format!("must be 1 to {MAX_LIMIT}"))
                        })?
                }
                "cursor" if paged => {
                    q.cursor = Some(
                        PageCursor::decode(&value)
                            .ok_or_else(|| ApiError::param(&name, "not a cursor from this API"))?,
                    )
                }
                _ => return Err(ApiError::param(&name, "unknown parameter")),
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(q: &str, paged: bool) -> String {
        match Query::parse(q, paged) {
            Ok(_) => "ok".into(),
            Err(e) => e.message,
        }
    }

    #[test]
    fn query_parameters_are_parsed_and_bad_ones_named() {
        let q = Query::parse(
            "server=hello&decision=deny&since=2026-11-24T00:00:00Z&limit=5&tool=a%20b+c",
            true,
        )
        .unwrap();
        assert_eq!(q.filter.server.as_deref(), Some("hello"));
        assert_eq!(q.filter.decision, Some(Decision::Deny));
        assert_eq!(q.filter.tool.as_deref(), Some("a b c"));
        assert_eq!(q.limit, 5);
        assert!(code("limit=0", true).contains("`limit`"));
        assert!(code("limit=5", false).contains("`limit`"));
        assert!(code("decision=maybe", true).contains("`decision`"));
        assert!(code("since=yesterday", true).contains("`since`"));
        assert!(code("cursor=xyz", true).contains("`cursor`"));
        assert!(code("colour=red", true).contains("`colour`"));
        assert!(code("server=a&server=b", true).contains("more than once"));
        assert_eq!(code("", true), "ok");
    }
}
