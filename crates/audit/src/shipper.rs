//! The shipper task: sends the spool to the ingest in order, batch by batch, and moves the
//! persisted cursor past each acknowledged batch.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::spool::{Cursor, Next, Spool};
use crate::{AuditConfig, AuditError, Counters};

/// Upper bound of a request body, beyond the first event of a batch.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// 4xx answers that say nothing about the batch: a wrong key or URL, a busy ingest. Retried (a
/// misconfigured key must not make the shipper skip the whole spool); other 4xx skip the batch.
const RETRIED_CLIENT_ERRORS: [StatusCode; 5] = [
    StatusCode::UNAUTHORIZED,
    StatusCode::FORBIDDEN,
    StatusCode::NOT_FOUND,
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::TOO_MANY_REQUESTS,
];
/// How much of an error response is read and logged.
const SNIPPET_BYTES: usize = 512;

pub(crate) struct Endpoint {
    uri: Uri,
    api_key: Option<HeaderValue>,
    connector: mcp_runtime_tls::Connector,
}

impl Endpoint {
    /// `ca_file`: a private CA trusted for an https ingest, besides the system's roots.
    pub(crate) fn new(
        uri: &Uri,
        api_key: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Endpoint, AuditError> {
        let invalid = |reason| AuditError::InvalidIngestUrl {
            url: uri.to_string(),
            reason,
        };
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(invalid("the scheme must be http or https")),
        }
        if uri.authority().is_none() {
            return Err(invalid("no host"));
        }
        let api_key = match api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(key).map_err(|_| {
                    AuditError::InvalidConfig(
                        "the ingest API key is not a valid header value".into(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let trust = mcp_runtime_tls::Trust::system_and(ca_file.map(Path::to_path_buf));
        let connector = mcp_runtime_tls::connector(&trust)
            .map_err(|e| AuditError::InvalidConfig(format!("TLS for the ingest: {e}")))?;
        Ok(Endpoint {
            uri: uri.clone(),
            api_key,
            connector,
        })
    }
}

enum Outcome {
    Acknowledged,
    /// Worth retrying the same batch later.
    Retry(String),
    /// 413: the batch is too big for the ingest.
    TooLarge,
    /// Another 4xx: this batch will never be accepted.
    Rejected(StatusCode, String),
}

pub(crate) struct Shipper {
    spool: Arc<Spool>,
    endpoint: Endpoint,
    client: Client<mcp_runtime_tls::Connector, Full<Bytes>>,
    counters: Arc<Counters>,
    batch_max_events: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

impl Shipper {
    pub(crate) fn new(
        spool: Arc<Spool>,
        endpoint: Endpoint,
        config: &AuditConfig,
        counters: Arc<Counters>,
    ) -> Shipper {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(endpoint.connector.clone());
        Shipper {
            spool,
            endpoint,
            client,
            counters,
            batch_max_events: config.batch_max_events,
            initial_backoff: config.retry_initial_backoff,
            max_backoff: config.retry_max_backoff.max(config.retry_initial_backoff),
            timeout: config.request_timeout,
        }
    }

    /// Ships from `pos` until the writer is done and everything was acknowledged (or forever,
    /// until aborted by shutdown).
    pub(crate) async fn run(self, mut pos: Cursor) {
        let mut max_events = self.batch_max_events;
        let mut backoff = self.initial_backoff;
        loop {
            let spool = self.spool.clone();
            let next =
                tokio::task::spawn_blocking(move || spool.read(pos, max_events, MAX_BODY_BYTES))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match next {
                Err(e) => {
                    tracing::warn!(error = %e, "reading the audit spool; retrying");
                    self.pause(&mut backoff).await;
                }
                Ok(Next::CaughtUp { writer_done: true }) => return,
                Ok(Next::CaughtUp { writer_done: false }) => self.spool.notify.notified().await,
                Ok(Next::SegmentDone(seq)) => {
                    let spool = self.spool.clone();
                    match tokio::task::spawn_blocking(move || spool.finish_segment(seq)).await {
                        Ok(Ok((cursor, freed))) => {
                            pos = cursor;
                            Counters::sub_saturating(&self.counters.spool_bytes, freed);
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(segment = seq, error = %e, "removing a shipped audit spool segment");
                            self.pause(&mut backoff).await;
                        }
                        Err(e) => tracing::warn!(error = %e, "audit spool task failed"),
                    }
                }
                Ok(Next::Batch {
                    body,
                    events,
                    invalid,
                    next,
                }) => {
                    if events == 0 {
                        self.skip(invalid, 0, next, &mut pos).await;
                        continue;
                    }
                    match self.post(body).await {
                        Outcome::Acknowledged => {
                            self.counters.shipped.fetch_add(events, Ordering::Relaxed);
                            Counters::sub_saturating(
                                &self.counters.spooled_pending,
                                events + invalid,
                            );
                            self.commit(next, &mut pos).await;
                            backoff = self.initial_backoff;
                            max_events = self.batch_max_events;
                        }
                        Outcome::Retry(why) => {
                            self.counters.ship_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(events, error = %why, retry_in_ms = backoff.as_millis() as u64,
                                "audit ingest unavailable; retrying");
                            self.pause(&mut backoff).await;
                        }
                        Outcome::TooLarge if events > 1 => {
                            self.counters.ship_failures.fetch_add(1, Ordering::Relaxed);
                            max_events = (events as usize / 2).max(1);
                            tracing::warn!(
                                events,
                                retry_with = max_events,
                                "audit ingest says the batch is too large; splitting it"
                            );
                        }
                        Outcome::TooLarge => {
                            tracing::warn!(
                                status = 413,
                                "audit ingest rejects a single event as too large; skipping it"
                            );
                            self.skip(invalid, events, next, &mut pos).await;
                        }
                        Outcome::Rejected(status, snippet) => {
                            tracing::warn!(status = status.as_u16(), body = %snippet, events,
                                "audit ingest rejected a batch; skipping it");
                            self.skip(invalid, events, next, &mut pos).await;
                        }
                    }
                }
            }
        }
    }

    /// Gives up on `events` (rejected) and `invalid` (unreadable) events and moves past them.
    async fn skip(&self, invalid: u64, events: u64, next: Cursor, pos: &mut Cursor) {
        self.counters
            .skipped
            .fetch_add(events + invalid, Ordering::Relaxed);
        Counters::sub_saturating(&self.counters.spooled_pending, events + invalid);
        self.commit(next, pos).await;
    }

    /// Moves the position and persists it. A cursor that fails to persist only means the batch
    /// is sent again after a restart (at-least-once), so the error is logged, not retried.
    async fn commit(&self, next: Cursor, pos: &mut Cursor) {
        *pos = next;
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.write_cursor(next)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "persisting the audit spool cursor"),
            Err(e) => tracing::warn!(error = %e, "audit spool task failed"),
        }
    }

    /// Sleeps `backoff` with jitter (between half and all of it), then doubles it.
    async fn pause(&self, backoff: &mut Duration) {
        let half = *backoff / 2;
        let spread = half.as_nanos() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            (uuid::Uuid::new_v4().as_u128() as u64) % spread
        };
        tokio::time::sleep(half + Duration::from_nanos(jitter)).await;
        *backoff = (*backoff * 2).min(self.max_backoff);
    }

    async fn post(&self, body: Bytes) -> Outcome {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("mcp-runtime-audit/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(key) = &self.endpoint.api_key {
            request = request.header("x-api-key", key.clone());
        }
        let request = match request.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                // The source chain says what really happened (connection refused, reset...).
                let mut msg = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    source = s.source();
                }
                msg
            })?;
            let status = response.status();
            // Read the body so the connection can be reused, and for the error snippet.
            let body = Limited::new(response.into_body(), 64 * 1024)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => return Outcome::Retry(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => return Outcome::Retry(e),
            Ok(Ok(answer)) => answer,
        };
        let snippet = || {
            let end = body.len().min(SNIPPET_BYTES);
            String::from_utf8_lossy(&body[..end]).into_owned()
        };
        if status.is_success() {
            Outcome::Acknowledged
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            Outcome::TooLarge
        } else if status.is_client_error() && !RETRIED_CLIENT_ERRORS.contains(&status) {
            Outcome::Rejected(status, snippet())
        } else {
            // 5xx, 429, 408, configuration errors (401, 403, 404) and anything unexpected (1xx,
            // 3xx): not the batch's fault, so never drop it; retry.
            Outcome::Retry(format!("HTTP {status}: {}", snippet()))
        }
    }
}
