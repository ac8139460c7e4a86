//! Provider wire formats for the mock servers: OpenAI chat completions (whole and streamed as
//! server-sent events), Anthropic messages, and a raw HTTP/1.1 server that sends a stream in
//! chunks of the test's choosing.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::{Request, ResponseTemplate};

/// A whole (non-streamed) chat completion with `text`.
pub fn openai_text(text: &str, prompt_tokens: u32, completion_tokens: u32) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "mock-gpt",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    }))
}

/// Server-sent events: each value as a `data:` event, then `data: [DONE]`.
pub fn sse_body(chunks: &[Value]) -> String {
    let mut body = String::new();
    for chunk in chunks {
        body.push_str("data: ");
        body.push_str(&chunk.to_string());
        body.push_str("\n\n");
    }
    body.push_str("data: [DONE]\n\n");
    body
}

/// A streamed response with `body` as its event stream.
pub fn sse(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.into_bytes(), "text/event-stream")
}

/// The chunks of a streamed text completion, one per word.
pub fn openai_text_chunks(text: &str) -> Vec<Value> {
    let mut chunks = vec![json!({
        "id": "c", "object": "chat.completion.chunk", "model": "mock-gpt-stream",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]
    })];
    for word in text.split_inclusive(' ') {
        chunks.push(json!({
            "id": "c", "object": "chat.completion.chunk", "model": "mock-gpt-stream",
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": null}]
        }));
    }
    chunks.push(json!({
        "id": "c", "object": "chat.completion.chunk", "model": "mock-gpt-stream",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    }));
    chunks.push(json!({
        "id": "c", "object": "chat.completion.chunk", "model": "mock-gpt-stream",
        "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    }));
    chunks
}

/// The chunks of a streamed tool call whose arguments arrive in `pieces`.
pub fn openai_tool_call_chunks(id: &str, name: &str, pieces: &[&str]) -> Vec<Value> {
    let mut chunks = vec![json!({
        "id": "c", "object": "chat.completion.chunk", "model": "mock-gpt-stream",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}
        ]}, "finish_reason": null}]
    })];
    for piece in pieces {
        chunks.push(json!({
            "id": "c", "object": "chat.completion.chunk", "model": "mock-gpt-stream",
            "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": piece}}
            ]}, "finish_reason": null}]
        }));
    }
    chunks.push(json!({
        "id": "c", "object": "chat.completion.chunk", "model": "mock-gpt-stream",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]
    }));
    chunks.push(json!({
        "id": "c", "object": "chat.completion.chunk", "model": "mock-gpt-stream",
        "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}
    }));
    chunks
}

/// An Anthropic message with `content` blocks.
pub fn anthropic_message(content: Value, stop_reason: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "mock-claude",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": 25, "output_tokens": 9}
    }))
}

/// The JSON body a mock received.
pub fn body_json(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("the host sent JSON")
}

/// A raw HTTP/1.1 server on 127.0.0.1 that answers each connection with `pieces` as the chunks
/// of a chunked `text/event-stream` body, flushing and pausing between them, so the host reads
/// them as separate network reads. Returns its base URL (`http://127.0.0.1:PORT/v1`).
pub async fn chunked_stream_server(pieces: Vec<Vec<u8>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let pieces = pieces.clone();
            tokio::spawn(async move {
                read_request(&mut socket).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for piece in pieces {
                    let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                    chunk.extend_from_slice(&piece);
                    chunk.extend_from_slice(b"\r\n");
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    let _ = socket.flush().await;
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}/v1")
}

/// Reads one request (head and a content-length body) and throws it away.
async fn read_request(socket: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        let Ok(n) = socket.read(&mut byte).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return;
            }
        }
    }
}
