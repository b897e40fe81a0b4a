//! Audit events and their delivery.
//!
//! The gateway builds an [`AuditEvent`] per decision and hands it to an [`Auditor`], a cheap
//! `Clone` handle whose [`Auditor::emit`] never waits for IO: it serialises the event on the
//! calling thread into a bounded in-memory queue of JSON lines and counts a drop when the queue is
//! full. A writer thread takes the queue in batches and
//!
//! - appends them to a JSON-lines file (one event per line, one write per batch), and/or
//! - appends them to a write-ahead **spool** on disk (fsync per batch), from which a shipper task
//!   POSTs `{"events":[...]}` to the ingest, retrying with backoff until it answers 2xx. A
//!   persisted cursor records what the ingest acknowledged, so a restart resumes where the last
//!   process stopped.
//!
//! Delivery to the ingest is **at-least-once**: a batch whose acknowledgement was lost (timeout,
//! crash between the 2xx and the cursor write) is sent again, and the ingest dedupes on
//! `event_id`. See `docs/audit.md`.

mod event;
mod queue;
mod shipper;
mod spool;
mod writer;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use event::{AuditEvent, Decision, MAX_TEXT_BYTES, capped, next_event_id};
use queue::{Queue, Refused};

/// Default for [`AuditConfig::spool_max_bytes`]: 256 MiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default for [`AuditConfig::segment_max_bytes`]: 8 MiB.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Where audit events go and how. Build with [`AuditConfig::new`], then assign fields.
#[derive(Clone)]
pub struct AuditConfig {
    /// Append every event to this JSON-lines file.
    pub jsonl_path: Option<PathBuf>,
    /// POST batches to this ingest (`http://` or `https://`). Requires `spool_dir`.
    pub ingest_url: Option<http::Uri>,
    /// A private CA trusted for an `https://` ingest, besides the system's roots.
    pub ingest_ca_file: Option<PathBuf>,
    /// Sent as `x-api-key` to the ingest.
    pub api_key: Option<String>,
    /// The write-ahead spool of the ingest sink (created if missing; one process at a time).
    pub spool_dir: PathBuf,
    /// When the spool holds this many bytes, new events are dropped (and counted).
    pub spool_max_bytes: u64,
    /// A spool segment file is closed and a new one started past this size.
    pub segment_max_bytes: u64,
    /// Most events written per batch, and most events per POST.
    pub batch_max_events: usize,
    /// How long the writer waits to fill a batch: the latency added to an event.
    pub flush_interval: Duration,
    /// Most events queued between [`Auditor::emit`] and the writer (and at most 64 MiB of
    /// JSON); beyond it events are dropped and counted.
    pub channel_capacity: usize,
    /// First delay before retrying a failed POST; doubled up to `retry_max_backoff`.
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    /// Timeout of one POST (connect, send, response).
    pub request_timeout: Duration,
}

impl AuditConfig {
    /// No sink yet, the given spool directory and the defaults: 256 MiB spool, 8 MiB segments,
    /// batches of 500 events, 200 ms flush interval, 65 536 queued events, retries from 100 ms
    /// to 5 s, 5 s request timeout.
    pub fn new(spool_dir: impl Into<PathBuf>) -> AuditConfig {
        AuditConfig {
            jsonl_path: None,
            ingest_url: None,
            ingest_ca_file: None,
            api_key: None,
            spool_dir: spool_dir.into(),
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            batch_max_events: 500,
            flush_interval: Duration::from_millis(200),
            channel_capacity: 65_536,
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("jsonl_path", &self.jsonl_path)
            .field("ingest_url", &self.ingest_url)
            .field("ingest_ca_file", &self.ingest_ca_file)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("batch_max_events", &self.batch_max_events)
            .field("flush_interval", &self.flush_interval)
            .field("channel_capacity", &self.channel_capacity)
            .field("retry_initial_backoff", &self.retry_initial_backoff)
            .field("retry_max_backoff", &self.retry_max_backoff)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("no audit sink configured: set jsonl_path and/or ingest_url")]
    NoSink,
    #[error("invalid audit configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid ingest URL {url}: {reason}")]
    InvalidIngestUrl { url: String, reason: &'static str },
    #[error("the ingest sink needs a tokio runtime: call Auditor::start from within one")]
    NoRuntime,
    #[error("audit spool {0} is in use by another auditor")]
    SpoolLocked(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Counters of an [`Auditor`], for metrics. All are totals since start, except the two gauges
/// `spooled_pending` and `spool_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Calls of [`Auditor::emit`].
    pub emitted: u64,
    /// Events lost before reaching a sink: channel full, emitted after shutdown, spool full.
    pub dropped: u64,
    /// Gauge: events in the spool not yet acknowledged by the ingest (recovered ones included).
    pub spooled_pending: u64,
    /// Gauge: bytes of spool segment files on disk.
    pub spool_bytes: u64,
    /// Events acknowledged (2xx) by the ingest; a re-sent batch counts again.
    pub shipped: u64,
    /// POST attempts that failed and will be retried (connection error, timeout, 5xx, 429, ...).
    pub ship_failures: u64,
    /// Events given up on: in batches the ingest rejected with a 4xx, or unreadable in the spool.
    pub skipped: u64,
    /// Events a sink failed to write (IO error on the JSON-lines file or the spool).
    pub write_errors: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    /// Calls of emit that did not reach the queue (no sink, or the event does not serialise);
    /// the queue counts the others under its lock, which emit takes anyway.
    emitted: AtomicU64,
    dropped: AtomicU64,
    spooled_pending: AtomicU64,
    spool_bytes: AtomicU64,
    shipped: AtomicU64,
    ship_failures: AtomicU64,
    skipped: AtomicU64,
    write_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self, queue: Option<&Queue>) -> AuditStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AuditStats {
            emitted: get(&self.emitted) + queue.map_or(0, Queue::emitted),
            dropped: get(&self.dropped),
            spooled_pending: get(&self.spooled_pending),
            spool_bytes: get(&self.spool_bytes),
            shipped: get(&self.shipped),
            ship_failures: get(&self.ship_failures),
            skipped: get(&self.skipped),
            write_errors: get(&self.write_errors),
        }
    }

    /// Counts `n` dropped events, logging the first drop and then one in a thousand.
    fn drop_events(&self, n: u64, why: &'static str) {
        let before = self.dropped.fetch_add(n, Ordering::Relaxed);
        if before == 0 || before / 1000 != (before + n) / 1000 {
            tracing::warn!(dropped_total = before + n, why, "audit events dropped");
        }
    }

    fn sub_saturating(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }
}

/// The handle the gateway emits events through. Cheap to clone; every clone feeds the same sinks.
#[derive(Clone)]
pub struct Auditor {
    /// `None` for [`Auditor::disabled`].
    sender: Option<Arc<Sender>>,
    counters: Arc<Counters>,
}

/// Shared by the clones of an [`Auditor`]: when the last one goes, the queue closes and the
/// writer finishes.
struct Sender {
    queue: Arc<Queue>,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.queue.close();
    }
}

thread_local! {
    /// Where [`Auditor::emit`] serialises, reused from event to event on each thread.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// A line buffer that grew past this (a huge event) is not kept for the next event.
const KEEP_LINE_BYTES: usize = 64 * 1024;

impl Auditor {
    /// Opens the sinks (the JSON-lines file, the spool: recovering what a previous process left),
    /// starts the writer thread and, with an ingest, the shipper task on the current tokio
    /// runtime.
    pub fn start(config: AuditConfig) -> Result<(Auditor, AuditTask), AuditError> {
        if config.jsonl_path.is_none() && config.ingest_url.is_none() {
            return Err(AuditError::NoSink);
        }
        if config.batch_max_events == 0 || config.channel_capacity == 0 {
            return Err(AuditError::InvalidConfig(
                "batch_max_events and channel_capacity must be at least 1".into(),
            ));
        }
        let counters = Arc::new(Counters::default());
        let jsonl = match &config.jsonl_path {
            Some(path) => Some(writer::JsonlSink::open(path)?),
            None => None,
        };
        let mut shipper = None;
        let mut spool_writer = None;
        if let Some(url) = &config.ingest_url {
            let endpoint = shipper::Endpoint::new(
                url,
                config.api_key.as_deref(),
                config.ingest_ca_file.as_deref(),
            )?;
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| AuditError::NoRuntime)?;
            let recovered = spool::Spool::open(&config.spool_dir)?;
            counters
                .spooled_pending
                .store(recovered.pending, Ordering::Relaxed);
            counters
                .spool_bytes
                .store(recovered.bytes, Ordering::Relaxed);
            if recovered.pending > 0 {
                tracing::info!(
                    pending = recovered.pending,
                    spool = %config.spool_dir.display(),
                    "resuming delivery of spooled audit events"
                );
            }
            spool_writer = Some(spool::SpoolWriter::new(
                recovered.spool.clone(),
                recovered.next_seq,
                config.segment_max_bytes,
                config.spool_max_bytes,
                counters.clone(),
            ));
            let task = shipper::Shipper::new(recovered.spool, endpoint, &config, counters.clone());
            shipper = Some(runtime.spawn(task.run(recovered.cursor)));
        }
        let queue = Arc::new(Queue::new(
            config.channel_capacity,
            config.batch_max_events,
            config.flush_interval,
        ));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let writer = writer::Writer {
            queue: queue.clone(),
            jsonl,
            spool: spool_writer,
            counters: counters.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("mcp-audit-writer".into())
            .spawn(move || {
                writer.run();
                let _ = done_tx.send(());
            });
        let thread = match spawned {
            Ok(handle) => handle.thread().clone(),
            Err(source) => {
                if let Some(handle) = shipper {
                    handle.abort();
                }
                return Err(AuditError::Io {
                    path: PathBuf::from("<audit writer thread>"),
                    source,
                });
            }
        };
        let _ = queue.writer.set(thread);
        let auditor = Auditor {
            sender: Some(Arc::new(Sender {
                queue: queue.clone(),
            })),
            counters: counters.clone(),
        };
        let task = AuditTask {
            counters,
            queue,
            writer_done: done_rx,
            shipper,
        };
        Ok((auditor, task))
    }

    /// A handle that discards every event (audit not configured). Only `emitted` is counted.
    pub fn disabled() -> Auditor {
        Auditor {
            sender: None,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Serialises the event (on the calling thread, into a reused buffer) and queues the line
    /// for the sinks. Never waits for the writer nor for IO: when the queue is full, or after
    /// shutdown, the event is dropped and counted in [`AuditStats::dropped`].
    pub fn emit(&self, event: AuditEvent<'_>) {
        let c = &*self.counters;
        let Some(sender) = &self.sender else {
            c.emitted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let queued = LINE
            .try_with(|line| match line.try_borrow_mut() {
                Ok(mut line) => {
                    let queued = serialize_and_push(&sender.queue, &mut line, &event);
                    if line.capacity() > KEEP_LINE_BYTES {
                        *line = Vec::with_capacity(1024);
                    }
                    queued
                }
                // Only if serialising emitted an event itself; never in practice.
                Err(_) => serialize_and_push(&sender.queue, &mut Vec::new(), &event),
            })
            // The thread is exiting and its buffer is gone.
            .unwrap_or_else(|_| serialize_and_push(&sender.queue, &mut Vec::new(), &event));
        if let Err(why) = queued {
            if why == NOT_SERIALIZABLE {
                c.emitted.fetch_add(1, Ordering::Relaxed);
            }
            c.drop_events(1, why);
        }
    }

    pub fn stats(&self) -> AuditStats {
        self.counters
            .snapshot(self.sender.as_ref().map(|s| &*s.queue))
    }
}

const NOT_SERIALIZABLE: &str = "audit event does not serialize";

/// Writes `event` as one JSON line into `line` (cleared first) and queues it (which counts it
/// as emitted, queued or not).
fn serialize_and_push(
    queue: &Queue,
    line: &mut Vec<u8>,
    event: &AuditEvent<'_>,
) -> Result<(), &'static str> {
    line.clear();
    if let Err(e) = event.write_json(line) {
        tracing::warn!(event_id = %event.event_id, error = %e, "audit event does not serialize");
        return Err(NOT_SERIALIZABLE);
    }
    line.push(b'\n');
    queue.push(line).map_err(|refused| match refused {
        Refused::Full => "audit queue full",
        Refused::Closed => "audit is shut down",
    })
}

/// The background work of an [`Auditor`]. Call [`AuditTask::shutdown`] before exiting; dropping
/// it instead leaves the writer and shipper running until the process ends.
pub struct AuditTask {
    counters: Arc<Counters>,
    queue: Arc<Queue>,
    writer_done: tokio::sync::oneshot::Receiver<()>,
    shipper: Option<tokio::task::JoinHandle<()>>,
}

/// What [`AuditTask::shutdown`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The writer wrote, flushed and fsynced every queued event before the deadline.
    pub flushed: bool,
    /// Additionally the ingest acknowledged everything in the spool (always true without ingest).
    pub drained: bool,
    pub stats: AuditStats,
}

impl AuditTask {
    /// Stops accepting events, writes what is queued, flushes and fsyncs the JSON-lines file and
    /// the spool, then lets the shipper send what is left, all within `timeout`. What the ingest
    /// has not acknowledged by then stays in the spool for the next start.
    pub async fn shutdown(mut self, timeout: Duration) -> ShutdownReport {
        let deadline = tokio::time::Instant::now() + timeout;
        self.queue.close();
        let flushed = tokio::time::timeout_at(deadline, &mut self.writer_done)
            .await
            .is_ok();
        if !flushed {
            tracing::warn!("audit writer did not finish before the shutdown deadline");
        }
        let mut drained = true;
        if let Some(mut handle) = self.shipper.take() {
            drained = flushed
                && tokio::time::timeout_at(deadline, &mut handle)
                    .await
                    .is_ok_and(|joined| joined.is_ok());
            if !drained {
                handle.abort();
                let _ = handle.await;
                tracing::warn!(
                    pending = self.counters.spooled_pending.load(Ordering::Relaxed),
                    "audit events left in the spool at shutdown; they are sent after restart"
                );
            }
        }
        ShutdownReport {
            flushed,
            drained,
            stats: self.counters.snapshot(Some(&self.queue)),
        }
    }

    pub fn stats(&self) -> AuditStats {
        self.counters.snapshot(Some(&self.queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(decision: Decision, reason: &'static str) -> AuditEvent<'static> {
        AuditEvent::new("gw", "s", "n", "POST", decision, reason)
    }

    #[test]
    fn emitted_counts_every_call_with_or_without_a_sink() {
        let disabled = Auditor::disabled();
        disabled.emit(event(Decision::Allow, "allowed"));
        assert_eq!(disabled.stats().emitted, 1);

        let dir = std::env::temp_dir().join(format!("mcp-audit-emitted-{}", std::process::id()));
        let mut config = AuditConfig::new(dir.join("spool"));
        config.jsonl_path = Some(dir.join("audit.jsonl"));
        std::fs::create_dir_all(&dir).unwrap();
        let (auditor, task) = Auditor::start(config).unwrap();
        auditor.emit(event(Decision::Allow, "allowed"));
        auditor.clone().emit(event(Decision::Allow, "allowed"));
        assert_eq!(auditor.stats().emitted, 2);
        task.queue.close();
        auditor.emit(event(Decision::Deny, "late"));
        let stats = auditor.stats();
        assert_eq!((stats.emitted, stats.dropped), (3, 1));
        drop(task);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
