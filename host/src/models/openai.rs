//! The OpenAI-compatible chat-completions protocol (OpenAI, Azure OpenAI, vLLM, Ollama,
//! llama.cpp server): `POST {base_url}/chat/completions`, with tools as `function` tools.
//!
//! Requests are streamed (`"stream": true`, usage asked for in the last chunk), so a caller can
//! show text as it comes. A tool call arrives in pieces: its id and name first, then its
//! arguments split across any number of chunks, keyed by the call's `index`. A server that
//! ignores `stream` and answers with one JSON body is read as well.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::backend::{
    BackendFailure, BackendReply, Endpoint, MAX_RESPONSE_BYTES, ModelBackend, TextSink,
    is_event_stream, preview,
};
use super::sse::SseParser;
use super::types::{ChatMessage, ChatRequest, Role, ToolCall, Usage};

/// The default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// One OpenAI-compatible endpoint and model.
pub struct OpenAiBackend {
    endpoint: Endpoint,
    model: String,
}

impl OpenAiBackend {
    /// A backend for `model` at `endpoint` (whose URL ends in `/chat/completions`).
    pub fn new(endpoint: Endpoint, model: String) -> Self {
        OpenAiBackend { endpoint, model }
    }

    fn body(&self, request: &ChatRequest, max_tokens: u32) -> Value {
        let messages: Vec<Value> = request.messages.iter().map(message_json).collect();
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": parse_or_empty(&t.parameters),
                        }
                    })
                })
                .collect();
        }
        body
    }
}

impl OpenAiBackend {
    fn finish(&self, stream: StreamedCompletion) -> Result<BackendReply, BackendFailure> {
        stream
            .finish(&self.model)
            .map(|reply| self.endpoint.redact_reply(reply))
            .map_err(|e| BackendFailure::Malformed(self.endpoint.redact(&e)))
    }
}

#[async_trait]
impl ModelBackend for OpenAiBackend {
    fn kind(&self) -> &'static str {
        "openai"
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        max_tokens: u32,
        on_text: &mut TextSink<'_>,
    ) -> Result<BackendReply, BackendFailure> {
        let mut response = self.endpoint.post(&self.body(request, max_tokens)).await?;
        if !is_event_stream(&response) {
            let body = self.endpoint.read_json(response).await?;
            return parse_completion(&body, &self.model)
                .map(|reply| self.endpoint.redact_reply(reply))
                .map_err(|e| BackendFailure::Malformed(self.endpoint.redact(&e)));
        }
        let mut parser = SseParser::new();
        let mut stream = StreamedCompletion::default();
        let mut received = 0usize;
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                BackendFailure::Unreachable(
                    self.endpoint.redact(&format!("the stream broke off: {e}")),
                )
            })?;
            received += chunk.as_ref().map_or(0, |c| c.len());
            if received > MAX_RESPONSE_BYTES {
                return Err(BackendFailure::Malformed(format!(
                    "the stream is longer than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            let events = match &chunk {
                Some(bytes) => parser.push(bytes).map_err(BackendFailure::Malformed)?,
                None => parser.finish().into_iter().collect(),
            };
            for event in events {
                if stream
                    .apply(&event.data, on_text)
                    .map_err(|e| BackendFailure::Malformed(self.endpoint.redact(&e)))?
                {
                    return self.finish(stream);
                }
            }
            if chunk.is_none() {
                return self.finish(stream);
            }
        }
    }
}

fn message_json(m: &ChatMessage) -> Value {
    match m.role {
        Role::Assistant if !m.tool_calls.is_empty() => json!({
            "role": "assistant",
            "content": if m.content.is_empty() { Value::Null } else { json!(m.content) },
            "tool_calls": m.tool_calls.iter().map(|c| json!({
                "id": c.id,
                "type": "function",
                "function": { "name": c.name, "arguments": c.arguments },
            })).collect::<Vec<_>>(),
        }),
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id,
            "content": m.content,
        }),
        role => json!({ "role": role.as_str(), "content": m.content }),
    }
}

fn parse_or_empty(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

/// `stop`, `length`, `tool_calls`, `content_filter` as the WIT contract spells them.
fn finish_reason(reason: &str) -> String {
    match reason {
        "tool_calls" | "function_call" => "tool-calls".into(),
        "content_filter" => "content-filter".into(),
        other => other.replace('_', "-"),
    }
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let n = |key: &str| {
        u.get(key)
            .and_then(Value::as_u64)
            .map(|n| n.min(u64::from(u32::MAX)) as u32)
    };
    Some(Usage {
        input_tokens: n("prompt_tokens")?,
        output_tokens: n("completion_tokens").unwrap_or(0),
    })
}

/// Reads a whole (non-streamed) chat completion.
pub fn parse_completion(body: &Value, default_model: &str) -> Result<BackendReply, String> {
    let describe = || {
        format!(
            "expected a chat completion, got {}",
            preview(body.to_string().as_bytes())
        )
    };
    let choice = body
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(describe)?;
    let message = choice.get("message").ok_or_else(describe)?;
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut tool_calls = Vec::new();
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
            let function = call.get("function").ok_or_else(describe)?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("tool call `{id}` has no function name"))?;
            let arguments = match function.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(v) if !v.is_null() => v.to_string(),
                _ => String::new(),
            };
            tool_calls.push(ToolCall {
                id: id.to_string(),
                name: name.to_string(),
                arguments: normalise_arguments(arguments),
            });
        }
    }
    let reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or(if tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        });
    Ok(BackendReply {
        message: ChatMessage {
            role: Role::Assistant,
            content,
            tool_calls,
            tool_call_id: None,
        },
        usage: usage_of(body),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(default_model)
            .to_string(),
        finish_reason: finish_reason(reason),
    })
}

/// No arguments at all is an empty object, which is what the model means.
fn normalise_arguments(arguments: String) -> String {
    if arguments.trim().is_empty() {
        "{}".into()
    } else {
        arguments
    }
}

/// A tool call being assembled from stream chunks.
#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// A streamed completion being assembled chunk by chunk.
#[derive(Debug, Default)]
pub struct StreamedCompletion {
    content: String,
    calls: BTreeMap<u64, PartialCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    model: Option<String>,
    done: bool,
}

impl StreamedCompletion {
    /// Applies one event's data; returns true at `[DONE]`. Text deltas go to `on_text`.
    pub fn apply(&mut self, data: &str, on_text: &mut TextSink<'_>) -> Result<bool, String> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(true);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            format!(
                "a stream chunk is not JSON ({e}): {:?}",
                preview(data.as_bytes())
            )
        })?;
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| error.to_string());
            return Err(format!("the stream reported an error: {message}"));
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            self.model = Some(model.to_string());
        }
        if let Some(usage) = usage_of(&chunk) {
            self.usage = Some(usage);
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_string());
            }
            let Some(delta) = choice.get("delta") else {
                continue;
            };
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                self.content.push_str(text);
                on_text(text);
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(self.calls.len() as u64);
                let partial = self.calls.entry(index).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    partial.id = id.to_string();
                }
                if let Some(function) = call.get("function") {
                    if let Some(name) = function.get("name").and_then(Value::as_str) {
                        partial.name.push_str(name);
                    }
                    if let Some(args) = function.get("arguments").and_then(Value::as_str) {
                        partial.arguments.push_str(args);
                    }
                }
            }
        }
        Ok(false)
    }

    /// The completion, once the stream ended.
    pub fn finish(self, default_model: &str) -> Result<BackendReply, String> {
        if !self.done && self.finish_reason.is_none() {
            return Err(
                "the stream ended before the completion did (no finish_reason, no [DONE])".into(),
            );
        }
        let mut tool_calls = Vec::new();
        for (index, call) in self.calls {
            if call.name.is_empty() {
                return Err(format!("streamed tool call {index} has no function name"));
            }
            let arguments = normalise_arguments(call.arguments);
            if serde_json::from_str::<serde::de::IgnoredAny>(&arguments).is_err() {
                return Err(format!(
                    "the arguments of streamed tool call `{}` ({}) are not JSON once joined: {:?}",
                    call.id,
                    call.name,
                    preview(arguments.as_bytes())
                ));
            }
            tool_calls.push(ToolCall {
                id: call.id,
                name: call.name,
                arguments,
            });
        }
        let reason = self.finish_reason.unwrap_or_else(|| {
            if tool_calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            }
            .into()
        });
        Ok(BackendReply {
            message: ChatMessage {
                role: Role::Assistant,
                content: self.content,
                tool_calls,
                tool_call_id: None,
            },
            usage: self.usage,
            model: self.model.unwrap_or_else(|| default_model.to_string()),
            finish_reason: finish_reason(&reason),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(events: &[&str]) -> Result<BackendReply, String> {
        let mut s = StreamedCompletion::default();
        let mut seen = String::new();
        let mut sink = |t: &str| seen.push_str(t);
        for e in events {
            if s.apply(e, &mut sink)? {
                break;
            }
        }
        let reply = s.finish("m")?;
        assert_eq!(seen, reply.message.content);
        Ok(reply)
    }

    #[test]
    fn split_tool_call_arguments_are_joined() {
        let reply = stream(&[
            r#"{"model":"gpt-x","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": \"Pa"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7}}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(reply.model, "gpt-x");
        assert_eq!(reply.finish_reason, "tool-calls");
        assert_eq!(
            reply.message.tool_calls[0].arguments,
            r#"{"city": "Paris"}"#
        );
        assert_eq!(reply.usage.unwrap().total(), 19);
    }

    #[test]
    fn text_deltas_are_joined_and_forwarded() {
        let reply = stream(&[
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(reply.message.content, "Hello");
        assert_eq!(reply.usage, None);
    }

    #[test]
    fn a_stream_cut_short_is_an_error() {
        let err = stream(&[r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#]).unwrap_err();
        assert!(err.contains("ended before"), "{err}");
    }

    #[test]
    fn an_error_chunk_is_an_error() {
        let err = stream(&[r#"{"error":{"message":"model overloaded"}}"#]).unwrap_err();
        assert!(err.contains("model overloaded"), "{err}");
    }

    #[test]
    fn a_whole_completion_is_read() {
        let body = json!({
            "model": "gpt-x",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]
            }}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        });
        let reply = parse_completion(&body, "m").unwrap();
        assert_eq!(reply.message.tool_calls[0].name, "f");
        assert_eq!(reply.usage.unwrap().output_tokens, 4);
        assert!(parse_completion(&json!({"hello": 1}), "m").is_err());
    }
}
