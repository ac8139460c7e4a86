//! Test plugin: `probe` sends one model request, built from its input, and returns everything
//! the plugin could see: its environment, its arguments, and the whole response or error. The
//! model tests drive the router through it, and check that no key appears anywhere in it.

use warden_sdk::model::{self, Message, ModelError, Request, Role, ToolCall, ToolDefinition};
use warden_sdk::prelude::*;
use warden_sdk::serde_json::{self, Value};

/// One chat message.
#[derive(Deserialize, JsonSchema)]
struct ProbeMessage {
    /// `system`, `user`, `assistant` or `tool`.
    role: String,
    #[serde(default)]
    content: String,
    /// Tool calls of an assistant message.
    #[serde(default)]
    tool_calls: Vec<ProbeToolCall>,
    /// The call a tool message answers.
    #[serde(default)]
    tool_call_id: Option<String>,
}

/// A tool call.
#[derive(Deserialize, Serialize, JsonSchema)]
struct ProbeToolCall {
    id: String,
    name: String,
    /// The arguments, as a JSON value.
    arguments: Value,
}

/// A tool the model may call.
#[derive(Deserialize, JsonSchema)]
struct ProbeTool {
    name: String,
    #[serde(default)]
    description: String,
    /// JSON Schema of its input.
    parameters: Value,
}

/// The request to send.
#[derive(Deserialize, JsonSchema)]
struct ProbeInput {
    /// The model alias.
    model: String,
    /// The messages; one user message "hello" when left out.
    #[serde(default)]
    messages: Vec<ProbeMessage>,
    #[serde(default)]
    tools: Vec<ProbeTool>,
    #[serde(default)]
    max_tokens: Option<u32>,
}

/// Everything the plugin saw.
#[derive(Serialize, JsonSchema)]
struct ProbeReport {
    /// Every environment variable, as NAME=VALUE.
    env: Vec<String>,
    /// The program arguments.
    args: Vec<String>,
    /// The response, every field, or null.
    response: Option<Value>,
    /// The error: its kind, message and (for quotas) reset time, or null.
    error: Option<Value>,
}

fn probe(_ctx: &Context, input: ProbeInput) -> Result<ProbeReport, ToolError> {
    let mut messages: Vec<Message> = input
        .messages
        .into_iter()
        .map(|m| Message {
            role: match m.role.as_str() {
                "system" => Role::System,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                _ => Role::User,
            },
            content: m.content,
            tool_calls: m
                .tool_calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments.to_string(),
                })
                .collect(),
            tool_call_id: m.tool_call_id,
        })
        .collect();
    if messages.is_empty() {
        messages.push(Message::user("hello"));
    }
    let mut request = Request::new(input.model, messages);
    request.tools = input
        .tools
        .into_iter()
        .map(|t| ToolDefinition {
            name: t.name,
            description: t.description,
            parameters: t.parameters.to_string(),
        })
        .collect();
    request.max_tokens = input.max_tokens;
    let (response, error) = match model::complete(request) {
        Ok(r) => {
            let calls: Vec<Value> = r
                .message
                .tool_calls
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.id,
                        "name": c.name,
                        "arguments": c.arguments,
                    })
                })
                .collect();
            let response = serde_json::json!({
                "message": {
                    "role": format!("{:?}", r.message.role),
                    "content": r.message.content,
                    "tool_calls": calls,
                    "tool_call_id": r.message.tool_call_id,
                },
                "usage": {
                    "input_tokens": r.usage.input_tokens,
                    "output_tokens": r.usage.output_tokens,
                },
                "backend": r.backend,
                "model": r.model,
                "finish_reason": r.finish_reason,
            });
            (Some(response), None)
        }
        Err(e) => {
            let error = match e {
                ModelError::Denied(m) => serde_json::json!({"kind": "denied", "message": m}),
                ModelError::QuotaExceeded {
                    message,
                    resets_at_ms,
                } => serde_json::json!({
                    "kind": "quota-exceeded",
                    "message": message,
                    "resets_at_ms": resets_at_ms,
                }),
                ModelError::Backend(m) => serde_json::json!({"kind": "backend", "message": m}),
                ModelError::Invalid(m) => serde_json::json!({"kind": "invalid", "message": m}),
            };
            (None, Some(error))
        }
    };
    Ok(ProbeReport {
        env: std::env::vars().map(|(k, v)| format!("{k}={v}")).collect(),
        args: std::env::args().collect(),
        response,
        error,
    })
}

fn tools() -> Tools {
    Tools::new().tool(
        "probe",
        "Makes one model call from its input and reports everything the plugin could see: env, \
         args, and the whole response or error. For testing the host's model capability.",
        probe,
    )
}

warden_sdk::export_plugin!(tools);
