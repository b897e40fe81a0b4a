//! The write-ahead spool of the ingest sink.
//!
//! Layout of `spool_dir`:
//! - `<seq>.jsonl` segment files (`seq` zero-padded to 20 digits, increasing), one event per line;
//!   the writer appends to the newest and starts a new one past `segment_max_bytes`, and a new
//!   one at each start (the last one of a crashed process may end with a torn line);
//! - `cursor.json` — `{"segment":N,"offset":M}`: everything before byte `M` of segment `N`, and
//!   every older segment, was acknowledged by the ingest. Replaced atomically (write, fsync,
//!   rename) after each acknowledged batch;
//! - `lock` — held (`flock`) by the process using the spool.
//!
//! The writer thread appends and the shipper task reads; they share the list of live segments
//! with their committed (fsynced) length, and the shipper never reads past it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{AuditError, Counters};

const CURSOR_FILE: &str = "cursor.json";
const LOCK_FILE: &str = "lock";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// A position in the spool: byte `offset` of segment `segment`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    seq: u64,
    /// Bytes known to be complete lines on disk (fsynced by this process, or found at start).
    len: u64,
}

#[derive(Default)]
struct State {
    /// Live segments, oldest first; the writer appends to the last one.
    segments: VecDeque<Segment>,
    writer_done: bool,
}

pub(crate) struct Spool {
    dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the shipper when the writer committed events or finished.
    pub(crate) notify: Notify,
    _lock: File,
}

pub(crate) struct Recovered {
    pub(crate) spool: Arc<Spool>,
    pub(crate) cursor: Cursor,
    pub(crate) next_seq: u64,
    /// Events after the cursor (lines), and bytes of the live segments.
    pub(crate) pending: u64,
    pub(crate) bytes: u64,
}

/// What the shipper finds at its position.
pub(crate) enum Next {
    /// Events to send; on acknowledgement the position becomes `next`.
    Batch {
        body: Bytes,
        events: u64,
        /// Lines that are not JSON (a torn tail after a crash): skipped, not sent.
        invalid: u64,
        next: Cursor,
    },
    /// The position is at the end of a segment that will not grow: go to the next one.
    SegmentDone(u64),
    /// Everything committed was read; `writer_done` when nothing more will come.
    CaughtUp { writer_done: bool },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
}

/// Makes a new or renamed directory entry durable (best effort: not every platform can).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn count_lines(path: &Path, from: u64) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let read = file.read(&mut buf)?;
        if read == 0 {
            return Ok(n);
        }
        n += buf[..read].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

impl Spool {
    /// Opens (creating) the spool directory, takes its lock and recovers the segments and the
    /// cursor a previous process left. Segments entirely before the cursor are deleted.
    pub(crate) fn open(dir: &Path) -> Result<Recovered, AuditError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::SpoolLocked(dir.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }

        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();

        let cursor_path = dir.join(CURSOR_FILE);
        let stored = match std::fs::read(&cursor_path) {
            Ok(bytes) => match serde_json::from_slice::<Cursor>(&bytes) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(path = %cursor_path.display(), error = %e,
                        "unreadable audit spool cursor: resending the whole spool");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&cursor_path)(e)),
        };

        let mut segments = VecDeque::new();
        let mut cursor = Cursor::default();
        let mut pending = 0;
        let mut bytes = 0;
        for &seq in &seqs {
            let path = dir.join(segment_name(seq));
            if stored.is_some_and(|c| seq < c.segment) {
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
            let mut from = 0;
            if segments.is_empty() {
                cursor = Cursor {
                    segment: seq,
                    offset: 0,
                };
                if let Some(c) = stored.filter(|c| c.segment == seq) {
                    if c.offset <= len {
                        cursor.offset = c.offset;
                        from = c.offset;
                    } else {
                        tracing::warn!(
                            segment = seq,
                            offset = c.offset,
                            len,
                            "audit spool cursor is past the end of its segment: resending it"
                        );
                    }
                }
            }
            pending += count_lines(&path, from).map_err(io_err(&path))?;
            bytes += len;
            segments.push_back(Segment { seq, len });
        }
        let last = seqs.last().copied().unwrap_or(0);
        let next_seq = last.max(stored.map_or(0, |c| c.segment)) + 1;
        let spool = Spool {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                segments,
                writer_done: false,
            }),
            notify: Notify::new(),
            _lock: lock,
        };
        Ok(Recovered {
            spool: Arc::new(spool),
            cursor,
            next_seq,
            pending,
            bytes,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (plain field updates), so ignore poisoning.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(segment_name(seq))
    }

    /// Reads up to `max_events` lines (and about `max_bytes`) from `pos`, as the JSON body
    /// `{"events":[...]}`.
    pub(crate) fn read(
        &self,
        pos: Cursor,
        max_events: usize,
        max_bytes: usize,
    ) -> std::io::Result<Next> {
        let (seg, is_last, writer_done) = {
            let state = self.state();
            let Some(front) = state.segments.front().copied() else {
                return Ok(Next::CaughtUp {
                    writer_done: state.writer_done,
                });
            };
            (front, state.segments.len() == 1, state.writer_done)
        };
        let start = if pos.segment == seg.seq {
            pos.offset
        } else {
            0
        };
        if start >= seg.len {
            return Ok(if is_last {
                Next::CaughtUp { writer_done }
            } else {
                Next::SegmentDone(seg.seq)
            });
        }
        let mut file = File::open(self.segment_path(seg.seq))?;
        file.seek(SeekFrom::Start(start))?;
        let mut reader = BufReader::new(file.take(seg.len - start));
        let mut body = Vec::with_capacity(max_bytes.min(1 << 20));
        body.extend_from_slice(br#"{"events":["#);
        let mut line = Vec::new();
        let (mut events, mut invalid, mut offset) = (0u64, 0u64, start);
        while (events as usize) < max_events && (events == 0 || body.len() < max_bytes) {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            let json = line.strip_suffix(b"\n").unwrap_or(&line);
            if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err() {
                tracing::warn!(
                    segment = seg.seq,
                    offset = offset - n as u64,
                    "skipping an unreadable line of the audit spool"
                );
                invalid += 1;
                continue;
            }
            if events > 0 {
                body.push(b',');
            }
            body.extend_from_slice(json);
            events += 1;
        }
        body.extend_from_slice(b"]}");
        Ok(Next::Batch {
            body: Bytes::from(body),
            events,
            invalid,
            next: Cursor {
                segment: seg.seq,
                offset,
            },
        })
    }

    /// Moves past segment `seq` (fully acknowledged, not the last): persists the cursor at the
    /// start of the next segment, deletes the file. Returns the new position and the bytes freed.
    pub(crate) fn finish_segment(&self, seq: u64) -> std::io::Result<(Cursor, u64)> {
        let (done, next) = {
            let mut state = self.state();
            match (
                state.segments.front().copied(),
                state.segments.get(1).copied(),
            ) {
                (Some(front), Some(next)) if front.seq == seq => {
                    state.segments.pop_front();
                    (front, next)
                }
                _ => return Err(std::io::Error::other("spool segment is not finished")),
            }
        };
        let cursor = Cursor {
            segment: next.seq,
            offset: 0,
        };
        self.write_cursor(cursor)?;
        std::fs::remove_file(self.segment_path(done.seq))?;
        Ok((cursor, done.len))
    }

    /// Persists the cursor atomically: write a temporary file, fsync, rename over the old one.
    pub(crate) fn write_cursor(&self, cursor: Cursor) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{CURSOR_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(&cursor).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, self.dir.join(CURSOR_FILE))
    }

    fn set_writer_done(&self) {
        self.state().writer_done = true;
        self.notify.notify_one();
    }
}

/// The writer thread's side of the spool.
pub(crate) struct SpoolWriter {
    spool: Arc<Spool>,
    /// The segment being appended to, with its committed length; `None` before the first write
    /// and after a write error (the next write starts a new segment).
    file: Option<File>,
    len: u64,
    next_seq: u64,
    segment_max_bytes: u64,
    spool_max_bytes: u64,
    counters: Arc<Counters>,
    /// What the current append commits, reused from batch to batch.
    buf: Vec<u8>,
}

impl SpoolWriter {
    pub(crate) fn new(
        spool: Arc<Spool>,
        next_seq: u64,
        segment_max_bytes: u64,
        spool_max_bytes: u64,
        counters: Arc<Counters>,
    ) -> SpoolWriter {
        SpoolWriter {
            spool,
            file: None,
            len: 0,
            next_seq,
            segment_max_bytes,
            spool_max_bytes,
            counters,
            buf: Vec::new(),
        }
    }

    /// Appends the lines (each ending in `\n`) and fsyncs. Lines that would take the spool past
    /// `spool_max_bytes` are dropped and counted.
    pub(crate) fn append(&mut self, lines: &[u8]) {
        let used = self.counters.spool_bytes.load(Ordering::Relaxed);
        let mut room = self.spool_max_bytes.saturating_sub(used);
        let mut buf = std::mem::take(&mut self.buf);
        let mut n = 0u64;
        let mut rest = lines;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            let (line, after) = rest.split_at(end);
            let size = line.len() as u64;
            if size > room {
                self.counters.drop_events(1, "audit spool full");
                rest = after;
                continue;
            }
            let full = self.len + buf.len() as u64 + size > self.segment_max_bytes
                && self.len + buf.len() as u64 > 0;
            if self.file.is_none() || full {
                if n > 0 {
                    self.commit(&mut buf, n);
                    n = 0;
                }
                if let Err(e) = self.rotate() {
                    tracing::warn!(dir = %self.spool.dir.display(), error = %e,
                        "cannot create an audit spool segment");
                    let lost = rest.iter().filter(|&&b| b == b'\n').count().max(1) as u64;
                    self.counters
                        .write_errors
                        .fetch_add(lost, Ordering::Relaxed);
                    buf.clear();
                    self.buf = buf;
                    return;
                }
            }
            buf.extend_from_slice(line);
            room -= size;
            n += 1;
            rest = after;
        }
        if n > 0 {
            self.commit(&mut buf, n);
        }
        crate::queue::trim(&mut buf);
        self.buf = buf;
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(old) = self.file.take() {
            old.sync_all()?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let file = File::options()
            .create_new(true)
            .append(true)
            .open(self.spool.segment_path(seq))?;
        sync_dir(&self.spool.dir);
        self.spool
            .state()
            .segments
            .push_back(Segment { seq, len: 0 });
        self.file = Some(file);
        self.len = 0;
        Ok(())
    }

    /// Writes and fsyncs `buf` (`n` events), then publishes the new length to the shipper.
    fn commit(&mut self, buf: &mut Vec<u8>, n: u64) {
        let Some(file) = &mut self.file else { return };
        let written = file.write_all(buf).and_then(|()| file.sync_data());
        if let Err(e) = written {
            tracing::warn!(dir = %self.spool.dir.display(), error = %e, events = n,
                "writing the audit spool");
            self.counters.write_errors.fetch_add(n, Ordering::Relaxed);
            // Cut the partial write (best effort; a torn line is skipped when read) and start a
            // new segment next time.
            let _ = file.set_len(self.len);
            self.file = None;
            buf.clear();
            return;
        }
        let bytes = buf.len() as u64;
        self.len += bytes;
        buf.clear();
        if let Some(last) = self.spool.state().segments.back_mut() {
            last.len = self.len;
        }
        self.counters
            .spool_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        self.counters
            .spooled_pending
            .fetch_add(n, Ordering::Relaxed);
        self.spool.notify.notify_one();
    }

    /// Called when the writer stops: everything is already fsynced; tell the shipper.
    pub(crate) fn close(self) {
        self.spool.set_writer_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "mcp-audit-unit-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn recovery_resumes_at_the_cursor_and_skips_a_torn_tail() {
        let dir = temp_dir("recover");
        // Segment 1 was fully shipped (the cursor is past it), segment 2 half, then a crash
        // left a torn line at the end of segment 3.
        std::fs::write(dir.join(segment_name(1)), "{\"n\":0}\n").unwrap();
        std::fs::write(dir.join(segment_name(2)), "{\"n\":1}\n{\"n\":2}\n").unwrap();
        std::fs::write(dir.join(segment_name(3)), "{\"n\":3}\n{\"n\":4").unwrap();
        std::fs::write(dir.join(CURSOR_FILE), r#"{"segment":2,"offset":8}"#).unwrap();

        let r = Spool::open(&dir).unwrap();
        assert!(
            !dir.join(segment_name(1)).exists(),
            "segments before the cursor are deleted"
        );
        assert_eq!(
            r.cursor,
            Cursor {
                segment: 2,
                offset: 8
            }
        );
        assert_eq!((r.pending, r.next_seq), (2, 4));
        assert!(matches!(Spool::open(&dir), Err(AuditError::SpoolLocked(_))));

        let Next::Batch {
            body,
            events,
            invalid,
            next,
        } = r.spool.read(r.cursor, 10, 1 << 20).unwrap()
        else {
            panic!("a batch")
        };
        assert_eq!(
            (&body[..], events, invalid),
            (&br#"{"events":[{"n":2}]}"#[..], 1, 0)
        );
        assert!(matches!(
            r.spool.read(next, 10, 1 << 20).unwrap(),
            Next::SegmentDone(2)
        ));
        let (pos, freed) = r.spool.finish_segment(2).unwrap();
        assert_eq!(
            (pos, freed),
            (
                Cursor {
                    segment: 3,
                    offset: 0
                },
                16
            )
        );
        assert!(!dir.join(segment_name(2)).exists());
        let stored: Cursor =
            serde_json::from_slice(&std::fs::read(dir.join(CURSOR_FILE)).unwrap()).unwrap();
        assert_eq!(stored, pos);

        let Next::Batch {
            body,
            events,
            invalid,
            next,
        } = r.spool.read(pos, 10, 1 << 20).unwrap()
        else {
            panic!("a batch")
        };
        assert_eq!(
            (&body[..], events, invalid),
            (&br#"{"events":[{"n":3}]}"#[..], 1, 1)
        );
        assert!(matches!(
            r.spool.read(next, 10, 1 << 20).unwrap(),
            Next::CaughtUp { writer_done: false }
        ));
        drop(r);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
