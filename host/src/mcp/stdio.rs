//! MCP's stdio framing, one JSON-RPC message per line, with the protocol's error replies.
//!
//! rmcp's own line transport ignores a line that is not JSON and drops an oversized one
//! without a word, and its server ends the connection when a notification or a response comes
//! before the lifecycle starts. A client then waits for an answer that never comes. This
//! transport answers every line it cannot pass on — `-32700` for text that is not JSON,
//! `-32600` for JSON that is not a message and for a line over the limit, `-32602` for a
//! request whose params do not fit its method — and keeps reading, and it holds back
//! notifications and responses until `initialize` (or a stateless request) has been passed on.
//! A line over the limit is skipped as it streams in, never buffered whole.

use std::future::Future;
use std::io;

use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorData, GetMeta, JsonRpcMessage, NumberOrString,
    ProtocolVersion, RequestId, ServerJsonRpcMessage,
};
use rmcp::service::RoleServer;
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The default limit on one incoming message, in KiB: the HTTP API's default body limit.
pub const DEFAULT_MAX_MESSAGE_KB: u64 = 1024;

/// What one bounded line read found.
enum Line {
    /// A whole line is in the buffer.
    Full,
    /// A line over the limit went by and was dropped.
    Oversized,
    /// The client closed its end.
    Eof,
}

/// How many messages may wait for stdout before `send` waits: a client that stops reading
/// slows the server down instead of growing its heap.
const OUTBOX: usize = 256;

/// The server's side of a stdio connection.
pub struct LineTransport<R> {
    read: BufReader<R>,
    line: Vec<u8>,
    max_bytes: usize,
    /// Skipping the rest of an oversized line. Kept here, not in a local, because `receive`
    /// is polled in a `select!` and may be dropped mid-line.
    discarding: bool,
    /// `initialize` or a stateless request has been passed on: rmcp's serving loop runs, and
    /// takes notifications and responses.
    started: bool,
    /// Every line written goes through this queue to one writer task, in order: rmcp's
    /// messages and this transport's own error replies, which are queued without waiting, so
    /// that a `receive` future dropped after reading a bad line cannot lose its reply.
    outbox: Option<mpsc::Sender<Vec<u8>>>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl<R> LineTransport<R>
where
    R: AsyncRead + Unpin + Send,
{
    /// A transport reading messages of at most `max_bytes` from `read`, writing to `write`.
    /// Starts the writer task, so it is made inside the runtime.
    pub fn new<W: AsyncWrite + Unpin + Send + 'static>(
        read: R,
        write: W,
        max_bytes: usize,
    ) -> Self {
        let (outbox, queue) = mpsc::channel(OUTBOX);
        LineTransport {
            read: BufReader::with_capacity(64 * 1024, read),
            line: Vec::new(),
            max_bytes,
            discarding: false,
            started: false,
            outbox: Some(outbox),
            writer: Some(tokio::spawn(write_lines(write, queue))),
        }
    }

    /// Queues an error reply. A reply to a line whose id could not be read says `"id": null`,
    /// as JSON-RPC requires (rmcp's type would leave the member out).
    fn reply(&self, error: ErrorData, id: Option<RequestId>) {
        let message = match id {
            Some(id) => serde_json::to_vec(&ServerJsonRpcMessage::error(error, Some(id))),
            None => serde_json::to_value(&error).and_then(|error| {
                serde_json::to_vec(
                    &serde_json::json!({"jsonrpc": "2.0", "id": null, "error": error}),
                )
            }),
        };
        let (Ok(mut line), Some(outbox)) = (message, &self.outbox) else {
            return;
        };
        line.push(b'\n');
        if let Err(mpsc::error::TrySendError::Full(line)) = outbox.try_send(line) {
            // A client that does not read its answers: this one waits its turn on a task.
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let _ = outbox.send(line).await;
            });
        }
    }

    /// Reads one `\n`-terminated line into `self.line`, never letting it grow past the limit.
    /// Cancel-safe: bytes are consumed from the reader only together with the state change
    /// they cause, with no await between.
    async fn read_line(&mut self) -> io::Result<Line> {
        loop {
            let buf = self.read.fill_buf().await?;
            if buf.is_empty() {
                return Ok(Line::Eof);
            }
            let (take, ends) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (at, true),
                None => (buf.len(), false),
            };
            if !self.discarding {
                if self.line.len() + take > self.max_bytes {
                    self.discarding = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(&buf[..take]);
                }
            }
            self.read.consume(take + usize::from(ends));
            if ends {
                if self.discarding {
                    self.discarding = false;
                    return Ok(Line::Oversized);
                }
                return Ok(Line::Full);
            }
        }
    }

    /// The message in `self.line`, or the error reply it gets (sent here).
    fn parse(&mut self) -> Option<ClientJsonRpcMessage> {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let parsed = serde_json::from_slice::<ClientJsonRpcMessage>(line);
        let error = match parsed {
            Ok(message) => return Some(message),
            Err(e) => e,
        };
        let (error, id) = match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => (
                ErrorData::parse_error(format!("the line is not JSON: {error}"), None),
                None,
            ),
            _ => shape_error(line, &error),
        };
        self.line.clear();
        self.reply(error, id);
        None
    }

    /// Whether rmcp's serving loop would take `message` now; before the lifecycle starts it
    /// takes only requests (and ends the connection on anything else).
    fn admit(&mut self, message: &ClientJsonRpcMessage) -> bool {
        match message {
            JsonRpcMessage::Request(request) => {
                if starts_lifecycle(&request.request) {
                    self.started = true;
                }
                true
            }
            _ if self.started => true,
            _ => {
                tracing::debug!("an MCP notification or response before initialize was ignored");
                false
            }
        }
    }
}

/// A request that makes rmcp's server leave its pre-initialize loop: `initialize`, or a
/// stateless request (not `server/discover`, not `ping`) with complete per-request metadata.
fn starts_lifecycle(request: &ClientRequest) -> bool {
    match request {
        ClientRequest::InitializeRequest(_) => true,
        ClientRequest::DiscoverRequest(_) | ClientRequest::PingRequest(_) => false,
        other => {
            let meta = other.get_meta();
            meta.protocol_version().is_some()
                && meta
                    .missing_required_keys(&ProtocolVersion::V_2026_07_28)
                    .is_empty()
        }
    }
}

/// The reply to JSON that is not a message rmcp takes: a request (it has a method and an id)
/// with params that do not fit gets `-32602` with its id; anything else `-32600`.
fn shape_error(line: &[u8], error: &serde_json::Error) -> (ErrorData, Option<RequestId>) {
    let value: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let id = match value.get("id") {
        Some(Value::Number(n)) => n.as_i64().map(NumberOrString::Number),
        Some(Value::String(s)) => Some(NumberOrString::String(s.as_str().into())),
        _ => None,
    };
    match (value.get("method").and_then(Value::as_str), id) {
        (Some(method), Some(id)) if value.get("jsonrpc") == Some(&Value::from("2.0")) => (
            ErrorData::invalid_params(
                format!(
                    "the params of `{}` are not valid: {error}",
                    crate::host::shown(method)
                ),
                None,
            ),
            Some(id),
        ),
        _ => (
            ErrorData::invalid_request(
                format!("the line is JSON but not a JSON-RPC 2.0 message MCP knows: {error}"),
                None,
            ),
            None,
        ),
    }
}

/// Serves `server` on this process's stdin and stdout until the client closes stdin or the
/// serving loop ends.
pub async fn serve(server: super::WardenMcp, max_bytes: usize) -> Result<(), String> {
    let transport = LineTransport::new(stdin(), stdout(), max_bytes);
    match rmcp::serve_server(server, transport).await {
        Ok(running) => {
            running
                .waiting()
                .await
                .map_err(|e| format!("the MCP connection ended in error: {e}"))?;
            Ok(())
        }
        // The client went away before it initialized: nothing was asked, nothing is owed.
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => Ok(()),
        Err(e) => Err(format!("the MCP connection failed before it started: {e}")),
    }
}

/// A reader of stdin. A pipe (what an MCP client gives its server) is read by the runtime
/// itself, non-blocking; `tokio::io::stdin` hands every read to a blocking thread and back,
/// which the `mcp_stdio` bench measured at 40-70 µs a call. Anything else (a file, a terminal)
/// falls back to it.
fn stdin() -> Box<dyn AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok());
    match pipe {
        Some(pipe) => Box::new(pipe),
        None => Box::new(tokio::io::stdin()),
    }
}

/// A writer of stdout, a pipe written by the runtime itself when it is one (see [`stdin`]).
fn stdout() -> Box<dyn AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd).ok());
    match pipe {
        Some(pipe) => Box::new(pipe),
        None => Box::new(tokio::io::stdout()),
    }
}

/// The writer task: writes each queued line, flushing whenever the queue is empty, until
/// every sender is gone or stdout fails.
async fn write_lines<W: AsyncWrite + Unpin>(mut write: W, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(line) = queue.recv().await {
        if let Err(e) = write.write_all(&line).await {
            tracing::debug!("writing stdout failed: {e}");
            return;
        }
        if queue.is_empty()
            && let Err(e) = write.flush().await
        {
            tracing::debug!("writing stdout failed: {e}");
            return;
        }
    }
    let _ = write.flush().await;
}

impl<R> Transport<RoleServer> for LineTransport<R>
where
    R: AsyncRead + Unpin + Send,
{
    type Error = io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let outbox = self.outbox.clone();
        async move {
            let mut line = serde_json::to_vec(&item).map_err(io::Error::other)?;
            line.push(b'\n');
            match outbox {
                Some(outbox) => outbox
                    .send(line)
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "stdout is closed")),
                None => Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the transport is closed",
                )),
            }
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            match self.read_line().await {
                Ok(Line::Full) => {}
                Ok(Line::Oversized) => {
                    let kb = self.max_bytes / 1024;
                    self.reply(
                        ErrorData::invalid_request(
                            format!(
                                "the message is larger than {kb} KiB and was skipped (raise \
                                 the limit with --max-message-kb)"
                            ),
                            None,
                        ),
                        None,
                    );
                    continue;
                }
                Ok(Line::Eof) => return None,
                Err(e) => {
                    tracing::warn!("reading stdin failed: {e}");
                    return None;
                }
            }
            let message = self.parse();
            self.line.clear();
            if let Some(message) = message
                && self.admit(&message)
            {
                return Some(message);
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        // What is queued is written before the process goes: the writer ends when the last
        // sender (this one, and any send still in flight) is gone.
        self.outbox = None;
        let writer = self.writer.take();
        async move {
            if let Some(writer) = writer {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, duplex};

    async fn exchange(input: &[u8], max: usize) -> (Vec<Option<String>>, String) {
        let (mut client, server_in) = duplex(1 << 20);
        let (server_out, mut replies) = duplex(1 << 20);
        client.write_all(input).await.unwrap();
        drop(client);
        let mut transport = LineTransport::new(server_in, server_out, max);
        let mut got = Vec::new();
        while let Some(message) = transport.receive().await {
            got.push(
                serde_json::to_value(&message)
                    .ok()
                    .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_string)),
            );
        }
        drop(transport);
        let mut text = String::new();
        replies.read_to_string(&mut text).await.unwrap();
        (got, text)
    }

    #[tokio::test]
    async fn bad_lines_are_answered_and_reading_goes_on() {
        let ping = r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#;
        let input = format!(
            "{{nope\n[1,2]\n{}\n{ping}\n{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":5}}\n{ping}\n",
            "x".repeat(300)
        );
        let (got, replies) = exchange(input.as_bytes(), 200).await;
        assert_eq!(got, vec![Some("ping".into()), Some("ping".into())]);
        let replies: Vec<Value> = replies
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let codes: Vec<i64> = replies
            .iter()
            .map(|r| r["error"]["code"].as_i64().unwrap())
            .collect();
        assert_eq!(codes, vec![-32700, -32600, -32600, -32602]);
        assert_eq!(replies[3]["id"], 3);
        for reply in &replies[..3] {
            assert_eq!(reply.get("id"), Some(&Value::Null), "{reply}");
        }
        assert!(
            replies[2]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--max-message-kb")
        );
    }

    #[tokio::test]
    async fn notifications_before_initialize_are_held_back_and_after_it_passed_on() {
        let input = concat!(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "\n",
        );
        let (got, replies) = exchange(input.as_bytes(), 1 << 16).await;
        assert_eq!(
            got,
            vec![
                Some("initialize".into()),
                Some("notifications/initialized".into())
            ]
        );
        assert_eq!(replies, "");
    }

    #[tokio::test]
    async fn an_oversized_line_is_not_buffered_whole() {
        let mut input = vec![b'a'; 8 << 20];
        input.push(b'\n');
        let mut transport =
            LineTransport::new(std::io::Cursor::new(input), tokio::io::sink(), 1024);
        assert!(matches!(
            transport.read_line().await.unwrap(),
            Line::Oversized
        ));
        assert!(
            transport.line.capacity() <= 1024 + 64 * 1024,
            "{}",
            transport.line.capacity()
        );
    }
}
