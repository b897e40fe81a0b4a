//! The queue between [`crate::Auditor::emit`] and the writer thread.
//!
//! Emitters serialise their event on their own thread and append the JSON line to one shared
//! buffer; the writer swaps that buffer for its empty one when a batch is due and writes it with
//! one call per sink. So an event costs no allocation once the buffers have grown (they are
//! reused), and the lock is held only to copy a line or to swap two buffers.
//!
//! The writer sleeps while it lingers over a batch. An emitter wakes it only when its line is the
//! first of a batch (an idle writer then starts the `flush_interval` clock) or fills the batch to
//! `batch_max_events`: twice per batch at most, never per event.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle writer sleeps before looking again (it is woken by the first event).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Upper bound on the queued JSON, whatever the event count: a few events with huge captured
/// arguments must not take the memory of `channel_capacity` ordinary ones.
pub(crate) const MAX_QUEUED_BYTES: usize = 64 << 20;

/// A reused buffer that grew past this (a burst, a huge event) is given back to the allocator.
const KEEP_BYTES: usize = 1 << 20;

pub(crate) struct Queue {
    pending: Mutex<Pending>,
    /// The writer thread, woken by emitters; set right after it is spawned.
    pub(crate) writer: OnceLock<Thread>,
    /// Most events queued; past it `push` refuses (`channel_capacity`).
    capacity: usize,
    /// A batch is written as soon as it holds this many events (`batch_max_events`).
    batch_events: usize,
    /// How long the first event of a batch may wait for others (`flush_interval`).
    linger: Duration,
}

#[derive(Default)]
struct Pending {
    /// Calls of `push`, accepted or not (the `emitted` counter).
    emitted: u64,
    /// JSON lines, each ending in `\n`.
    lines: Vec<u8>,
    events: usize,
    /// When the first of `events` was queued.
    since: Option<Instant>,
    /// No event is accepted any more (shutdown, or every `Auditor` dropped).
    closed: bool,
}

/// Why [`Queue::push`] refused a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    Closed,
}

impl Queue {
    pub(crate) fn new(capacity: usize, batch_events: usize, linger: Duration) -> Queue {
        Queue {
            pending: Mutex::new(Pending::default()),
            writer: OnceLock::new(),
            capacity,
            batch_events,
            linger,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Plain field updates: the state is consistent even if a holder panicked.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_writer(&self) {
        if let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }

    /// Queues one JSON line (ending in `\n`). Never waits for the writer.
    pub(crate) fn push(&self, line: &[u8]) -> Result<(), Refused> {
        let wake = {
            let mut p = self.lock();
            p.emitted += 1;
            if p.closed {
                return Err(Refused::Closed);
            }
            if p.events >= self.capacity
                || (p.events > 0 && p.lines.len() + line.len() > MAX_QUEUED_BYTES)
            {
                return Err(Refused::Full);
            }
            p.lines.extend_from_slice(line);
            p.events += 1;
            if p.events == 1 {
                p.since = Some(Instant::now());
            }
            p.events == 1 || p.events == self.batch_events
        };
        if wake {
            self.wake_writer();
        }
        Ok(())
    }

    /// Calls of [`Queue::push`] so far.
    pub(crate) fn emitted(&self) -> u64 {
        self.lock().emitted
    }

    /// Accepts nothing from now on; the writer writes what is queued and stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake_writer();
    }

    /// Writer side: sleeps until a batch is due (`batch_events` queued, the first one
    /// `linger` old, or the queue closed), then moves it into `into` (which must be empty) and
    /// returns its event count. `None` once the queue is closed and empty.
    pub(crate) fn next_batch(&self, into: &mut Vec<u8>) -> Option<usize> {
        debug_assert!(into.is_empty());
        loop {
            let wait = {
                let mut p = self.lock();
                if p.events == 0 {
                    if p.closed {
                        return None;
                    }
                    IDLE_WAIT
                } else {
                    let age = p.since.map_or(self.linger, |s| s.elapsed());
                    if p.closed || p.events >= self.batch_events || age >= self.linger {
                        std::mem::swap(&mut p.lines, into);
                        let n = p.events;
                        p.events = 0;
                        p.since = None;
                        return Some(n);
                    }
                    self.linger - age
                }
            };
            std::thread::park_timeout(wait);
        }
    }
}

/// Gives a buffer that grew large back to the allocator, keeping a reasonable capacity.
pub(crate) fn trim(buf: &mut Vec<u8>) {
    if buf.capacity() > 2 * KEEP_BYTES {
        buf.shrink_to(KEEP_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn spawn_collector(
        queue: &Arc<Queue>,
    ) -> std::thread::JoinHandle<Vec<(usize, Vec<u8>, Instant)>> {
        let q = queue.clone();
        let handle = std::thread::spawn(move || {
            let mut batches = Vec::new();
            let mut buf = Vec::new();
            while let Some(n) = q.next_batch(&mut buf) {
                batches.push((n, std::mem::take(&mut buf), Instant::now()));
            }
            batches
        });
        queue.writer.set(handle.thread().clone()).unwrap();
        handle
    }

    #[test]
    fn a_lone_event_is_written_after_the_linger() {
        let queue = Arc::new(Queue::new(100, 10, Duration::from_millis(50)));
        let writer = spawn_collector(&queue);
        let pushed = Instant::now();
        queue.push(b"{\"a\":1}\n").unwrap();
        // Wait for the batch, then close.
        std::thread::sleep(Duration::from_millis(300));
        queue.close();
        let batches = writer.join().unwrap();
        assert_eq!(batches.len(), 1);
        let (n, lines, at) = &batches[0];
        assert_eq!((*n, &lines[..]), (1, &b"{\"a\":1}\n"[..]));
        let waited = at.duration_since(pushed);
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_millis(250),
            "written {waited:?} after the push"
        );
    }

    #[test]
    fn a_full_batch_is_written_without_waiting_for_the_linger() {
        let queue = Arc::new(Queue::new(100, 10, Duration::from_secs(30)));
        let writer = spawn_collector(&queue);
        let pushed = Instant::now();
        for i in 0..10 {
            queue.push(format!("{i}\n").as_bytes()).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while queue.lock().events != 0 {
            assert!(Instant::now() < deadline, "the full batch was not taken");
            std::thread::sleep(Duration::from_millis(1));
        }
        queue.close();
        let batches = writer.join().unwrap();
        assert_eq!(batches[0].0, 10);
        assert!(batches[0].2.duration_since(pushed) < Duration::from_secs(5));
    }

    #[test]
    fn close_flushes_what_is_queued_and_refuses_the_rest() {
        let queue = Arc::new(Queue::new(100, 1000, Duration::from_secs(30)));
        let writer = spawn_collector(&queue);
        for i in 0..5 {
            queue.push(format!("{i}\n").as_bytes()).unwrap();
        }
        queue.close();
        assert_eq!(queue.push(b"late\n"), Err(Refused::Closed));
        let batches = writer.join().unwrap();
        let lines: Vec<u8> = batches.iter().flat_map(|b| b.1.clone()).collect();
        assert_eq!(lines, b"0\n1\n2\n3\n4\n");
        assert_eq!(batches.iter().map(|b| b.0).sum::<usize>(), 5);
    }

    #[test]
    fn a_full_queue_refuses_without_waiting() {
        // No writer: nothing is ever taken.
        let queue = Queue::new(3, 1000, Duration::from_secs(30));
        for _ in 0..3 {
            queue.push(b"x\n").unwrap();
        }
        assert_eq!(queue.push(b"x\n"), Err(Refused::Full));
        assert_eq!(queue.emitted(), 4, "refused pushes count as emitted too");
        let big = vec![b'x'; MAX_QUEUED_BYTES];
        let queue = Queue::new(100, 1000, Duration::from_secs(30));
        queue.push(&big).unwrap();
        assert_eq!(
            queue.push(b"x\n"),
            Err(Refused::Full),
            "the byte bound applies too"
        );
    }

    #[test]
    fn events_from_many_threads_are_all_taken_once() {
        let queue = Arc::new(Queue::new(1 << 20, 64, Duration::from_millis(5)));
        let writer = spawn_collector(&queue);
        let emitters: Vec<_> = (0..4)
            .map(|t| {
                let q = queue.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        q.push(format!("{t}-{i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for e in emitters {
            e.join().unwrap();
        }
        queue.close();
        let batches = writer.join().unwrap();
        let text: Vec<u8> = batches.iter().flat_map(|b| b.1.clone()).collect();
        let text = String::from_utf8(text).unwrap();
        let lines: std::collections::HashSet<&str> = text.lines().collect();
        assert_eq!(lines.len(), 40_000);
        assert_eq!(text.lines().count(), 40_000);
        assert_eq!(batches.iter().map(|b| b.0).sum::<usize>(), 40_000);
        assert!(
            batches.len() < 40_000 / 10,
            "batched: {} batches",
            batches.len()
        );
    }
}
