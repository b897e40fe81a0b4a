//! Incremental splitting of a `text/event-stream` body into events, so a stream can be inspected
//! and rewritten event by event without ever buffering it whole.

/// Splits bytes into complete SSE events (each returned with its terminating blank line).
#[derive(Default)]
pub struct EventSplitter {
    buf: Vec<u8>,
}

impl EventSplitter {
    /// Feeds a chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buf) {
            let rest = self.buf.split_off(end);
            events.push(std::mem::replace(&mut self.buf, rest));
        }
        events
    }

    /// Bytes of an unterminated trailing event, emitted as they are when the stream ends.
    pub fn finish(self) -> Vec<u8> {
        self.buf
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

/// The `data` of an event: its `data:` lines joined with `\n`, or `None` without any.
pub fn event_data(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data: Option<String> = None;
    for line in text
        .split(['\n'])
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
    {
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
    data
}

/// Rebuilds an event with new `data`, keeping its other fields (`id:`, `event:`, `retry:`).
pub fn with_data(event: &[u8], data: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(event);
    let mut out = String::new();
    let mut wrote = false;
    for line in text.lines() {
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
        let mut s = EventSplitter::default();
        assert!(s.push(b"event: message\r\ndata: {\"a\"").is_empty());
        let events = s.push(b":1}\r\n\r\ndata: x\n\n: ping\n\ndata: tail");
        assert_eq!(events.len(), 3);
        assert_eq!(event_data(&events[0]).as_deref(), Some("{\"a\":1}"));
        assert_eq!(event_data(&events[1]).as_deref(), Some("x"));
        assert_eq!(event_data(&events[2]), None, "comment-only event");
        assert_eq!(s.finish(), b"data: tail");
    }

    #[test]
    fn cr_at_chunk_end_waits_for_lf() {
        let mut s = EventSplitter::default();
        assert!(s.push(b"data: a\r\n\r").is_empty());
        assert_eq!(s.push(b"\n").len(), 1);
    }

    #[test]
    fn multi_line_data_and_rewrite_keep_fields() {
        let ev = b"id: 5\nevent: message\ndata: {\"x\":\ndata: 1}\n\n";
        assert_eq!(event_data(ev).as_deref(), Some("{\"x\":\n1}"));
        let rewritten = with_data(ev, "{\"y\":2}");
        assert_eq!(rewritten, b"id: 5\nevent: message\ndata: {\"y\":2}\n\n");
    }
}
