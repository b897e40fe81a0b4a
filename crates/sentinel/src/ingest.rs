//! What the ingest accepts, turned into [`Record`]s: pure parsing, validation and redaction.
//!
//! Two body shapes on `POST /v1/ingest/events`:
//! - a batch `{"events":[...]}` (what the gateway's shipper sends); each item is a gateway audit
//!   event or an envelope;
//! - one envelope `{"source","event_type","payload", "timestamp"?, "trace_id"?, "event_id"?}`
//!   (the original platform's shape, for producers other than the gateway).
//!
//! A bad item is rejected with its index and a message; the good items of the batch are kept.

use std::borrow::Cow;

use jiff::Timestamp;
use mcp_runtime_audit::{AuditEvent, capped, next_event_id};
use mcp_runtime_svc::otel::{SpanContext, SpanId, TraceId};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::redact::Redactor;
use crate::store::{GATEWAY_EVENT_TYPE, Record};

/// Which shape the body had (a single envelope is answered `202 Accepted`, as producers of the
/// original expect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyShape {
    Batch,
    Single,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Position of the item in `events` (0 for a single envelope).
    pub index: usize,
    pub message: String,
}

/// A valid item.
#[derive(Debug)]
pub struct Accepted {
    /// Its position in the body.
    pub index: usize,
    pub record: Record,
    /// The span it continues: a gateway event's `trace_id` and `span_id` (present only when
    /// the gateway traced the request). Envelopes carry a trace id at most: no span.
    pub parent: Option<SpanContext>,
}

#[derive(Debug)]
pub struct Parsed {
    pub shape: BodyShape,
    /// The valid items.
    pub records: Vec<Accepted>,
    pub rejected: Vec<Rejected>,
    /// Values changed by redaction, over all records.
    pub redacted: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(
        "the body is not JSON of either accepted shape: a batch {{\"events\":[...]}} or one envelope {{\"source\",\"event_type\",\"payload\"}} ({0})"
    )]
    Shape(String),
}

/// Longest `source` / `event_type` accepted.
const MAX_NAME_BYTES: usize = 256;

#[derive(Deserialize)]
struct BodyPeek {
    events: Option<Vec<Box<RawValue>>>,
    event_type: Option<IgnoredAny>,
    payload: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ItemPeek {
    event_type: Option<IgnoredAny>,
    payload: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[serde(default)]
    event_id: Option<Uuid>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
    source: String,
    event_type: String,
    #[serde(default)]
    payload: Option<Value>,
}

#[derive(Serialize)]
struct StoredEnvelope<'a> {
    event_id: Uuid,
    time: Timestamp,
    source: &'a str,
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    payload: &'a Value,
}

/// Parses a body of `POST /v1/ingest/events`.
pub fn parse(body: &[u8], redactor: &Redactor, now: Timestamp) -> Result<Parsed, BodyError> {
    let peek: BodyPeek =
        serde_json::from_slice(body).map_err(|e| BodyError::Shape(e.to_string()))?;
    let mut parsed = Parsed {
        shape: BodyShape::Batch,
        records: Vec::new(),
        rejected: Vec::new(),
        redacted: 0,
    };
    let items: Vec<Cow<'_, RawValue>> = match peek.events {
        Some(events) => events.into_iter().map(Cow::Owned).collect(),
        None if peek.event_type.is_some() || peek.payload.is_some() => {
            parsed.shape = BodyShape::Single;
            let raw: &RawValue = serde_json::from_slice(body)
                .map_err(|e: serde_json::Error| BodyError::Shape(e.to_string()))?;
            vec![Cow::Borrowed(raw)]
        }
        None => {
            return Err(BodyError::Shape(
                "neither `events` nor `event_type` is present".into(),
            ));
        }
    };
    parsed.records.reserve(items.len());
    for (index, item) in items.iter().enumerate() {
        match parse_item(item.get(), redactor, now) {
            Ok((record, parent, redacted)) => {
                parsed.records.push(Accepted {
                    index,
                    record,
                    parent,
                });
                parsed.redacted += redacted;
            }
            Err(message) => parsed.rejected.push(Rejected { index, message }),
        }
    }
    Ok(parsed)
}

type Item = (Record, Option<SpanContext>, usize);

fn parse_item(json: &str, redactor: &Redactor, now: Timestamp) -> Result<Item, String> {
    let peek: ItemPeek =
        serde_json::from_str(json).map_err(|e| format!("not a JSON object: {e}"))?;
    if peek.event_type.is_some() || peek.payload.is_some() {
        let envelope: Envelope =
            serde_json::from_str(json).map_err(|e| format!("envelope: {e}"))?;
        envelope_record(envelope, redactor, now).map(|(record, redacted)| (record, None, redacted))
    } else {
        gateway_record(json, redactor)
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| capped(s).to_owned())
}

/// `allowed`/`denied` (and any case) read as `allow`/`deny`; other values kept lowercased.
fn normal_decision(d: &str) -> String {
    match d.to_ascii_lowercase().as_str() {
        "allow" | "allowed" => "allow".to_owned(),
        "deny" | "denied" => "deny".to_owned(),
        other => capped(other).to_owned(),
    }
}

fn valid_trace_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0')
}

fn name(field: &str, value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("envelope: `{field}` is empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(format!(
            "envelope: `{field}` is longer than {MAX_NAME_BYTES} bytes"
        ));
    }
    Ok(value.to_owned())
}

fn envelope_record(
    envelope: Envelope,
    redactor: &Redactor,
    now: Timestamp,
) -> Result<(Record, usize), String> {
    let source = name("source", &envelope.source)?;
    let event_type = name("event_type", &envelope.event_type)?;
    let mut payload = match envelope.payload {
        None | Some(Value::Null) => {
            return Err("envelope: `payload` is missing or null".into());
        }
        Some(p) => p,
    };
    let time = match envelope.timestamp.as_deref() {
        None | Some("") => now,
        Some(t) => t.parse::<Timestamp>().map_err(|e| {
            format!("envelope: `timestamp` is not an RFC 3339 time ({e}); omit it to use the time of arrival")
        })?,
    };
    let trace_id = match envelope.trace_id.as_deref() {
        None | Some("") => None,
        Some(t) if valid_trace_id(t) => Some(t.to_ascii_lowercase()),
        Some(_) => {
            return Err(
                "envelope: `trace_id` must be 32 hex digits, not all zero (W3C trace context)"
                    .into(),
            );
        }
    };
    let redacted = redactor.redact_value(&mut payload);
    let event_id = envelope.event_id.unwrap_or_else(|| next_event_id(time));
    let stored = StoredEnvelope {
        event_id,
        time,
        source: &source,
        event_type: &event_type,
        trace_id: trace_id.as_deref(),
        payload: &payload,
    };
    let json = serde_json::value::to_raw_value(&stored).map_err(|e| e.to_string())?;
    let record = Record {
        event_id,
        time,
        arrival_time: matches!(envelope.timestamp.as_deref(), None | Some("")),
        trace_id,
        server: text(&payload, "server"),
        namespace: text(&payload, "namespace"),
        team: text(&payload, "team_id"),
        human: text(&payload, "human_id"),
        agent: text(&payload, "agent_id"),
        session: text(&payload, "session_id"),
        tool: text(&payload, "tool_name").or_else(|| text(&payload, "tool")),
        decision: payload
            .get("decision")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(normal_decision),
        reason: text(&payload, "reason"),
        count: 1,
        source,
        event_type,
        json,
    };
    Ok((record, redacted))
}

/// Top-level audit-event fields a deployment may choose to redact (the identity fields); the
/// others (ids, decision, reason, times) have a fixed grammar and carry no personal data.
const REDACTABLE_GATEWAY_FIELDS: &[&str] = &[
    "human_id",
    "agent_id",
    "subject_team_id",
    "session_id",
    "matched_session",
];

/// The gateway's span of an event: both ids well formed, else none (the event is kept either way:
/// trace fields never cost an event).
fn gateway_span(event: &AuditEvent<'_>) -> Option<SpanContext> {
    Some(SpanContext {
        trace_id: TraceId::from_hex(event.trace_id.as_deref()?)?,
        span_id: SpanId::from_hex(event.span_id.as_deref()?)?,
        // The gateway writes a span id only for a request it records.
        sampled: true,
    })
}

fn gateway_record(json: &str, redactor: &Redactor) -> Result<Item, String> {
    let event: AuditEvent<'_> =
        serde_json::from_str(json).map_err(|e| format!("audit event: {e}"))?;
    let parent = gateway_span(&event);
    // Captured tool arguments are free text from the caller: redacted like an envelope payload.
    // Identity fields only when the deployment named them.
    let named = REDACTABLE_GATEWAY_FIELDS
        .iter()
        .any(|f| redactor.is_secret_field(f));
    let (event, json, redacted) = if event.arguments.is_some() || named {
        let mut value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut redacted = 0;
        if let Some(object) = value.as_object_mut() {
            for field in REDACTABLE_GATEWAY_FIELDS {
                if redactor.is_secret_field(field)
                    && let Some(Value::String(s)) = object.get_mut(*field)
                {
                    *s = redactor.redact_whole(s);
                    redacted += 1;
                }
            }
            if let Some(arguments) = object.get_mut("arguments") {
                redacted += redactor.redact_value(arguments);
            }
        }
        let json = serde_json::value::to_raw_value(&value).map_err(|e| e.to_string())?;
        let event: AuditEvent<'static> = serde_json::from_str::<AuditEvent<'_>>(json.get())
            .map_err(|e| e.to_string())?
            .into_owned();
        (event, json, redacted)
    } else {
        let raw = RawValue::from_string(json.to_owned()).map_err(|e| e.to_string())?;
        (event.into_owned(), raw, 0)
    };
    let opt = |v: &Option<Cow<'_, str>>| v.as_deref().map(|s| capped(s).to_owned());
    let record = Record {
        event_id: event.event_id,
        time: event.time,
        arrival_time: false,
        source: capped(&event.source).to_owned(),
        event_type: GATEWAY_EVENT_TYPE.to_owned(),
        trace_id: opt(&event.trace_id),
        server: Some(capped(&event.server).to_owned()),
        namespace: Some(capped(&event.namespace).to_owned()),
        team: opt(&event.team_id),
        human: opt(&event.human_id),
        agent: opt(&event.agent_id),
        session: opt(&event.session_id),
        tool: opt(&event.tool),
        decision: Some(event.decision.as_str().to_owned()),
        reason: Some(capped(&event.reason).to_owned()),
        count: event.count.unwrap_or(1),
        json,
    };
    Ok((record, parent, redacted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Mode;
    use mcp_runtime_audit::Decision;

    fn now() -> Timestamp {
        "2026-11-27T12:00:00Z".parse().unwrap()
    }

    fn redactor() -> Redactor {
        Redactor::new(Mode::Replace, &[])
    }

    fn gateway_event() -> String {
        let mut e = AuditEvent::new(
            "hello-gateway",
            "hello",
            "team-a",
            "POST",
            Decision::Deny,
            "trust_too_low",
        );
        e.human_id = Some("alice@example.com".into());
        e.tool = Some("delete_all".into());
        serde_json::to_string(&e).unwrap()
    }

    #[test]
    fn a_batch_mixes_gateway_events_envelopes_and_rejects() {
        let body = format!(
            r#"{{"events":[{},{{"source":"billing","event_type":"pii.check","payload":{{"server":"pay","decision":"Denied","note":"card for bob@example.com"}}}},{{"source":"","event_type":"x","payload":{{}}}},7]}}"#,
            gateway_event()
        );
        let parsed = parse(body.as_bytes(), &redactor(), now()).unwrap();
        assert_eq!(parsed.shape, BodyShape::Batch);
        assert_eq!(parsed.records.len(), 2);
        let gw = &parsed.records[0].record;
        assert_eq!(gw.event_type, "mcp.request");
        assert_eq!(gw.source, "hello-gateway");
        assert_eq!(
            gw.human.as_deref(),
            Some("alice@example.com"),
            "identity kept by default"
        );
        assert_eq!(gw.decision.as_deref(), Some("deny"));
        let env = &parsed.records[1].record;
        assert_eq!(
            (env.source.as_str(), env.event_type.as_str()),
            ("billing", "pii.check")
        );
        assert_eq!(env.server.as_deref(), Some("pay"));
        assert_eq!(env.decision.as_deref(), Some("deny"));
        assert_eq!(env.time, now(), "no timestamp: time of arrival");
        assert!(
            env.json.get().contains("card for [REDACTED:email]"),
            "{}",
            env.json
        );
        assert!(!env.json.get().contains("bob@"));
        assert_eq!(parsed.redacted, 1);
        assert_eq!(
            parsed.rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
            [2, 3]
        );
        assert!(
            parsed.rejected[0].message.contains("`source` is empty"),
            "{:?}",
            parsed.rejected
        );
    }

    #[test]
    fn a_traced_gateway_event_names_the_span_it_continues() {
        let mut e: Value = serde_json::from_str(&gateway_event()).unwrap();
        e["trace_id"] = "4bf92f3577b34da6a3ce929d0e0e4736".into();
        let body = |e: &Value| format!(r#"{{"events":[{e}]}}"#);
        // A trace id alone (a request the gateway did not record): no span to continue.
        let parsed = parse(body(&e).as_bytes(), &redactor(), now()).unwrap();
        assert_eq!(parsed.records[0].parent, None);
        assert_eq!(
            parsed.records[0].record.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );

        e["span_id"] = "00f067aa0ba902b7".into();
        let parsed = parse(body(&e).as_bytes(), &redactor(), now()).unwrap();
        let parent = parsed.records[0].parent.unwrap();
        assert_eq!(
            parent.traceparent().as_str(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );

        // A malformed span id costs the span, not the event.
        e["span_id"] = "not-a-span".into();
        let parsed = parse(body(&e).as_bytes(), &redactor(), now()).unwrap();
        assert_eq!(parsed.records.len(), 1);
        assert_eq!(parsed.records[0].parent, None);
    }

    #[test]
    fn a_single_envelope_is_one_record_with_its_own_id_time_and_trace() {
        let body = br#"{"event_id":"019abc12-3456-7def-8901-234567890abc","timestamp":"2026-11-26T08:00:00Z","trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736","source":"router","event_type":"service.route.check","payload":{"password":"x","ok":true}}"#;
        let parsed = parse(body, &redactor(), now()).unwrap();
        assert_eq!(parsed.shape, BodyShape::Single);
        let r = &parsed.records[0].record;
        assert_eq!(
            r.event_id.to_string(),
            "019abc12-3456-7def-8901-234567890abc"
        );
        assert_eq!(r.time.to_string(), "2026-11-26T08:00:00Z");
        assert_eq!(
            r.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert!(r.json.get().contains(r#""password":"[REDACTED:field]""#));
        assert_eq!(r.decision, None);
    }

    #[test]
    fn bad_envelopes_are_refused_with_the_field_named() {
        let cases = [
            (r#"{"source":"a","event_type":"b"}"#, "`payload` is missing"),
            (
                r#"{"source":"a","event_type":"b","payload":null}"#,
                "`payload` is missing",
            ),
            (
                r#"{"source":"a","event_type":" ","payload":{}}"#,
                "`event_type` is empty",
            ),
            (
                r#"{"source":"a","event_type":"b","payload":{},"timestamp":"yesterday"}"#,
                "`timestamp`",
            ),
            (
                r#"{"source":"a","event_type":"b","payload":{},"trace_id":"xyz"}"#,
                "`trace_id`",
            ),
            (
                r#"{"source":"a","event_type":"b","payload":{},"colour":1}"#,
                "unknown field `colour`",
            ),
        ];
        for (body, want) in cases {
            let parsed = parse(body.as_bytes(), &redactor(), now()).unwrap();
            assert!(parsed.records.is_empty(), "{body}");
            assert!(
                parsed.rejected[0].message.contains(want),
                "{body}: {:?}",
                parsed.rejected
            );
        }
        assert!(parse(b"[1]", &redactor(), now()).is_err());
        assert!(parse(b"{\"x\":1}", &redactor(), now()).is_err());
    }

    #[test]
    fn gateway_identity_fields_and_arguments_are_redacted_when_configured() {
        let r = Redactor::new(Mode::Hash { key: b"k".to_vec() }, &["human_id".to_owned()]);
        let mut e: Value = serde_json::from_str(&gateway_event()).unwrap();
        e["arguments"] = serde_json::json!({"to": "+44 20 7946 0958", "n": 3});
        let body = format!(r#"{{"events":[{e}]}}"#);
        let parsed = parse(body.as_bytes(), &r, now()).unwrap();
        let rec = &parsed.records[0].record;
        let human = rec.human.clone().unwrap();
        assert!(human.starts_with("[HASH:field:"), "{human}");
        assert_eq!(
            human,
            r.redact_whole("alice@example.com"),
            "filters can hash the same way"
        );
        assert!(!rec.json.get().contains("alice@") && !rec.json.get().contains("7946"));
        assert_eq!(parsed.redacted, 2);
    }
}
