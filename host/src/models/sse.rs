//! An incremental parser for server-sent events (the `text/event-stream` format), as both
//! providers stream completions. Bytes arrive in whatever pieces the network delivers: a line, a
//! UTF-8 character or a `\r\n` may be split across two chunks, and the parser only ever acts on
//! complete lines.

/// The most bytes one event may hold; a stream that goes past it is refused.
pub const MAX_EVENT_BYTES: usize = 8 << 20;

/// One event: its type (`message` when the stream names none) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `message`.
    pub event: String,
    /// The `data:` fields, joined by `\n`.
    pub data: String,
}

/// Turns chunks of a stream into events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line being received.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`, so a `\n` that starts the next one ends no new line.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    /// Bytes held for the event being received.
    held: usize,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut events = Vec::new();
        for &byte in chunk {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line) {
                        events.push(event);
                    }
                }
                _ => {
                    self.line.push(byte);
                    self.held += 1;
                    if self.held > MAX_EVENT_BYTES {
                        return Err(format!(
                            "an event of the stream is larger than {MAX_EVENT_BYTES} bytes"
                        ));
                    }
                }
            }
        }
        Ok(events)
    }

    /// Ends the stream: an event whose blank line never came is still dispatched, as a server
    /// that closes right after its last `data:` line means it.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.line);
        let pending = if line.is_empty() {
            None
        } else {
            self.line_done(&line)
        };
        pending.or_else(|| self.dispatch())
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None; // a comment, often a keep-alive
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {} // `id`, `retry` and unknown fields do not matter here
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        self.held = 0;
        let event = self.event.take();
        let data = self.data.take()?;
        Some(SseEvent {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".into()),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(stream: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in stream.chunks(piece) {
            events.extend(parser.push(chunk).unwrap());
        }
        events.extend(parser.finish());
        events
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream = "event: message_start\r\ndata: {\"a\":\"h\u{e9}llo\"}\r\n\r\n: keep-alive\n\ndata: one\ndata: two\n\ndata:[DONE]\n\n".as_bytes();
        let whole = parse_in_pieces(stream, stream.len());
        assert_eq!(
            whole,
            vec![
                SseEvent {
                    event: "message_start".into(),
                    data: "{\"a\":\"h\u{e9}llo\"}".into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "one\ntwo".into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "[DONE]".into()
                },
            ]
        );
        for piece in 1..stream.len() {
            assert_eq!(parse_in_pieces(stream, piece), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn bare_carriage_returns_end_lines() {
        let events = parse_in_pieces(b"data: a\r\rdata: b\r\r", 1);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data, "b");
    }

    #[test]
    fn a_last_event_without_its_blank_line_is_kept() {
        let events = parse_in_pieces(b"data: {\"x\":1}", 3);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "{\"x\":1}");
    }

    #[test]
    fn an_oversized_event_is_refused() {
        let mut parser = SseParser::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(parser.push(&big).is_err());
    }
}
