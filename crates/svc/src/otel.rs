//! Distributed tracing without an SDK: W3C trace context (`traceparent`), spans, a sampler, and
//! an exporter that posts finished spans to an OpenTelemetry collector as OTLP/HTTP JSON
//! ([`export`]).
//!
//! The servers record a handful of spans per traced request (the gateway one, Sentinel one per
//! hop), so a full SDK buys little: this module is the part of one the project uses. Nothing
//! here blocks or allocates for a request that is not traced; a traced request's spans go to a
//! bounded queue, and when it is full they are dropped and counted, never waited for.
//!
//! Ids are random, not secret: a caller that knows a trace id learns nothing but that id.

pub mod export;

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::time::{SystemTime, UNIX_EPOCH};

pub use export::{ExportConfig, ExportTask, OtelError, TraceStats, Tracer};

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// Lowercase hexadecimal text held on the stack (`N` digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl<const N: usize> std::fmt::Display for Hex<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> std::fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

fn encode<const B: usize, const N: usize>(bytes: &[u8; B]) -> Hex<N> {
    debug_assert_eq!(N, 2 * B);
    let mut out = [0u8; N];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    Hex(out)
}

/// Lowercase hex digits only (the trace context's grammar: uppercase is invalid).
fn decode<const B: usize>(text: &[u8]) -> Option<[u8; B]> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if text.len() != 2 * B {
        return None;
    }
    let mut out = [0u8; B];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// A trace id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// A fresh random id.
    pub fn random() -> TraceId {
        loop {
            let (a, b) = (random_u64(), random_u64());
            if a | b != 0 {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&a.to_be_bytes());
                bytes[8..].copy_from_slice(&b.to_be_bytes());
                return TraceId(bytes);
            }
        }
    }

    /// 32 lowercase hex digits, not all zero.
    pub fn from_hex(text: &str) -> Option<TraceId> {
        decode::<16>(text.as_bytes())
            .filter(|b| b.iter().any(|&x| x != 0))
            .map(TraceId)
    }

    pub fn to_hex(self) -> Hex<32> {
        encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The last 8 bytes, which a ratio sampler compares with its threshold.
    fn low_u64(self) -> u64 {
        u64::from_be_bytes(self.0[8..].try_into().expect("8 bytes"))
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}

/// A span id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl SpanId {
    /// A fresh random id.
    pub fn random() -> SpanId {
        loop {
            let n = random_u64();
            if n != 0 {
                return SpanId(n.to_be_bytes());
            }
        }
    }

    /// 16 lowercase hex digits, not all zero.
    pub fn from_hex(text: &str) -> Option<SpanId> {
        decode::<8>(text.as_bytes())
            .filter(|b| b.iter().any(|&x| x != 0))
            .map(SpanId)
    }

    pub fn to_hex(self) -> Hex<16> {
        encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl std::fmt::Debug for SpanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpanId({})", self.to_hex())
    }
}

/// Where a span sits in a trace, as a `traceparent` carries it: the trace, the span, and whether
/// the trace is sampled (recorded) upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl SpanContext {
    /// Reads a `traceparent` value (W3C Trace Context level 1): `00-<32 hex>-<16 hex>-<2 hex>`.
    /// A later version is read by its first four fields, as the recommendation asks; version
    /// `ff`, uppercase hex, all-zero ids or a wrong length are refused (`None`: the request is
    /// then treated as carrying no context).
    pub fn from_traceparent(value: &[u8]) -> Option<SpanContext> {
        if value.len() < 55 {
            return None;
        }
        let version = decode::<1>(&value[..2])?[0];
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        if value.len() > 55 && value[55] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = decode::<16>(&value[3..35]).filter(|b| b.iter().any(|&x| x != 0))?;
        let span_id = decode::<8>(&value[36..52]).filter(|b| b.iter().any(|&x| x != 0))?;
        let flags = decode::<1>(&value[53..55])?[0];
        Some(SpanContext {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` value naming this span as the parent (version 00).
    pub fn traceparent(&self) -> Hex<55> {
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        out[3..35].copy_from_slice(&self.trace_id.to_hex().0);
        out[36..52].copy_from_slice(&self.span_id.to_hex().0);
        out[53..55].copy_from_slice(if self.sampled { b"01" } else { b"00" });
        Hex(out)
    }
}

/// Which traces without a sampled parent are recorded: a fixed share, decided on the trace id
/// (so every service with the same ratio takes the same decision for a trace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampler {
    /// A trace is sampled when its id's last 8 bytes are below this; `u64::MAX` samples all.
    threshold: u64,
}

/// Records none of them.
impl Default for Sampler {
    fn default() -> Sampler {
        Sampler::NEVER
    }
}

impl Sampler {
    /// Records none of them.
    pub const NEVER: Sampler = Sampler { threshold: 0 };

    /// Records `ratio` of them (0 none, 1 all; out-of-range and NaN are clamped).
    pub fn ratio(ratio: f64) -> Sampler {
        let threshold = if ratio.is_nan() || ratio <= 0.0 {
            0
        } else if ratio >= 1.0 {
            u64::MAX
        } else {
            // Exact enough: a share, not a count.
            (ratio * u64::MAX as f64) as u64
        };
        Sampler { threshold }
    }

    /// Whether this sampler ever starts a trace.
    pub fn starts_traces(self) -> bool {
        self.threshold > 0
    }

    pub fn samples(self, trace_id: TraceId) -> bool {
        self.threshold == u64::MAX || trace_id.low_u64() < self.threshold
    }
}

/// How a span relates to the work around it (OTLP's `SpanKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    /// Handles a request from a remote client.
    Server,
    /// Sends a request to a remote server.
    Client,
    /// Hands a message to a broker for later processing.
    Producer,
    /// Processes a message a producer sent.
    Consumer,
}

impl SpanKind {
    /// The OTLP enum value.
    pub const fn otlp(self) -> u8 {
        match self {
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Value {
        Value::Int(i64::from(n))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// How a span ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Unset,
    Ok,
    /// Failed, with a description (no request data in it: spans leave the process).
    Error(String),
}

/// A finished span, ready to export.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for the root of a trace.
    pub parent: Option<SpanId>,
    pub name: &'static str,
    pub kind: SpanKind,
    /// Unix time in nanoseconds.
    pub start: u64,
    pub end: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// Spans of other traces (or of this one) this span relates to without being their child.
    pub links: Vec<SpanContext>,
    pub status: Status,
}

impl Span {
    /// A span of `trace_id` with a fresh id, started at `start` and, until [`Span::end_at`],
    /// ended then too.
    pub fn new(
        name: &'static str,
        kind: SpanKind,
        trace_id: TraceId,
        parent: Option<SpanId>,
        start: u64,
    ) -> Span {
        Span {
            trace_id,
            span_id: SpanId::random(),
            parent,
            name,
            kind,
            start,
            end: start,
            attributes: Vec::new(),
            links: Vec::new(),
            status: Status::Unset,
        }
    }

    /// A new span whose parent is the span `parent` names.
    pub fn child_of(name: &'static str, kind: SpanKind, parent: &SpanContext, start: u64) -> Span {
        Span::new(name, kind, parent.trace_id, Some(parent.span_id), start)
    }

    /// This span as the parent of the next hop (sampled: it is being recorded).
    pub fn context(&self) -> SpanContext {
        SpanContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: true,
        }
    }

    #[must_use]
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Span {
        self.attributes.push((key, value.into()));
        self
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.attributes.push((key, value.into()));
    }

    #[must_use]
    pub fn end_at(mut self, end: u64) -> Span {
        self.end = end.max(self.start);
        self
    }
}

/// Now, in nanoseconds since the Unix epoch (what spans record).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A bijection of `u64` (the SplitMix64 finaliser).
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

thread_local! {
    /// This thread's SplitMix64 state, seeded from the OS-keyed `RandomState`, the clock and the
    /// thread: ids need to be unique and evenly spread (the sampler reads them), not secret.
    static RANDOM: Cell<u64> = Cell::new({
        let mut h = RandomState::new().build_hasher();
        h.write_u64(unix_nanos());
        h.write(format!("{:?}", std::thread::current().id()).as_bytes());
        h.finish()
    });
}

fn random_u64() -> u64 {
    RANDOM.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        mix64(next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_reads_and_writes_the_w3c_example() {
        let ctx = SpanContext::from_traceparent(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            ctx.trace_id.to_hex().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(ctx.span_id.to_hex().as_str(), "00f067aa0ba902b7");
        assert!(ctx.sampled);
        assert_eq!(ctx.traceparent().as_str(), EXAMPLE);
        let unsampled = SpanContext::from_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )
        .unwrap();
        assert!(!unsampled.sampled);
        assert!(unsampled.traceparent().as_str().ends_with("-00"));
        // Other flag bits do not make a trace sampled or unsampled.
        assert!(
            SpanContext::from_traceparent(
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
            )
            .unwrap()
            .sampled
        );
    }

    #[test]
    fn a_later_version_is_read_by_its_known_fields() {
        let v = b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let ctx = SpanContext::from_traceparent(v).unwrap();
        assert!(ctx.sampled);
        assert_eq!(ctx.traceparent().as_str(), EXAMPLE);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        let bad: &[&str] = &[
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            // Version 00 is exactly 55 characters.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x",
            "\u{e9}0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ];
        for v in bad {
            assert_eq!(SpanContext::from_traceparent(v.as_bytes()), None, "{v:?}");
        }
    }

    #[test]
    fn ids_are_random_nonzero_and_round_trip_through_hex() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let t = TraceId::random();
            let s = SpanId::random();
            assert_eq!(TraceId::from_hex(t.to_hex().as_str()), Some(t));
            assert_eq!(SpanId::from_hex(s.to_hex().as_str()), Some(s));
            assert!(seen.insert(s), "span id repeated");
        }
        assert_eq!(TraceId::from_hex(&"0".repeat(32)), None);
        assert_eq!(SpanId::from_hex("00f067aa0ba902b"), None);
        // Ids from different threads differ too.
        let other = std::thread::spawn(SpanId::random).join().unwrap();
        assert!(!seen.contains(&other));
    }

    #[test]
    fn the_ratio_sampler_keeps_about_its_share() {
        assert!(!Sampler::NEVER.starts_traces());
        assert!(!Sampler::ratio(0.0).samples(TraceId::random()));
        assert!(!Sampler::ratio(f64::NAN).starts_traces());
        let all = Sampler::ratio(1.0);
        assert!((0..1000).all(|_| all.samples(TraceId::random())));
        let tenth = Sampler::ratio(0.1);
        let kept = (0..100_000)
            .filter(|_| tenth.samples(TraceId::random()))
            .count();
        assert!((9_000..11_000).contains(&kept), "{kept}");
        // The decision depends on the trace id alone.
        let t = TraceId::random();
        assert_eq!(tenth.samples(t), Sampler::ratio(0.1).samples(t));
    }

    #[test]
    fn spans_end_no_earlier_than_they_start() {
        let parent = SpanContext::from_traceparent(EXAMPLE.as_bytes()).unwrap();
        let s = Span::child_of("x", SpanKind::Server, &parent, 100)
            .with("k", "v")
            .end_at(50);
        assert_eq!((s.start, s.end), (100, 100));
        assert_eq!(s.parent, Some(parent.span_id));
        assert_eq!(s.trace_id, parent.trace_id);
        assert_eq!(s.context().trace_id, parent.trace_id);
        assert_ne!(s.span_id, parent.span_id);
    }
}
