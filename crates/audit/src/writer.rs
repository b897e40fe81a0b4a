//! The writer thread: takes events from the channel in batches and writes each batch to the
//! JSON-lines file and the spool. It runs on its own OS thread because it does blocking file IO
//! (an fsync per batch), which must not stall the gateway's async runtime.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use crate::spool::SpoolWriter;
use crate::{AuditError, AuditEvent, Counters};

/// How often an idle writer looks whether shutdown was requested.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// How often a lingering writer drains the channel while it builds a batch.
const LINGER_TICK: Duration = Duration::from_millis(10);

pub(crate) struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlSink {
    pub(crate) fn open(path: &Path) -> Result<JsonlSink, AuditError> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(JsonlSink {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 * 1024, file),
        })
    }

    fn write_batch(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        for line in lines {
            self.out.write_all(line)?;
        }
        self.out.flush()
    }

    fn close(mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

pub(crate) struct Writer {
    pub(crate) rx: Receiver<Box<AuditEvent>>,
    pub(crate) jsonl: Option<JsonlSink>,
    pub(crate) spool: Option<SpoolWriter>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) batch_max_events: usize,
    pub(crate) flush_interval: Duration,
}

impl Writer {
    /// Runs until shutdown is requested or every [`crate::Auditor`] is dropped, then writes
    /// what is still queued and closes the sinks.
    pub(crate) fn run(mut self) {
        let mut batch = Vec::with_capacity(self.batch_max_events.min(4096));
        loop {
            if self.counters.closing.load(Ordering::SeqCst) {
                break;
            }
            let first = match self.rx.recv_timeout(IDLE_TICK.min(self.flush_interval)) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            batch.push(first);
            // Linger up to flush_interval to make a batch: one write and one fsync for many
            // events. The writer sleeps rather than waits on the channel meanwhile, so emitters
            // never wake it per event (a context switch per event costs the proxy a quarter of
            // its throughput on two cores); it drains what accumulated on each tick.
            let until = Instant::now() + self.flush_interval;
            loop {
                let mut disconnected = false;
                while batch.len() < self.batch_max_events {
                    match self.rx.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            disconnected = true;
                            break;
                        }
                    }
                }
                if disconnected
                    || batch.len() >= self.batch_max_events
                    || self.counters.closing.load(Ordering::Relaxed)
                {
                    break;
                }
                let Some(left) = until.checked_duration_since(Instant::now()) else {
                    break;
                };
                std::thread::sleep(left.min(LINGER_TICK));
            }
            self.write_batch(&mut batch);
        }
        // Emitters that passed their `closing` check before it was set may still be sending:
        // wait for them (they never block), then everything they sent is in the channel.
        while self.counters.in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
        loop {
            while batch.len() < self.batch_max_events {
                match self.rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            self.write_batch(&mut batch);
        }
        // Anything sent from now on fails with `Disconnected` and is counted as dropped.
        drop(self.rx);
        if let Some(sink) = self.jsonl.take() {
            let path = sink.path.clone();
            if let Err(e) = sink.close() {
                tracing::warn!(path = %path.display(), error = %e, "closing the audit JSON-lines file");
            }
        }
        if let Some(spool) = self.spool.take() {
            spool.close();
        }
    }

    #[expect(clippy::vec_box, reason = "the events arrive boxed from the channel")]
    fn write_batch(&mut self, batch: &mut Vec<Box<AuditEvent>>) {
        let mut lines = Vec::with_capacity(batch.len());
        for event in batch.drain(..) {
            match serde_json::to_vec(&event) {
                Ok(mut line) => {
                    line.push(b'\n');
                    lines.push(line);
                }
                Err(e) => {
                    tracing::warn!(event_id = %event.event_id, error = %e, "audit event does not serialize");
                    self.counters
                        .drop_events(1, "audit event does not serialize");
                }
            }
        }
        if let Some(sink) = &mut self.jsonl
            && let Err(e) = sink.write_batch(&lines)
        {
            tracing::warn!(path = %sink.path.display(), error = %e, events = lines.len(), "writing the audit JSON-lines file");
            self.counters
                .write_errors
                .fetch_add(lines.len() as u64, Ordering::Relaxed);
        }
        if let Some(spool) = &mut self.spool {
            spool.append(&lines);
        }
    }
}
