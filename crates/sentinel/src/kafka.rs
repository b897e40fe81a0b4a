//! The scale path's two ends on Kafka: the ingest's producer and the processor's consumer.
//!
//! Delivery is at-least-once end to end and exactly-once in effect: the producer is idempotent
//! with `acks=all` and the ingest answers only after every record is acknowledged; the
//! processor commits a partition's offsets only after the records before them are in the store,
//! and the store ignores an `event_id` it already holds, so a record read twice (a processor
//! killed between insert and commit, a rebalance) is stored once.
//!
//! Records are keyed by session (else caller, else server), so one session's events stay in
//! one partition, in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use crate::metrics::Metrics;
use mcp_runtime_svc::otel::{Span, SpanContext, SpanKind, Status, Tracer, unix_nanos};

use crate::store::{Record, Store, StoreError};

/// Where the topic is and how the processor batches.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// How long the ingest waits for the brokers to acknowledge a record before answering 503.
    pub delivery_timeout: Duration,
    /// Records per insert.
    pub batch_size: usize,
    /// The longest a record waits in a partial batch.
    pub flush_interval: Duration,
}

fn kafka_err(what: &str) -> impl Fn(rdkafka::error::KafkaError) -> StoreError + '_ {
    move |e| StoreError(format!("{what}: {e}"))
}

/// The partition key: one session's events stay in order on one partition.
pub fn partition_key(r: &Record) -> String {
    if let Some(s) = &r.session {
        return format!("session:{s}");
    }
    match (&r.human, &r.agent) {
        (None, None) => match &r.server {
            Some(server) => format!(
                "server:{}/{server}",
                r.namespace.as_deref().unwrap_or_default()
            ),
            None => format!("event:{}", r.event_id),
        },
        (h, a) => format!(
            "caller:{}/{}",
            h.as_deref().unwrap_or_default(),
            a.as_deref().unwrap_or_default()
        ),
    }
}

/// The header that carries a record's trace context (W3C `traceparent`, as on HTTP).
pub const TRACEPARENT_HEADER: &str = mcp_runtime_svc::otel::TRACEPARENT;

/// The ingest's producer.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl KafkaSink {
    pub fn new(config: &KafkaConfig) -> Result<KafkaSink, StoreError> {
        let timeout_ms = config.delivery_timeout.as_millis().max(1000).to_string();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", &timeout_ms)
            .create()
            .map_err(kafka_err("creating the Kafka producer"))?;
        Ok(KafkaSink {
            producer,
            topic: config.topic.clone(),
            timeout: config.delivery_timeout,
        })
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends every record and waits until the brokers have acknowledged all of them (or one
    /// failed: then the caller answers 503 and the client retries the whole batch, which the
    /// store's dedupe makes harmless). `contexts[i]`, when present, goes into record `i`'s
    /// `traceparent` header: the span the processor's work continues.
    pub async fn send(
        &self,
        records: &[Record],
        contexts: &[Option<SpanContext>],
    ) -> Result<(), StoreError> {
        let mut pending = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let value = serde_json::to_vec(r).map_err(|e| StoreError(e.to_string()))?;
            let key = partition_key(r);
            let parent = contexts.get(i).copied().flatten().map(|c| c.traceparent());
            pending.push(async move {
                let mut headers = OwnedHeaders::new();
                if let Some(parent) = &parent {
                    headers = headers.insert(Header {
                        key: TRACEPARENT_HEADER,
                        value: Some(parent.as_str()),
                    });
                }
                let record = FutureRecord::to(&self.topic)
                    .key(&key)
                    .payload(&value)
                    .headers(headers);
                self.producer
                    .send(record, Timeout::After(self.timeout))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| StoreError(format!("Kafka did not take the event: {e}")))
            });
        }
        for result in futures::future::join_all(pending).await {
            result?;
        }
        Ok(())
    }

    /// Whether the brokers answer (a metadata request); blocking.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.producer
            .client()
            .fetch_metadata(Some(&self.topic), Duration::from_secs(2))
            .map(|_| ())
            .map_err(kafka_err("Kafka"))
    }
}

/// What the processor did, for its log and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessorTotals {
    pub batches: u64,
    pub inserted: u64,
    pub duplicates: u64,
    pub undecodable: u64,
    pub insert_failures: u64,
}

/// The trace context a message carries, if its `traceparent` header is valid and sampled.
pub fn message_parent(message: &impl Message) -> Option<SpanContext> {
    use rdkafka::message::Headers as _;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == TRACEPARENT_HEADER)
        .and_then(|h| h.value)
        .and_then(SpanContext::from_traceparent)
        .filter(|c| c.sampled)
}

/// A `sentinel.process` span waiting for its record's batch to be stored.
struct Processing {
    span: Span,
}

impl Processing {
    fn start(parent: &SpanContext, config: &KafkaConfig, message: &impl Message) -> Processing {
        let span = Span::child_of(
            crate::trace::PROCESS,
            SpanKind::Consumer,
            parent,
            unix_nanos(),
        )
        .with("messaging.system", "kafka")
        .with("messaging.operation.type", "process")
        .with("messaging.destination.name", message.topic())
        .with("messaging.consumer.group.name", config.group.as_str())
        .with(
            "messaging.destination.partition.id",
            message.partition().to_string(),
        )
        .with("messaging.kafka.offset", message.offset());
        Processing { span }
    }
}

/// Consumes the topic into `store` until `shutdown` resolves; the last partial batch is
/// inserted and committed before returning. Messages that carry a sampled trace context get
/// spans (`sentinel.process`, `sentinel.store.insert`) on `tracer`.
pub async fn run_processor(
    config: KafkaConfig,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    tracer: Tracer,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<ProcessorTotals, StoreError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        // librdkafka prefetches up to 64 MiB per partition by default; the processor inserts
        // batches of hundreds, so a few MiB ahead keeps it busy at a fraction of the memory.
        .set("queued.max.messages.kbytes", "4096")
        .create()
        .map_err(kafka_err("creating the Kafka consumer"))?;
    consumer
        .subscribe(&[&config.topic])
        .map_err(kafka_err("subscribing to the topic"))?;
    tracing::info!(topic = %config.topic, group = %config.group, "processor consuming");
    tokio::pin!(shutdown);
    let mut totals = ProcessorTotals::default();
    let mut batch: Vec<Record> = Vec::with_capacity(config.batch_size);
    // The traced records of `batch`.
    let mut traced: Vec<Processing> = Vec::new();
    // The next offset to commit per (topic, partition): one past the last record read.
    let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut oldest: Option<Instant> = None;
    let mut stopping = false;
    loop {
        let wait = match oldest {
            Some(t) => config.flush_interval.saturating_sub(t.elapsed()),
            None => config.flush_interval,
        };
        tokio::select! {
            () = &mut shutdown, if !stopping => stopping = true,
            received = tokio::time::timeout(wait, consumer.recv()), if !stopping => match received {
                Err(_) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading from Kafka");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Ok(message)) => {
                    offsets.insert(
                        (message.topic().to_owned(), message.partition()),
                        message.offset() + 1,
                    );
                    match message.payload().map(serde_json::from_slice::<Record>) {
                        Some(Ok(record)) => {
                            if tracer.enabled()
                                && let Some(parent) = message_parent(&message)
                            {
                                let mut p = Processing::start(&parent, &config, &message);
                                p.span.set("sentinel.event_id", record.event_id.to_string());
                                traced.push(p);
                            }
                            batch.push(record);
                        }
                        other => {
                            // Committed with the rest: a message that can never be decoded
                            // must not stop the partition.
                            totals.undecodable += 1;
                            metrics.processor_undecodable();
                            tracing::warn!(
                                partition = message.partition(),
                                offset = message.offset(),
                                error = ?other.and_then(Result::err).map(|e| e.to_string()),
                                "skipping a message that is not a Sentinel record"
                            );
                        }
                    }
                    oldest.get_or_insert_with(Instant::now);
                }
            },
        }
        let due = oldest.is_some_and(|t| t.elapsed() >= config.flush_interval);
        if !offsets.is_empty() && (batch.len() >= config.batch_size || due || stopping) {
            let insert_start = unix_nanos();
            let inserted =
                insert_until_stored(&store, &batch, &mut totals, &metrics, stopping).await;
            let insert = (insert_start, unix_nanos());
            let mut processed = Vec::with_capacity(traced.len());
            for Processing { mut span } in traced.drain(..) {
                tracer.record(crate::trace::store_insert(
                    &span.context(),
                    store.kind(),
                    batch.len(),
                    insert,
                    inserted.is_err(),
                ));
                if inserted.is_err() {
                    span.status = Status::Error("the store insert failed".into());
                }
                processed.push(span);
            }
            if let Err(e) = inserted {
                let end = unix_nanos();
                for span in processed {
                    tracer.record(span.end_at(end));
                }
                return Err(e);
            }
            let mut list = TopicPartitionList::new();
            for ((topic, partition), next) in &offsets {
                list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                    .map_err(kafka_err("building the offsets"))?;
            }
            if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
                // The records are stored; they will be read again and deduplicated.
                metrics.processor_commit_failed();
                tracing::warn!(error = %e, "committing offsets failed");
            }
            // A record's processing ends once its offset is committed.
            let end = unix_nanos();
            for span in processed {
                tracer.record(span.end_at(end));
            }
            batch.clear();
            offsets.clear();
            oldest = None;
        }
        if stopping {
            tracing::info!(?totals, "processor stopped");
            return Ok(totals);
        }
    }
}

/// Inserts `batch`, retrying with backoff while the store fails: intake pauses meanwhile, so a
/// store outage never loses or skips records (their offsets stay uncommitted). When stopping,
/// one failed attempt ends the run with the error (the offsets stay uncommitted: the records
/// are read again after a restart).
async fn insert_until_stored(
    store: &Arc<dyn Store>,
    batch: &[Record],
    totals: &mut ProcessorTotals,
    metrics: &Metrics,
    stopping: bool,
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut backoff = Duration::from_millis(250);
    loop {
        let store = store.clone();
        let records = batch.to_vec();
        let result = tokio::task::spawn_blocking(move || store.insert(&records))
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        match result {
            Ok(outcome) => {
                metrics.processor_paused(false);
                metrics.processor_stored(&outcome);
                totals.batches += 1;
                totals.inserted += outcome.accepted;
                totals.duplicates += outcome.duplicates;
                return Ok(());
            }
            Err(e) => {
                totals.insert_failures += 1;
                metrics.processor_insert_failed();
                metrics.processor_paused(true);
                tracing::warn!(error = %e, records = batch.len(), retry_in = ?backoff, "store insert failed; intake paused");
                if stopping {
                    return Err(e);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(session: Option<&str>, human: Option<&str>, server: Option<&str>) -> Record {
        Record {
            event_id: uuid::Uuid::new_v4(),
            time: jiff::Timestamp::UNIX_EPOCH,
            arrival_time: false,
            source: "gw".into(),
            event_type: "mcp.request".into(),
            trace_id: None,
            server: server.map(Into::into),
            namespace: Some("ns".into()),
            team: None,
            human: human.map(Into::into),
            agent: None,
            session: session.map(Into::into),
            tool: None,
            decision: None,
            reason: None,
            count: 1,
            json: serde_json::value::to_raw_value(&serde_json::json!({})).unwrap(),
        }
    }

    #[test]
    fn a_session_keeps_one_key_whatever_else_changes() {
        let a = record(Some("s1"), Some("alice"), Some("x"));
        let b = record(Some("s1"), Some("bob"), Some("y"));
        assert_eq!(partition_key(&a), partition_key(&b));
        assert_eq!(partition_key(&a), "session:s1");
        assert_eq!(
            partition_key(&record(None, Some("alice"), Some("x"))),
            "caller:alice/"
        );
        assert_eq!(partition_key(&record(None, None, Some("x"))), "server:ns/x");
        let lone = record(None, None, None);
        assert_eq!(partition_key(&lone), format!("event:{}", lone.event_id));
    }

    #[test]
    fn a_record_survives_the_trip_through_json() {
        let mut r = record(Some("s"), Some("h"), Some("x"));
        r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        let back: Record = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back.event_id, r.event_id);
        assert_eq!(back.session, r.session);
        assert_eq!(back.json.get(), "{}");
    }

    #[test]
    fn a_message_continues_only_a_valid_sampled_traceparent() {
        use rdkafka::message::{OwnedMessage, Timestamp};
        let message = |value: Option<&str>| {
            let headers = value.map(|v| {
                OwnedHeaders::new().insert(Header {
                    key: TRACEPARENT_HEADER,
                    value: Some(v),
                })
            });
            OwnedMessage::new(
                None,
                None,
                "t".into(),
                Timestamp::NotAvailable,
                0,
                0,
                headers,
            )
        };
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = message_parent(&message(Some(sampled))).unwrap();
        assert_eq!(parent.traceparent().as_str(), sampled);
        assert_eq!(message_parent(&message(None)), None);
        assert_eq!(
            message_parent(&message(Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
            ))),
            None
        );
        assert_eq!(message_parent(&message(Some("00-xyz"))), None);
    }
}
