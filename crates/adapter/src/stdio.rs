//! The stdio shim: newline-delimited JSON-RPC on stdin and stdout (the MCP stdio transport), each
//! message sent on to the gateway over Streamable HTTP with the credential added.
//!
//! - Each line from the client is read with the wire crate's strict reader. A line that is not
//!   JSON gets a `-32700` error (id `null`), one that is not JSON-RPC a `-32600`, a line over
//!   the limit a `-32600` with `data.limit`; the shim keeps reading either way.
//! - Requests run concurrently (answers come back in any order, each on one line), except
//!   `initialize`, which is answered before the next line is read: the session it opens is
//!   needed by what follows.
//! - Protocol eras toward the gateway, per request:
//!   - a request whose `params._meta` names a stateless version (2026-07-28 and later) is sent
//!     with `MCP-Protocol-Version` from its `_meta`, `Mcp-Method` and, for `tools/call`,
//!     `prompts/get` and `resources/read`, `Mcp-Name` (the wire crate's era rules); no session;
//!   - any other request is in the handshake era: `initialize` opens a session, whose
//!     `Mcp-Session-Id` and negotiated `MCP-Protocol-Version` go on every later request; at the
//!     end of input the session is ended with `DELETE`.
//! - Answers: a JSON body is written as it is (a batch as one line per answer); an SSE stream
//!   is split with the wire crate's splitter and every JSON-RPC message in it (progress
//!   notifications too) is written as its own line as soon as it arrives. A message spread
//!   over several lines is re-serialized onto one.
//! - HTTP errors: the gateway's JSON-RPC error bodies pass through unchanged (with
//!   `data.reason`), except that an error the gateway could only address to `null` (it refuses
//!   a credential before it reads the body) is given the request's id, so the client can match
//!   it. Any other HTTP error, a transport failure, or a stream that ends without the answer is
//!   a `-32000` error with `data.http_status`.
//! - Notifications and the client's answers to server requests are sent on and never produce
//!   output. `notifications/cancelled` also stops the request it names; in the stateless era
//!   closing that request's stream is the cancellation, so it is not sent on.
//! - Stdout carries only JSON-RPC; logs go to stderr through `tracing` and never hold the
//!   credential or tool arguments.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use mcp_runtime_wire::era;
use mcp_runtime_wire::jsonrpc::{self, Body, Id, Message, Request};
use mcp_runtime_wire::sse::{EventSplitter, event_data};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::rpc::{self, id_value, is_error_response, reason_of};
use crate::upstream::{Outgoing, ReadError, ResponseBody, Upstream, is_idempotent, read_body};

/// Limits of the shim.
#[derive(Clone, Debug)]
pub struct StdioOptions {
    /// Longest line read from the client.
    pub max_message_bytes: usize,
    /// Largest JSON answer, or single SSE event, taken from the gateway.
    pub max_response_bytes: usize,
    /// Time allowed at the end to end the session with `DELETE`.
    pub delete_timeout: Duration,
}

impl Default for StdioOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_response_bytes: 32 << 20,
            delete_timeout: Duration::from_secs(5),
        }
    }
}

const ACCEPT: &str = "application/json, text/event-stream";
const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// The longest error body read from the gateway.
const MAX_ERROR_BODY: usize = 1 << 20;

/// Runs the shim until `input` ends (then waits for the answers in flight and ends the session)
/// or `shutdown` completes (then stops what is in flight and ends the session).
pub async fn run<R, W>(
    upstream: Arc<Upstream>,
    input: R,
    output: W,
    options: StdioOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (lines_tx, lines_rx) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(write_lines(output, lines_rx));
    let shim = Arc::new(Shim {
        upstream,
        out: lines_tx,
        session: Mutex::new(Session::default()),
        in_flight: Mutex::new(HashMap::new()),
        next_task: AtomicU64::new(0),
        options,
    });
    // Every task holds a clone; `recv` returns `None` once they all ended.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let mut reader = BufReader::new(input);
    let mut buf = Vec::new();
    let max = shim.options.max_message_bytes;
    tokio::pin!(shutdown);
    let interrupted = loop {
        let line = tokio::select! {
            line = read_line(&mut reader, max, &mut buf) => line,
            () = &mut shutdown => break true,
        };
        match line {
            Err(e) => {
                tracing::error!(error = %e, "cannot read standard input");
                break false;
            }
            Ok(Line::Eof) => break false,
            Ok(Line::TooLong(size)) => {
                tracing::warn!(
                    size,
                    limit = max,
                    "a message over the size limit was not sent on"
                );
                shim.emit(rpc::too_large(None, Some(size), max)).await;
            }
            Ok(Line::Message(bytes)) => {
                let handled = shim.clone().handle(bytes, &alive);
                tokio::select! {
                    () = handled => {}
                    () = &mut shutdown => break true,
                }
            }
        }
    };
    drop(alive);
    if interrupted {
        shim.abort_all();
    } else {
        // End of input: the answers still on their way are written before the shim ends.
        let _ = all_done.recv().await;
    }
    shim.end_session().await;
    drop(shim);
    writer.await.unwrap_or(Ok(()))
}

/// One line of input.
enum Line {
    Message(Bytes),
    /// A line longer than the limit, skipped up to its end; its length.
    TooLong(usize),
    Eof,
}

/// Reads up to the next `\n`, holding at most `max` bytes: a longer line is skipped to its end
/// (its bytes are counted, not kept).
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    buf.clear();
    let mut total = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            // End of input; a last line without `\n` still counts.
            return Ok(match total {
                0 => Line::Eof,
                n if n > max => Line::TooLong(n),
                _ => Line::Message(Bytes::from(std::mem::take(buf))),
            });
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        total += chunk.len();
        if total <= max {
            buf.extend_from_slice(chunk);
        } else {
            buf.clear();
        }
        let consumed = newline.map_or(available.len(), |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            return Ok(if total > max {
                Line::TooLong(total)
            } else {
                Line::Message(Bytes::from(std::mem::take(buf)))
            });
        }
    }
}

/// Writes each line as it comes, flushed, so a client sees every message at once.
async fn write_lines<W: AsyncWrite + Unpin>(
    mut output: W,
    mut lines: mpsc::Receiver<String>,
) -> std::io::Result<()> {
    while let Some(mut line) = lines.recv().await {
        line.push('\n');
        output.write_all(line.as_bytes()).await?;
        output.flush().await?;
    }
    output.shutdown().await
}

/// The handshake-era session with the gateway.
#[derive(Default)]
struct Session {
    id: Option<HeaderValue>,
    version: Option<HeaderValue>,
}

struct InFlight {
    /// The request's id, normalized as JSON, for `notifications/cancelled`.
    id: Option<Value>,
    stateless: bool,
    abort: AbortHandle,
}

struct Shim {
    upstream: Arc<Upstream>,
    out: mpsc::Sender<String>,
    session: Mutex<Session>,
    in_flight: Mutex<HashMap<u64, InFlight>>,
    next_task: AtomicU64,
    options: StdioOptions,
}

impl Shim {
    async fn emit(&self, line: String) {
        // The writer only stops when stdout is gone; nothing can be told to the client then.
        let _ = self.out.send(line).await;
    }

    async fn handle(self: Arc<Self>, bytes: Bytes, alive: &mpsc::Sender<()>) {
        let trimmed = trim(&bytes);
        if trimmed.is_empty() {
            return;
        }
        let body = bytes.slice_ref(trimmed);
        match jsonrpc::parse(&body) {
            Err(refusal) => {
                tracing::warn!(code = refusal.code, error = %refusal.message, "a malformed message was not sent on");
                let id = (refusal.code != jsonrpc::PARSE_ERROR)
                    .then_some(refusal.id.as_ref())
                    .flatten();
                self.emit(jsonrpc::error_response(
                    id,
                    refusal.code,
                    &refusal.message,
                    None,
                ))
                .await;
            }
            Ok(Body::Single(Message::Request(request))) if request.method == "initialize" => {
                // Answered before the next line: what follows needs the session it opens.
                self.request(request, body).await;
            }
            Ok(Body::Single(Message::Request(request))) => {
                let stateless = stateless_version(&request).is_some();
                let id = Some(id_value(&request.id));
                let shim = self.clone();
                self.spawn(id, stateless, alive, async move {
                    shim.request(request, body).await;
                });
            }
            Ok(Body::Single(Message::Notification { method })) => {
                if method == "notifications/cancelled" && self.cancel(&body) {
                    return;
                }
                let shim = self.clone();
                self.spawn(None, false, alive, async move {
                    shim.one_way(body, &method).await;
                });
            }
            Ok(Body::Single(Message::Response { .. })) => {
                let shim = self.clone();
                self.spawn(None, false, alive, async move {
                    shim.one_way(body, "response").await;
                });
            }
            Ok(Body::Batch(messages)) => {
                let ids: Vec<Id> = messages
                    .into_iter()
                    .filter_map(|m| match m {
                        Message::Request(r) => Some(r.id),
                        _ => None,
                    })
                    .collect();
                let shim = self.clone();
                self.spawn(None, false, alive, async move {
                    shim.batch(body, ids).await;
                });
            }
        }
    }

    fn spawn(
        self: &Arc<Self>,
        id: Option<Value>,
        stateless: bool,
        alive: &mpsc::Sender<()>,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        let key = self.next_task.fetch_add(1, Ordering::Relaxed);
        let alive = alive.clone();
        let shim = self.clone();
        // The entry is made before the next line is read, so a cancellation always finds it.
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let task = tokio::spawn(async move {
            work.await;
            shim.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            drop(alive);
        });
        in_flight.insert(
            key,
            InFlight {
                id,
                stateless,
                abort: task.abort_handle(),
            },
        );
    }

    /// Stops the request a `notifications/cancelled` names. Returns `true` when the notification
    /// must not be sent on (the request was in the stateless era, where closing its stream is
    /// the cancellation).
    fn cancel(&self, body: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        struct Cancelled {
            params: CancelledParams,
        }
        #[derive(serde::Deserialize)]
        struct CancelledParams {
            #[serde(rename = "requestId")]
            request_id: Value,
        }
        let Ok(c) = serde_json::from_slice::<Cancelled>(body) else {
            return false;
        };
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let key = in_flight
            .iter()
            .find(|(_, f)| f.id.as_ref() == Some(&c.params.request_id))
            .map(|(k, _)| *k);
        let Some(entry) = key.and_then(|k| in_flight.remove(&k)) else {
            return false;
        };
        entry.abort.abort();
        tracing::debug!(
            stateless = entry.stateless,
            "request cancelled by the client"
        );
        entry.stateless
    }

    fn abort_all(&self) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for (_, f) in in_flight.drain() {
            f.abort.abort();
        }
    }

    /// Headers of a POST: the era's protocol headers for `request` (or the session's, for a
    /// notification or an answer).
    fn headers_for(&self, request: Option<&Request>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
        if let Some((r, version)) = request.and_then(|r| stateless_version(r).map(|v| (r, v))) {
            // Stateless era: everything the gateway needs is in this request. A value a header
            // cannot carry is left out; the gateway then refuses the request, saying why.
            if let Ok(v) = HeaderValue::from_str(version) {
                h.insert(VERSION_HEADER, v);
            }
            if let Ok(m) = HeaderValue::from_str(&r.method) {
                h.insert("mcp-method", m);
            }
            if let Some(name) = era::mirrored_name(r)
                && let Ok(n) = HeaderValue::from_str(&era::encode_header_value(name))
            {
                h.insert("mcp-name", n);
            }
            return h;
        }
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = &session.id {
            h.insert(SESSION_HEADER, id.clone());
        }
        if let Some(v) = &session.version {
            h.insert(VERSION_HEADER, v.clone());
        }
        h
    }

    async fn request(&self, request: Request, body: Bytes) {
        let initialize = request.method == "initialize";
        if initialize {
            // A new handshake starts a new session.
            *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Session::default();
        }
        let out = Outgoing {
            method: Method::POST,
            headers: self.headers_for(Some(&request)),
            body,
            idempotent: is_idempotent(&request.method),
            rpc_method: Some(request.method.clone()),
        };
        let target = era::mirrored_name(&request);
        let response = match self.upstream.send(&out).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(rpc_method = %request.method, error = %e, "no answer from the gateway");
                self.emit(rpc::transport_error(Some(&request.id), &e)).await;
                return;
            }
        };
        if initialize && response.status().is_success() {
            let id = response.headers().get(SESSION_HEADER).cloned();
            self.session.lock().unwrap_or_else(|e| e.into_inner()).id = id;
        }
        let label = Label {
            method: &request.method,
            target,
        };
        let answers = self
            .relay(response, std::slice::from_ref(&request.id), label)
            .await;
        if initialize {
            let version = answers
                .first()
                .and_then(|a| a.pointer("/result/protocolVersion"))
                .and_then(Value::as_str)
                .and_then(|v| HeaderValue::from_str(v).ok());
            let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
            session.version = version;
            tracing::info!(
                session = session.id.is_some(),
                protocol_version = ?session.version,
                "handshake with the gateway done"
            );
        }
    }

    async fn batch(&self, body: Bytes, ids: Vec<Id>) {
        let out = Outgoing {
            method: Method::POST,
            headers: self.headers_for(None),
            body,
            idempotent: false,
            rpc_method: Some("batch".to_owned()),
        };
        match self.upstream.send(&out).await {
            Ok(response) => {
                let label = Label {
                    method: "batch",
                    target: None,
                };
                self.relay(response, &ids, label).await;
            }
            Err(e) => {
                for id in &ids {
                    self.emit(rpc::transport_error(Some(id), &e)).await;
                }
            }
        }
    }

    /// A notification or an answer to a server request: sent on, nothing written back.
    async fn one_way(&self, body: Bytes, what: &str) {
        let out = Outgoing {
            method: Method::POST,
            headers: self.headers_for(None),
            body,
            idempotent: false,
            rpc_method: Some(what.to_owned()),
        };
        match self.upstream.send(&out).await {
            Ok(response) if response.status().is_success() => {
                // Nothing to say back; the body (if any) is drained so the connection is reused.
                let _ = response.into_body().collect().await;
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = read_limited(response.into_body(), MAX_ERROR_BODY)
                    .await
                    .unwrap_or_default();
                let reason = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| reason_of(&v).map(str::to_owned));
                tracing::warn!(
                    rpc_method = what,
                    status,
                    reason,
                    "the gateway refused a notification"
                );
            }
            Err(e) => {
                tracing::warn!(rpc_method = what, error = %e, "a notification did not reach the gateway")
            }
        }
    }

    /// Writes what the gateway answered and returns the answers to `expected`; any expected id
    /// left unanswered gets an error, so no request waits forever.
    async fn relay(
        &self,
        response: Response<ResponseBody>,
        expected: &[Id],
        label: Label<'_>,
    ) -> Vec<Value> {
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut pending = Pending::new(expected);
        let body = response.into_body();
        if !status.is_success() {
            let bytes = read_limited(body, MAX_ERROR_BODY).await.unwrap_or_default();
            self.http_error(status, &bytes, &mut pending, label).await;
            return pending.answers;
        }
        let failure = if content_type.starts_with("text/event-stream") {
            self.relay_stream(body, &mut pending, label).await.err()
        } else {
            match read_limited(body, self.options.max_response_bytes).await {
                Ok(bytes) if trim(&bytes).is_empty() => Some(format!(
                    "the gateway answered HTTP {} with no response to the request",
                    status.as_u16()
                )),
                Ok(bytes) => self.relay_json(&bytes, &mut pending, label).await.err(),
                Err(e) => Some(e),
            }
        };
        let detail = failure.unwrap_or_else(|| {
            "the gateway's answer did not include the response to this request".to_owned()
        });
        for id in pending.unanswered() {
            tracing::warn!(rpc_method = label.method, error = %detail, "no response from the gateway");
            let status = if status == StatusCode::ACCEPTED || status.is_success() {
                // A broken or empty answer reads, for the client, as a gateway failure.
                StatusCode::BAD_GATEWAY
            } else {
                status
            };
            self.emit(rpc::no_answer(Some(&id), status, &detail)).await;
        }
        pending.answers
    }

    /// A JSON body: one message, or a batch of them.
    async fn relay_json(
        &self,
        bytes: &[u8],
        pending: &mut Pending,
        label: Label<'_>,
    ) -> Result<(), String> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("the gateway answered with something that is not JSON ({e})"))?;
        match value {
            Value::Array(items) => {
                for item in items {
                    self.emit_message(item, None, pending, label).await;
                }
            }
            v => {
                let text = std::str::from_utf8(trim(bytes)).ok();
                self.emit_message(v, text, pending, label).await;
            }
        }
        Ok(())
    }

    /// An SSE stream: each JSON-RPC message written as it arrives.
    async fn relay_stream(
        &self,
        mut body: ResponseBody,
        pending: &mut Pending,
        label: Label<'_>,
    ) -> Result<(), String> {
        let mut splitter = EventSplitter::new(self.options.max_response_bytes);
        loop {
            let frame = match body.frame().await {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(format!("the gateway's event stream broke off: {e}")),
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let events = splitter.push(&data).map_err(|e| e.to_string())?;
            for event in events {
                self.emit_event(&event, pending, label).await;
            }
        }
        if let Some(last) = splitter.finish_event() {
            self.emit_event(&last, pending, label).await;
        }
        Ok(())
    }

    async fn emit_event(&self, event: &[u8], pending: &mut Pending, label: Label<'_>) {
        let data = match event_data(event) {
            Ok(Some(d)) if !d.trim().is_empty() => d,
            // Comments, keep-alives, events without data.
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "an event of the gateway's stream was dropped");
                return;
            }
        };
        match serde_json::from_str::<Value>(&data) {
            Ok(v) => self.emit_message(v, Some(&data), pending, label).await,
            Err(_) => {
                tracing::warn!("an event of the gateway's stream is not JSON; dropped");
            }
        }
    }

    /// Writes one message on one line: `text` as it is when it is already one line, else
    /// re-serialized.
    async fn emit_message(
        &self,
        value: Value,
        text: Option<&str>,
        pending: &mut Pending,
        label: Label<'_>,
    ) {
        if let Some(reason) = reason_of(&value) {
            tracing::info!(
                rpc_method = label.method,
                target = label.target,
                reason,
                "the gateway refused"
            );
        }
        let line = match text.map(str::trim) {
            Some(t) if !t.contains(['\n', '\r']) => t.to_owned(),
            _ => value.to_string(),
        };
        pending.answered(value);
        self.emit(line).await;
    }

    /// An HTTP error: the gateway's JSON-RPC error as it is (a `null` id given the request's),
    /// anything else as a `-32000` error with the status.
    async fn http_error(
        &self,
        status: StatusCode,
        body: &[u8],
        pending: &mut Pending,
        label: Label<'_>,
    ) {
        let value = serde_json::from_slice::<Value>(body)
            .ok()
            .filter(is_error_response);
        let ids = pending.unanswered();
        if ids.is_empty() {
            // A batch of notifications: nothing to answer.
            tracing::warn!(
                rpc_method = label.method,
                status = status.as_u16(),
                "the gateway refused"
            );
            return;
        }
        match value {
            Some(v) if !v["id"].is_null() => {
                self.emit_message(v, std::str::from_utf8(body).ok(), pending, label)
                    .await;
            }
            Some(v) => {
                for id in ids {
                    let mut answer = v.clone();
                    answer["id"] = id_value(&id);
                    self.emit_message(answer, None, pending, label).await;
                }
            }
            None => {
                tracing::warn!(
                    rpc_method = label.method,
                    status = status.as_u16(),
                    "the gateway answered with an HTTP error"
                );
                for id in ids {
                    self.emit(rpc::http_failure(Some(&id), status, body)).await;
                }
            }
        }
    }

    /// Ends the handshake-era session, if there is one.
    async fn end_session(&self) {
        let headers = {
            let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
            if session.id.is_none() {
                return;
            }
            drop(session);
            self.headers_for(None)
        };
        let out = Outgoing {
            method: Method::DELETE,
            headers,
            body: Bytes::new(),
            idempotent: false,
            rpc_method: None,
        };
        match tokio::time::timeout(self.options.delete_timeout, self.upstream.send(&out)).await {
            Ok(Ok(r)) => tracing::info!(status = r.status().as_u16(), "session ended"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not end the session"),
            Err(_) => tracing::warn!("the gateway did not answer the session's DELETE in time"),
        }
    }
}

/// What a request was, for logs (never its arguments).
#[derive(Clone, Copy)]
struct Label<'a> {
    method: &'a str,
    target: Option<&'a str>,
}

/// The ids a POST expects answers to, and the answers seen.
struct Pending {
    waiting: Vec<(Id, Value)>,
    answers: Vec<Value>,
}

impl Pending {
    fn new(ids: &[Id]) -> Self {
        Self {
            waiting: ids.iter().map(|i| (i.clone(), id_value(i))).collect(),
            answers: Vec::new(),
        }
    }

    fn answered(&mut self, message: Value) {
        let is_answer = message.get("result").is_some() || message.get("error").is_some();
        if !is_answer {
            return;
        }
        let Some(id) = message.get("id") else {
            return;
        };
        if let Some(i) = self.waiting.iter().position(|(_, v)| v == id) {
            self.waiting.remove(i);
            self.answers.push(message);
        }
    }

    fn unanswered(&self) -> Vec<Id> {
        self.waiting.iter().map(|(i, _)| i.clone()).collect()
    }
}

/// The stateless-era version a request names in its `_meta`, if it names one.
fn stateless_version(request: &Request) -> Option<&str> {
    request
        .meta_protocol_version
        .as_deref()
        .filter(|v| era::is_stateless(Some(v)))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

async fn read_limited(body: ResponseBody, limit: usize) -> Result<Bytes, String> {
    read_body(body, limit).await.map_err(|e| match e {
        ReadError::TooLarge { limit } => {
            format!("the gateway's answer is larger than the adapter's limit of {limit} bytes")
        }
        ReadError::Broken(e) => format!("reading the gateway's answer: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_line(&mut reader, max, &mut buf).await.unwrap() {
                Line::Eof => return out,
                Line::TooLong(n) => out.push(format!("too long: {n}")),
                Line::Message(b) => out.push(String::from_utf8(b.to_vec()).unwrap()),
            }
        }
    }

    #[tokio::test]
    async fn long_lines_are_skipped_whole_and_reading_goes_on() {
        let got = lines(b"{\"a\":1}\n0123456789abcdef\n\nlast", 10).await;
        assert_eq!(got, ["{\"a\":1}", "too long: 16", "", "last"]);
        let got = lines(b"0123456789abcdef", 10).await;
        assert_eq!(got, ["too long: 16"]);
    }

    #[test]
    fn answers_are_matched_by_id_value() {
        let mut p = Pending::new(&[Id("1".into()), Id("\"a\"".into())]);
        p.answered(serde_json::json!({"jsonrpc":"2.0","method":"notifications/progress"}));
        p.answered(serde_json::json!({"jsonrpc":"2.0","id":"a","result":{}}));
        assert_eq!(p.unanswered(), vec![Id("1".into())]);
        assert_eq!(p.answers.len(), 1);
    }
}
