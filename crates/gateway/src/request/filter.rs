//! Responses fail closed: a list the caller receives holds only what the caller may use, and an
//! answer the gateway cannot read is not shown.
//!
//! Every response that can carry a list is inspected: the answer to a list request (alone or in a
//! batch), and every event of a GET stream (which may replay, after `Last-Event-ID`, what a POST
//! stream carried). Inside it, every JSON-RPC response is filtered: by the list its id asked for,
//! or, whatever its id, by the list fields its `result` holds. JSON that does not parse, an SSE
//! event that is not UTF-8 JSON, an event larger than the limit, a compressed body, or a list
//! answer without its list end the response with a JSON-RPC error instead.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming};
use jiff::Timestamp;
use mcp_runtime_audit::{AuditEvent, Auditor};
use mcp_runtime_policy::Policy;
use mcp_runtime_wire::jsonrpc::Id;
use mcp_runtime_wire::method::ListKind;
use mcp_runtime_wire::sse;
use serde_json::Value;

use super::decide::decide_target;
use super::forward::strip_hop_by_hop;
use super::refusal::{Reason, Refusal};
use super::{BoxError, GatewayBody, full};
use crate::auth::Caller;

/// A list request whose answer is expected in the response, with its audit event (emitted once
/// the answer is seen, or when the response ends).
pub struct Pending {
    pub id: Id,
    /// `id` parsed once, to compare with the ids of answers.
    id_value: Value,
    pub kind: ListKind,
    pub event: Option<AuditEvent<'static>>,
}

impl Pending {
    pub fn new(id: Id, kind: ListKind, event: Option<AuditEvent<'static>>) -> Self {
        let id_value = serde_json::from_str(&id.0).unwrap_or(Value::Null);
        Self {
            id,
            id_value,
            kind,
            event,
        }
    }
}

/// Filters the responses of one exchange.
pub struct ListFilter {
    pub policy: Arc<Policy>,
    pub caller: Caller,
    pub pending: Vec<Pending>,
    pub auditor: Option<Auditor>,
    pub now: Timestamp,
}

type Verdict = Result<(), &'static str>;

impl ListFilter {
    fn visible(&self, kind: ListKind, name: &str) -> bool {
        decide_target(&self.policy, &self.caller, kind.target(), name, self.now).allowed
    }

    /// Keeps the items of `result.<field>` the caller may use; returns (kept, hidden).
    fn filter_items(&self, kind: ListKind, items: &mut Vec<Value>) -> (u32, u32) {
        let before = items.len();
        items.retain(|item| {
            item.get(kind.item_key())
                .and_then(Value::as_str)
                .is_some_and(|name| self.visible(kind, name))
        });
        (items.len() as u32, (before - items.len()) as u32)
    }

    /// Filters one JSON-RPC message in place.
    fn message(&mut self, message: &mut Value) -> Verdict {
        let Some(object) = message.as_object_mut() else {
            return Err("a message that is not a JSON object");
        };
        // A server request or notification (sampling, progress, logging): no list in it. One
        // that is also an answer is malformed, and a client might read either half.
        if object.contains_key("method") {
            if object.contains_key("result") || object.contains_key("error") {
                return Err("a message that is both a request and an answer");
            }
            return Ok(());
        }
        let expected = object
            .get("id")
            .and_then(|id| self.pending.iter().position(|p| &p.id_value == id));
        let Some(result) = object.get_mut("result") else {
            if let Some(i) = expected {
                self.settle(i, None);
            }
            return Ok(());
        };
        let mut filtered = None;
        if let Some(i) = expected {
            let kind = self.pending[i].kind;
            filtered = Some(kind);
            let Some(items) = result
                .get_mut(kind.result_field())
                .and_then(Value::as_array_mut)
            else {
                return Err("an answer to a list request without its list");
            };
            let counts = self.filter_items(kind, items);
            self.settle(i, Some(counts));
        }
        // Whatever the id, any list in a result is filtered: an answer the gateway did not
        // expect (another id, a replayed stream) shows no more than an expected one.
        if let Some(result) = result.as_object_mut() {
            for kind in ListKind::ALL.into_iter().filter(|k| Some(*k) != filtered) {
                if let Some(items) = result
                    .get_mut(kind.result_field())
                    .and_then(Value::as_array_mut)
                {
                    self.filter_items(kind, items);
                }
            }
        }
        Ok(())
    }

    /// Filters a JSON-RPC payload: one message or a batch of them.
    pub fn payload(&mut self, value: &mut Value) -> Verdict {
        match value {
            Value::Array(messages) => messages.iter_mut().try_for_each(|m| self.message(m)),
            other => self.message(other),
        }
    }

    /// Emits the audit event of pending list request `i` (once).
    fn settle(&mut self, i: usize, counts: Option<(u32, u32)>) {
        if let (Some(auditor), Some(mut event)) = (&self.auditor, self.pending[i].event.take()) {
            if let Some((listed, hidden)) = counts {
                event.items_listed = Some(listed);
                event.items_hidden = Some(hidden);
                if self.pending[i].kind == ListKind::Tools {
                    event.tools_listed = Some(listed);
                    event.tools_hidden = Some(hidden);
                }
            }
            auditor.emit(event);
        }
    }

    /// Emits the events of list requests whose answer never came.
    fn finish(&mut self) {
        for i in 0..self.pending.len() {
            self.settle(i, None);
        }
    }

    /// One SSE event, filtered (events without data pass as they are).
    fn event(&mut self, event: Vec<u8>) -> Result<Vec<u8>, String> {
        match sse::event_data(&event).map_err(|e| e.to_string())? {
            // No data, or empty data (a priming event carrying only `id:`/`retry:`): a client
            // dispatches no message for it.
            None => Ok(event),
            Some(data) if data.is_empty() => Ok(event),
            Some(data) => {
                let mut value = serde_json::from_str::<Value>(&data)
                    .map_err(|_| "an event whose data is not JSON".to_owned())?;
                self.payload(&mut value)?;
                Ok(sse::with_data(&event, &value.to_string()))
            }
        }
    }

    /// The error that replaces what could not be shown.
    fn refusal(&self, why: &str) -> Refusal {
        Refusal::new(
            Reason::ResponseNotFilterable,
            format!(
                "the gateway could not inspect the MCP server's answer ({why}), so it is not shown"
            ),
        )
        .with_id(self.pending.first().map(|p| p.id.clone()))
    }

    /// Filters a whole response: JSON rewritten whole, SSE event by event.
    pub async fn response(
        mut self,
        resp: Response<Incoming>,
        max_bytes: usize,
    ) -> Response<GatewayBody> {
        let headers = resp.headers();
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let is_sse = content_type.starts_with("text/event-stream");
        let is_json = content_type.starts_with("application/json");
        let success = resp.status().is_success();
        if encoded {
            self.finish();
            return self.refusal("it is compressed").into_response();
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if !is_sse && !is_json {
            // Nothing a client would read as a JSON-RPC answer: errors and empty acceptances
            // pass; a successful answer of another type cannot be inspected.
            self.finish();
            if success && parts.status != http::StatusCode::ACCEPTED {
                return self
                    .refusal("it is not JSON or an event stream")
                    .into_response();
            }
            return Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed());
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        if is_json {
            let bytes = match Limited::new(body, max_bytes).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    self.finish();
                    return self.refusal("it is too large or broke off").into_response();
                }
            };
            let verdict = match serde_json::from_slice::<Value>(&bytes) {
                Ok(mut value) => self.payload(&mut value).map(|()| value),
                Err(_) => Err("malformed JSON"),
            };
            self.finish();
            return match verdict {
                Ok(value) => Response::from_parts(
                    parts,
                    full(serde_json::to_vec(&value).expect("JSON re-encodes")),
                ),
                Err(why) => self.refusal(why).into_response(),
            };
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
        tokio::spawn(async move { self.stream(body, max_bytes, tx).await });
        Response::from_parts(parts, BodyExt::boxed(ChannelBody { rx }))
    }

    async fn stream(
        mut self,
        mut body: Incoming,
        max_bytes: usize,
        tx: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    ) {
        let mut splitter = sse::EventSplitter::new(max_bytes);
        let outcome: Result<(), String> = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| e.to_string())?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let events = splitter.push(&data).map_err(|e| e.to_string())?;
                for event in events {
                    let out = self.event(event)?;
                    if tx.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
                        return Ok(());
                    }
                }
            }
            // An unterminated last event is never dispatched by a client: dropped unread.
            if let Some(event) =
                std::mem::replace(&mut splitter, sse::EventSplitter::new(0)).finish_event()
            {
                let out = self.event(event)?;
                let _ = tx.send(Ok(Frame::data(Bytes::from(out)))).await;
            }
            Ok(())
        }
        .await;
        self.finish();
        if let Err(why) = outcome {
            tracing::warn!(%why, "ending an MCP server stream the gateway cannot inspect");
            let error = self.refusal(&why).to_json_rpc();
            let event = format!("event: message\ndata: {error}\n\n");
            let _ = tx.send(Ok(Frame::data(Bytes::from(event)))).await;
        }
    }
}

/// A response body fed by a task through a channel.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use mcp_runtime_policy::{PolicyDocument, PolicyMode, ServerRef};
    use serde_json::json;

    use super::*;

    /// A filter for an anonymous caller under an allow-list policy with nothing declared: every
    /// item it meets is hidden.
    fn filter(pending: Vec<Pending>) -> ListFilter {
        let mut doc = PolicyDocument::new(ServerRef {
            name: "s".into(),
            namespace: "n".into(),
            ..Default::default()
        });
        doc.policy.mode = PolicyMode::AllowList;
        ListFilter {
            policy: Arc::new(Policy::new(doc.seal().unwrap())),
            caller: Caller::default(),
            pending,
            auditor: None,
            now: Timestamp::now(),
        }
    }

    fn tools_list(id: &str) -> Pending {
        Pending::new(Id(id.into()), ListKind::Tools, None)
    }

    #[test]
    fn lists_are_filtered_by_id_and_by_shape() {
        let mut f = filter(vec![tools_list("1")]);
        // The expected answer, another id, and a batch: every list in a result is filtered.
        for mut answer in [
            json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"wipe"}]}}),
            json!({"jsonrpc":"2.0","id":"other","result":{"tools":[{"name":"wipe"}],"prompts":[{"name":"p"}]}}),
            json!([{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"x://"}],"resourceTemplates":[{"uriTemplate":"y://{a}"}]}}]),
        ] {
            f.payload(&mut answer).unwrap();
            assert!(!answer.to_string().contains("wipe"), "{answer}");
            for field in ["prompts", "resources", "resourceTemplates"] {
                assert!(
                    !answer.to_string().contains(&format!("\"{field}\":[{{")),
                    "{answer}"
                );
            }
        }
    }

    #[test]
    fn answers_that_cannot_be_read_safely_are_refused() {
        for answer in [
            // A list answer without its list.
            json!({"jsonrpc":"2.0","id":1,"result":{"items":[{"name":"wipe"}]}}),
            // Both a request and an answer.
            json!({"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[{"name":"wipe"}]}}),
            // Not a message.
            json!("tools"),
        ] {
            let mut answer = answer;
            assert!(
                filter(vec![tools_list("1")]).payload(&mut answer).is_err(),
                "{answer}"
            );
        }
        // An error answer and a server notification pass.
        let mut error = json!({"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}});
        assert!(filter(vec![tools_list("1")]).payload(&mut error).is_ok());
        let mut note = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{}});
        assert!(filter(vec![tools_list("1")]).payload(&mut note).is_ok());
    }
}
