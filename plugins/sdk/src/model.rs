//! Model completions through the host's router: aliases, fallbacks, quotas and audit.
//!
//! A request names a model **alias** from the operator's config, never a provider's model name,
//! and API keys stay in the host.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::__private::bindings::warden::plugin::model as wit;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user's words.
    User,
    /// The model's words, and the tool calls it asked for.
    Assistant,
    /// A tool's result, answering one of the model's tool calls.
    Tool,
}

/// A tool the model may ask to call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolDefinition {
    /// The tool's name.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the tool's input, as JSON text.
    pub parameters: String,
}

/// A call the model asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's id; a `tool` message answers it by this id.
    pub id: String,
    /// The tool to call.
    pub name: String,
    /// The call's input, as JSON text.
    pub arguments: String,
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// The calls requested by an assistant message.
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the id of the call it answers.
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with `role` and `content`, and no tool calls.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A tool's result, answering the call with id `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            tool_call_id: Some(call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
}

/// A completion request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// A model alias from the operator's config, never a provider's model name.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The tools the model may ask to call.
    pub tools: Vec<ToolDefinition>,
    /// The most tokens to generate; the backend's default when `None`.
    pub max_tokens: Option<u32>,
    /// The sampling temperature; the backend's default when `None`.
    pub temperature: Option<f32>,
}

impl Request {
    /// A request to model alias `model` with `messages`, no tools, and the backend's defaults.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Request {
            model: model.into(),
            messages,
            tools: Vec::new(),
            max_tokens: None,
            temperature: None,
        }
    }
}

/// Tokens used by one completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Tokens read.
    pub input_tokens: u32,
    /// Tokens generated.
    pub output_tokens: u32,
}

/// A completion, and who served it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The model's message.
    pub message: Message,
    /// The tokens it used.
    pub usage: Usage,
    /// The backend alias that served the call (after any fallback).
    pub backend: String,
    /// The provider's model name.
    pub model: String,
    /// Why generation stopped: `stop`, `length`, `tool-calls`, ...
    pub finish_reason: String,
}

/// Why a completion did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The alias was not granted; the message names the grant.
    Denied(String),
    /// A quota ran out.
    QuotaExceeded {
        /// Which quota, in words.
        message: String,
        /// When it resets, in milliseconds since the Unix epoch.
        resets_at_ms: u64,
    },
    /// Every backend for the alias failed; the message says how.
    Backend(String),
    /// The request was malformed or named an unknown alias; the message lists the aliases allowed.
    Invalid(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Denied(message) => write!(f, "model access denied: {message}"),
            ModelError::QuotaExceeded {
                message,
                resets_at_ms,
            } => write!(
                f,
                "model quota exceeded: {message} (resets at {resets_at_ms} ms since the Unix epoch)"
            ),
            ModelError::Backend(message) => write!(f, "model backend failed: {message}"),
            ModelError::Invalid(message) => write!(f, "invalid model request: {message}"),
        }
    }
}

impl std::error::Error for ModelError {}

impl ToolDefinition {
    /// A tool whose parameters are the JSON Schema derived from `I`, as [`crate::Tools::tool`]
    /// derives a tool's input schema.
    pub fn typed<I: schemars::JsonSchema>(
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        ToolDefinition {
            name: name.into(),
            description: description.into(),
            parameters: crate::tools::input_schema::<I>(),
        }
    }
}

impl ToolCall {
    /// The call's arguments as a Rust type; [`ModelError::Invalid`] when the model wrote
    /// arguments of another shape.
    pub fn arguments_as<T: DeserializeOwned>(&self) -> Result<T, ModelError> {
        serde_json::from_str(&self.arguments).map_err(|error| {
            ModelError::Invalid(format!(
                "the model's arguments for `{}` do not fit: {error}",
                self.name
            ))
        })
    }
}

impl Response {
    /// The message's text read as JSON into a Rust type, for a model asked to answer in JSON.
    /// A fenced block (```` ```json ... ``` ````) around the JSON is accepted.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ModelError> {
        let text = unfence(&self.message.content);
        serde_json::from_str(text).map_err(|error| {
            ModelError::Invalid(format!(
                "the model's answer is not the JSON expected: {error}"
            ))
        })
    }
}

/// The text inside a Markdown code fence, or the whole text when there is none.
fn unfence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(rest) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

/// Sends `prompt` as one user message to model alias `model` and returns the answer's text.
///
/// ```ignore
/// let summary = model::ask("fast", format!("Summarise in one line:\n{text}"))?;
/// ```
pub fn ask(model: impl Into<String>, prompt: impl Into<String>) -> Result<String, ModelError> {
    let request = Request::new(model, vec![Message::user(prompt)]);
    Ok(complete(request)?.message.content)
}

/// Asks the model behind `request.model` for a completion.
pub fn complete(request: Request) -> Result<Response, ModelError> {
    wit::complete(&request_to_wit(request))
        .map(response_from_wit)
        .map_err(|error| match error {
            wit::ModelError::Denied(message) => ModelError::Denied(message),
            wit::ModelError::QuotaExceeded(quota) => ModelError::QuotaExceeded {
                message: quota.message,
                resets_at_ms: quota.resets_at_ms,
            },
            wit::ModelError::Backend(message) => ModelError::Backend(message),
            wit::ModelError::Invalid(message) => ModelError::Invalid(message),
        })
}

fn request_to_wit(request: Request) -> wit::Request {
    wit::Request {
        model: request.model,
        messages: request.messages.into_iter().map(message_to_wit).collect(),
        tools: request
            .tools
            .into_iter()
            .map(|tool| wit::ToolDefinition {
                name: tool.name,
                description: tool.description,
                parameters: tool.parameters,
            })
            .collect(),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
    }
}

fn message_to_wit(message: Message) -> wit::Message {
    wit::Message {
        role: match message.role {
            Role::System => wit::Role::System,
            Role::User => wit::Role::User,
            Role::Assistant => wit::Role::Assistant,
            Role::Tool => wit::Role::Tool,
        },
        content: message.content,
        tool_calls: message
            .tool_calls
            .into_iter()
            .map(|call| wit::ToolCall {
                id: call.id,
                name: call.name,
                arguments: call.arguments,
            })
            .collect(),
        tool_call_id: message.tool_call_id,
    }
}

fn response_from_wit(response: wit::Response) -> Response {
    let message = response.message;
    Response {
        message: Message {
            role: match message.role {
                wit::Role::System => Role::System,
                wit::Role::User => Role::User,
                wit::Role::Assistant => Role::Assistant,
                wit::Role::Tool => Role::Tool,
            },
            content: message.content,
            tool_calls: message
                .tool_calls
                .into_iter()
                .map(|call| ToolCall {
                    id: call.id,
                    name: call.name,
                    arguments: call.arguments,
                })
                .collect(),
            tool_call_id: message.tool_call_id,
        },
        usage: Usage {
            input_tokens: response.usage.input_tokens,
            output_tokens: response.usage.output_tokens,
        },
        backend: response.backend,
        model: response.model,
        finish_reason: response.finish_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(content: &str) -> Response {
        Response {
            message: Message::assistant(content),
            usage: Usage {
                input_tokens: 1,
                output_tokens: 1,
            },
            backend: "b".into(),
            model: "m".into(),
            finish_reason: "stop".into(),
        }
    }

    #[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
    struct Verdict {
        /// Whether it holds.
        ok: bool,
    }

    #[test]
    fn an_answer_reads_as_json_with_or_without_a_fence() {
        assert_eq!(
            answer(r#"{"ok":true}"#).json::<Verdict>().unwrap(),
            Verdict { ok: true }
        );
        let fenced = "```json\n{\"ok\": false}\n```\n";
        assert_eq!(
            answer(fenced).json::<Verdict>().unwrap(),
            Verdict { ok: false }
        );
        assert!(matches!(
            answer("yes").json::<Verdict>(),
            Err(ModelError::Invalid(_))
        ));
    }

    #[test]
    fn a_typed_tool_definition_carries_the_derived_schema() {
        let tool = ToolDefinition::typed::<Verdict>("judge", "Judges.");
        let schema: serde_json::Value = serde_json::from_str(&tool.parameters).unwrap();
        assert_eq!(
            schema["properties"]["ok"]["description"],
            "Whether it holds."
        );
        let call = ToolCall {
            id: "1".into(),
            name: "judge".into(),
            arguments: r#"{"ok":true}"#.into(),
        };
        assert_eq!(
            call.arguments_as::<Verdict>().unwrap(),
            Verdict { ok: true }
        );
    }
}
