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

/// A W3C `traceparent` for a record that carries a trace id (the span is unknown here, so a
/// fixed, valid span id stands in until tracing assigns one).
pub fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-0000000000000001-01")
}

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

    /// Sends every record and waits until the brokers have acknowledged all of them (or one
    /// failed: then the caller answers 503 and the client retries the whole batch, which the
    /// store's dedupe makes harmless).
    pub async fn send(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let value = serde_json::to_vec(r).map_err(|e| StoreError(e.to_string()))?;
            let key = partition_key(r);
            let parent = r.trace_id.as_deref().map(traceparent);
            pending.push(async move {
                let mut headers = OwnedHeaders::new();
                if let Some(parent) = &parent {
                    headers = headers.insert(Header {
                        key: "traceparent",
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

/// Consumes the topic into `store` until `shutdown` resolves; the last partial batch is
/// inserted and committed before returning.
pub async fn run_processor(
    config: KafkaConfig,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<ProcessorTotals, StoreError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .create()
        .map_err(kafka_err("creating the Kafka consumer"))?;
    consumer
        .subscribe(&[&config.topic])
        .map_err(kafka_err("subscribing to the topic"))?;
    tracing::info!(topic = %config.topic, group = %config.group, "processor consuming");
    tokio::pin!(shutdown);
    let mut totals = ProcessorTotals::default();
    let mut batch: Vec<Record> = Vec::with_capacity(config.batch_size);
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
                        Some(Ok(record)) => batch.push(record),
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
            insert_until_stored(&store, &batch, &mut totals, &metrics, stopping).await?;
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
        assert_eq!(
            traceparent(r.trace_id.as_deref().unwrap()),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000001-01"
        );
    }
}
