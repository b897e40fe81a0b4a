//! Incremental splitting of a `text/event-stream` body into events, so a stream can be inspected
//! and rewritten event by event without ever buffering it whole.
//!
//! Lines end with CRLF, LF or a lone CR (all three, as the SSE specification says): a reader that
//! knew only some of them would see different events than the client does.

/// Splits bytes into complete SSE events (each returned with its terminating blank line), holding
/// at most `limit` bytes of an incomplete event.
pub struct EventSplitter {
    buf: Vec<u8>,
    limit: usize,
}

/// An event grew past the splitter's limit without ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event exceeds {limit} bytes")]
pub struct EventTooLarge {
    pub limit: usize,
}

impl EventSplitter {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
        }
    }

    /// Feeds a chunk; returns the events it completed, in order, or an error when the event in
    /// progress exceeds the limit (the splitter must not be used after that).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buf) {
            let rest = self.buf.split_off(end);
            events.push(std::mem::replace(&mut self.buf, rest));
        }
        if self.buf.len() > self.limit {
            self.buf = Vec::new();
            return Err(EventTooLarge { limit: self.limit });
        }
        Ok(events)
    }

    /// Bytes of an unterminated trailing event, emitted as they are when the stream ends.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// At the end of the stream: the last event if the bytes held complete it (a final lone CR
    /// ends its line, as nothing can follow it any more), else `None`: a client never dispatches
    /// an unterminated event.
    pub fn finish_event(self) -> Option<Vec<u8>> {
        if self.buf.last() != Some(&b'\r') {
            return None;
        }
        let mut probe = self.buf.clone();
        probe.push(b'\n');
        (event_end(&probe) == Some(probe.len())).then_some(self.buf)
    }

    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Index just past the first blank line (`\n\n`, `\r\n\r\n`, `\r\r`, or mixed).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut line_start = 0;
    while i < buf.len() {
        let eol = match buf[i] {
            b'\n' => Some(i + 1),
            b'\r' if buf.get(i + 1) == Some(&b'\n') => Some(i + 2),
            // A lone CR at the very end may be the first half of CRLF: wait for more.
            b'\r' if i + 1 == buf.len() => return None,
            b'\r' => Some(i + 1),
            _ => None,
        };
        match eol {
            Some(next) if i == line_start => return Some(next),
            Some(next) => {
                line_start = next;
                i = next;
            }
            None => i += 1,
        }
    }
    None
}

/// The lines of an event under all three line endings.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\r', '\n']) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

/// Why an event's data cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event is not UTF-8")]
pub struct NotUtf8;

/// The `data` of an event: its `data:` lines joined with `\n`, `None` without any, or an error
/// when the event is not UTF-8 (which the client could not read either, but a filter must not
/// pass it on unread).
pub fn event_data(event: &[u8]) -> Result<Option<String>, NotUtf8> {
    let text = std::str::from_utf8(event).map_err(|_| NotUtf8)?;
    let mut data: Option<String> = None;
    for line in lines(text) {
        let value = if line == "data" {
            Some("")
        } else {
            line.strip_prefix("data:")
                .map(|v| v.strip_prefix(' ').unwrap_or(v))
        };
        if let Some(v) = value {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_owned()),
            }
        }
    }
    Ok(data)
}

/// Rebuilds an event with new `data`, keeping its other fields (`id:`, `event:`, `retry:`).
pub fn with_data(event: &[u8], data: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(event);
    let mut out = String::new();
    let mut wrote = false;
    for line in lines(&text) {
        if line.is_empty() {
            continue;
        }
        if line == "data" || line.starts_with("data:") {
            if !wrote {
                for d in data.split('\n') {
                    out.push_str("data: ");
                    out.push_str(d);
                    out.push('\n');
                }
                wrote = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks_and_line_endings() {
        let mut s = EventSplitter::new(1024);
        assert!(
            s.push(b"event: message\r\ndata: {\"a\"")
                .unwrap()
                .is_empty()
        );
        let events = s
            .push(b":1}\r\n\r\ndata: x\n\n: ping\n\ndata: tail")
            .unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(
            event_data(&events[0]).unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(event_data(&events[1]).unwrap().as_deref(), Some("x"));
        assert_eq!(event_data(&events[2]).unwrap(), None, "comment-only event");
        assert_eq!(s.finish(), b"data: tail");
    }

    #[test]
    fn cr_at_chunk_end_waits_for_lf() {
        let mut s = EventSplitter::new(1024);
        assert!(s.push(b"data: a\r\n\r").unwrap().is_empty());
        assert_eq!(s.push(b"\n").unwrap().len(), 1);
    }

    #[test]
    fn lone_cr_line_endings_read_as_the_client_reads_them() {
        // One event, two fields, CR-only: a reader splitting on LF alone sees one `data:` line
        // holding `{"a":1}\rid: 5`, which is not JSON, and would let it pass unread.
        let mut s = EventSplitter::new(1024);
        let events = s
            .push(b"id: 5\rdata: {\"a\":1}\r\rdata: x\r\rdata: y")
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            event_data(&events[0]).unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(with_data(&events[0], "{}"), b"id: 5\ndata: {}\n\n");
        // At the end of the stream a final lone CR completes the event it ends.
        let mut s = EventSplitter::new(1024);
        assert!(s.push(b"data: z\r\r").unwrap().is_empty());
        assert_eq!(s.finish_event().unwrap(), b"data: z\r\r");
        let mut s = EventSplitter::new(1024);
        assert!(s.push(b"data: z\r").unwrap().is_empty());
        assert_eq!(
            s.finish_event(),
            None,
            "one line ending is not an event's end"
        );
    }

    #[test]
    fn an_event_that_never_ends_is_bounded() {
        let mut s = EventSplitter::new(16);
        assert!(s.push(b"data: 0123456789").is_ok());
        assert_eq!(s.push(b"abcdef").unwrap_err(), EventTooLarge { limit: 16 });
        assert!(event_data(b"data: \xff\n\n").is_err());
    }

    #[test]
    fn multi_line_data_and_rewrite_keep_fields() {
        let ev = b"id: 5\nevent: message\ndata: {\"x\":\ndata: 1}\n\n";
        assert_eq!(event_data(ev).unwrap().as_deref(), Some("{\"x\":\n1}"));
        let rewritten = with_data(ev, "{\"y\":2}");
        assert_eq!(rewritten, b"id: 5\nevent: message\ndata: {\"y\":2}\n\n");
    }
}
