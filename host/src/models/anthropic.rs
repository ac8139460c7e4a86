//! The Anthropic Messages API: `POST {base_url}/messages`, with the key in `x-api-key`.
//!
//! The chat shape maps onto it like this: system messages become the `system` prompt; an
//! assistant's tool calls become `tool_use` blocks; a tool's result becomes a `tool_result`
//! block in a user turn; consecutive turns of one role are merged, as the API wants turns to
//! alternate. The answer is read whole (not streamed).

use async_trait::async_trait;
use serde_json::{Value, json};

use super::backend::{BackendFailure, BackendReply, Endpoint, ModelBackend, TextSink, preview};
use super::types::{ChatMessage, ChatRequest, Role, ToolCall, Usage};

/// The default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";
/// The API version the host speaks (the `anthropic-version` header).
pub const API_VERSION: &str = "2023-06-01";

/// One Anthropic endpoint and model.
pub struct AnthropicBackend {
    endpoint: Endpoint,
    model: String,
}

impl AnthropicBackend {
    /// A backend for `model` at `endpoint` (whose URL ends in `/messages`).
    pub fn new(endpoint: Endpoint, model: String) -> Self {
        AnthropicBackend { endpoint, model }
    }
}

#[async_trait]
impl ModelBackend for AnthropicBackend {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        max_tokens: u32,
        on_text: &mut TextSink<'_>,
    ) -> Result<BackendReply, BackendFailure> {
        let response = self
            .endpoint
            .post(&request_body(&self.model, request, max_tokens))
            .await?;
        let body = self.endpoint.read_json(response).await?;
        let reply = parse_message(&body)
            .map(|reply| self.endpoint.redact_reply(reply))
            .map_err(|e| BackendFailure::Malformed(self.endpoint.redact(&e)))?;
        if !reply.message.content.is_empty() {
            on_text(&reply.message.content);
        }
        Ok(reply)
    }
}

/// The Messages API body for `request`.
pub fn request_body(model: &str, request: &ChatRequest, max_tokens: u32) -> Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in request.messages.iter().filter(|m| m.role != Role::System) {
        let (role, blocks) = blocks(m);
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t.min(1.0));
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": serde_json::from_str::<Value>(&t.parameters).unwrap_or_else(|_| json!({"type": "object"})),
                })
            })
            .collect();
    }
    body
}

fn blocks(m: &ChatMessage) -> (&'static str, Vec<Value>) {
    match m.role {
        Role::Tool => (
            "user",
            vec![json!({
                "type": "tool_result",
                "tool_use_id": m.tool_call_id,
                "content": m.content,
            })],
        ),
        Role::Assistant => {
            let mut blocks = Vec::new();
            if !m.content.is_empty() {
                blocks.push(json!({ "type": "text", "text": m.content }));
            }
            for call in &m.tool_calls {
                let input: Value =
                    serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                blocks.push(json!({
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": input,
                }));
            }
            ("assistant", blocks)
        }
        Role::User | Role::System => ("user", vec![json!({ "type": "text", "text": m.content })]),
    }
}

/// Reads a Messages API response.
pub fn parse_message(body: &Value) -> Result<BackendReply, String> {
    if body.get("type").and_then(Value::as_str) == Some("error") {
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(format!("the API answered with an error: {message}"));
    }
    let content = body
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            format!(
                "expected a Messages API message with `content`, got {}",
                preview(body.to_string().as_bytes())
            )
        })?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(
                block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            Some("tool_use") => {
                let field = |key: &str| {
                    block
                        .get(key)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| format!("a tool_use block has no `{key}`"))
                };
                tool_calls.push(ToolCall {
                    id: field("id")?,
                    name: field("name")?,
                    arguments: block
                        .get("input")
                        .cloned()
                        .unwrap_or_else(|| json!({}))
                        .to_string(),
                });
            }
            _ => {} // thinking and other blocks are not part of the chat shape
        }
    }
    let usage = body.get("usage").map(|u| {
        let n = |key: &str| {
            u.get(key)
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(u64::from(u32::MAX)) as u32
        };
        Usage {
            input_tokens: n("input_tokens")
                + n("cache_read_input_tokens")
                + n("cache_creation_input_tokens"),
            output_tokens: n("output_tokens"),
        }
    });
    let finish_reason = match body.get("stop_reason").and_then(Value::as_str) {
        Some("end_turn") | Some("stop_sequence") | None => "stop".to_string(),
        Some("max_tokens") => "length".to_string(),
        Some("tool_use") => "tool-calls".to_string(),
        Some(other) => other.replace('_', "-"),
    };
    Ok(BackendReply {
        message: ChatMessage {
            role: Role::Assistant,
            content: text,
            tool_calls,
            tool_call_id: None,
        },
        usage,
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        finish_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::types::ToolDefinition;

    #[test]
    fn tool_results_join_one_user_turn_and_system_moves_out() {
        let mut asked = ChatMessage::new(Role::Assistant, "Let me look.");
        for id in ["a", "b"] {
            asked.tool_calls.push(ToolCall {
                id: id.into(),
                name: "lookup".into(),
                arguments: r#"{"q":1}"#.into(),
            });
        }
        let answer = |id: &str| ChatMessage {
            tool_call_id: Some(id.into()),
            ..ChatMessage::new(Role::Tool, "found")
        };
        let mut request = ChatRequest::new(
            "x",
            vec![
                ChatMessage::new(Role::System, "Be brief."),
                ChatMessage::new(Role::User, "Find it."),
                asked,
                answer("a"),
                answer("b"),
            ],
        );
        request.tools.push(ToolDefinition {
            name: "lookup".into(),
            description: "Looks up.".into(),
            parameters: r#"{"type":"object"}"#.into(),
        });
        let body = request_body("claude-x", &request, 100);
        assert_eq!(body["system"], "Be brief.");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"][1]["type"], "tool_use");
        assert_eq!(messages[1]["content"][1]["input"]["q"], 1);
        assert_eq!(messages[2]["role"], "user");
        assert_eq!(messages[2]["content"].as_array().unwrap().len(), 2);
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    }

    #[test]
    fn a_tool_use_answer_is_read() {
        let reply = parse_message(&json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5}
        }))
        .unwrap();
        assert_eq!(reply.finish_reason, "tool-calls");
        assert_eq!(reply.message.tool_calls[0].arguments, r#"{"q":"x"}"#);
        assert_eq!(reply.usage.unwrap().total(), 15);
    }

    #[test]
    fn something_else_is_an_error() {
        assert!(parse_message(&json!({"choices": []})).is_err());
        let err =
            parse_message(&json!({"type": "error", "error": {"type": "x", "message": "bad"}}))
                .unwrap_err();
        assert!(err.contains("bad"));
    }
}
