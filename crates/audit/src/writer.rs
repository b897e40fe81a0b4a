//! The writer thread: takes batches of JSON lines from the queue and writes each batch to the
//! JSON-lines file and the spool. It runs on its own OS thread because it does blocking file IO
//! (an fsync per batch for the spool), which must not stall the gateway's async runtime.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::queue::{self, Queue};
use crate::spool::SpoolWriter;
use crate::{AuditError, Counters};

pub(crate) struct JsonlSink {
    path: PathBuf,
    file: File,
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
            file,
        })
    }

    /// One `write` for the whole batch (the file is opened for appending, so the batch lands
    /// after whatever another writer appended).
    fn write_batch(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.file.write_all(lines)
    }

    fn close(self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

pub(crate) struct Writer {
    pub(crate) queue: Arc<Queue>,
    pub(crate) jsonl: Option<JsonlSink>,
    pub(crate) spool: Option<SpoolWriter>,
    pub(crate) counters: Arc<Counters>,
}

impl Writer {
    /// Runs until the queue is closed (shutdown, or every [`crate::Auditor`] dropped) and
    /// empty, then closes the sinks.
    pub(crate) fn run(mut self) {
        let mut batch = Vec::new();
        while let Some(events) = self.queue.next_batch(&mut batch) {
            self.write_batch(&batch, events);
            batch.clear();
            queue::trim(&mut batch);
        }
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

    /// Writes `events` JSON lines (each ending in `\n`) to every sink.
    fn write_batch(&mut self, lines: &[u8], events: usize) {
        if let Some(sink) = &mut self.jsonl
            && let Err(e) = sink.write_batch(lines)
        {
            tracing::warn!(path = %sink.path.display(), error = %e, events, "writing the audit JSON-lines file");
            self.counters
                .write_errors
                .fetch_add(events as u64, Ordering::Relaxed);
        }
        if let Some(spool) = &mut self.spool {
            spool.append(lines);
        }
    }
}
