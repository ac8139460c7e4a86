//! The router's requests, responses and errors: the shape of the WIT `model` interface, in
//! plain Rust, so that plugins and Warden's own agent loop speak the same language to it.

use std::fmt;

/// The most tokens a completion generates (and reserves) when the request does not say.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// The most tokens one request may ask to generate.
pub const MAX_MAX_TOKENS: u32 = 1_000_000;
/// The most messages one request may carry.
pub const MAX_MESSAGES: usize = 10_000;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl Role {
    /// The role's name in the chat-completions wire format.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A tool the model may ask to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolDefinition {
    /// The tool's name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its input, as JSON text.
    pub parameters: String,
}

/// A call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's id; a `tool` message answers it by this id.
    pub id: String,
    /// The tool to call.
    pub name: String,
    /// The call's input, as JSON text.
    pub arguments: String,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// Calls requested by an assistant message.
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the call it answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with `role` and `content`, and no tool calls.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A completion request, naming a model alias from the operator's config.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The alias, never a provider's model name.
    pub alias: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may ask to call.
    pub tools: Vec<ToolDefinition>,
    /// The most tokens to generate; [`DEFAULT_MAX_TOKENS`] when `None`.
    pub max_tokens: Option<u32>,
    /// The sampling temperature, from 0 to 2; the backend's default when `None`.
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// A request to `alias` with `messages`, no tools, and the defaults.
    pub fn new(alias: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            alias: alias.into(),
            messages,
            tools: Vec::new(),
            max_tokens: None,
            temperature: None,
        }
    }

    /// The most tokens this request lets the backend generate.
    pub fn output_limit(&self) -> u32 {
        self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)
    }

    /// A rough count of the prompt's tokens (a token is about four bytes of text), for the
    /// quota reservation and for backends that do not report usage.
    pub fn estimated_input_tokens(&self) -> u64 {
        let messages: usize = self
            .messages
            .iter()
            .map(|m| {
                m.content.len()
                    + m.tool_calls
                        .iter()
                        .map(|c| c.name.len() + c.arguments.len())
                        .sum::<usize>()
            })
            .sum();
        let tools: usize = self
            .tools
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.parameters.len())
            .sum();
        estimate_tokens(messages + tools)
    }

    /// The tokens reserved against quotas before the call: the output limit plus the
    /// estimated prompt. The actual usage replaces it once the backend answers.
    pub fn reserved_tokens(&self) -> u64 {
        u64::from(self.output_limit()) + self.estimated_input_tokens()
    }

    /// Checks what every backend needs: messages, roles in order, tool calls answered by id,
    /// JSON where JSON is due. The message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.messages.is_empty() {
            return Err("the request has no messages; send at least one user message".into());
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(format!(
                "the request has {} messages; the most is {MAX_MESSAGES}",
                self.messages.len()
            ));
        }
        if let Some(max) = self.max_tokens
            && !(1..=MAX_MAX_TOKENS).contains(&max)
        {
            return Err(format!(
                "max-tokens is {max}; it must be from 1 to {MAX_MAX_TOKENS}"
            ));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(format!("temperature is {t}; it must be from 0 to 2"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, tool) in self.tools.iter().enumerate() {
            if tool.name.is_empty()
                || !tool
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "tools[{i}]: `{}` is not a tool name; use letters, digits, `_` and `-`",
                    tool.name
                ));
            }
            if !names.insert(tool.name.as_str()) {
                return Err(format!("tools[{i}]: tool `{}` is defined twice", tool.name));
            }
            match serde_json::from_str::<serde_json::Value>(&tool.parameters) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => {
                    return Err(format!(
                        "tools[{i}] (`{}`): parameters must be a JSON Schema object",
                        tool.name
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "tools[{i}] (`{}`): parameters are not JSON: {e}",
                        tool.name
                    ));
                }
            }
        }
        let mut asked = std::collections::BTreeSet::new();
        for (i, m) in self.messages.iter().enumerate() {
            if !m.tool_calls.is_empty() && m.role != Role::Assistant {
                return Err(format!(
                    "messages[{i}]: only an assistant message carries tool calls"
                ));
            }
            for call in &m.tool_calls {
                if call.id.is_empty() || call.name.is_empty() {
                    return Err(format!("messages[{i}]: a tool call needs an id and a name"));
                }
                if serde_json::from_str::<serde::de::IgnoredAny>(&call.arguments).is_err() {
                    return Err(format!(
                        "messages[{i}]: the arguments of tool call `{}` are not JSON",
                        call.id
                    ));
                }
                asked.insert(call.id.as_str());
            }
            match (m.role, &m.tool_call_id) {
                (Role::Tool, None) => {
                    return Err(format!(
                        "messages[{i}]: a tool message needs the tool-call-id it answers"
                    ));
                }
                (Role::Tool, Some(id)) if !asked.contains(id.as_str()) => {
                    return Err(format!(
                        "messages[{i}]: tool-call-id `{id}` answers no tool call of an earlier assistant message"
                    ));
                }
                (Role::Tool, Some(_)) => {}
                (_, Some(_)) => {
                    return Err(format!(
                        "messages[{i}]: only a tool message carries a tool-call-id"
                    ));
                }
                (_, None) => {}
            }
        }
        Ok(())
    }
}

/// Tokens used by one completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens read.
    pub input_tokens: u32,
    /// Tokens generated.
    pub output_tokens: u32,
}

impl Usage {
    /// Input and output together, as quotas count them.
    pub fn total(&self) -> u64 {
        u64::from(self.input_tokens) + u64::from(self.output_tokens)
    }
}

/// A completion, and who served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The model's message.
    pub message: ChatMessage,
    /// The tokens it used.
    pub usage: Usage,
    /// The alias that served it: the one asked for, or one of its fallbacks.
    pub served_by: String,
    /// The provider's model name.
    pub model: String,
    /// Why generation stopped: `stop`, `length`, `tool-calls`, `content-filter`.
    pub finish_reason: String,
}

/// Why a completion did not succeed. The kinds of the WIT `model-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// The alias was not granted to the caller; the message names the grant.
    Denied(String),
    /// A quota ran out.
    QuotaExceeded {
        /// Which quota, in words.
        message: String,
        /// When the quota resets, in milliseconds since the Unix epoch.
        resets_at_ms: u64,
    },
    /// Every backend for the alias failed; the message says how.
    Backend(String),
    /// The request was malformed or named an unknown alias.
    Invalid(String),
    /// The call's audit record could not be committed, so nothing was sent (fail closed), or
    /// the answer is withheld.
    AuditUnavailable(String),
}

impl ModelError {
    /// `denied`, `quota-exceeded`, `backend` or `invalid`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelError::Denied(_) => "denied",
            ModelError::QuotaExceeded { .. } => "quota-exceeded",
            ModelError::Backend(_) => "backend",
            ModelError::Invalid(_) => "invalid",
            ModelError::AuditUnavailable(_) => "audit-unavailable",
        }
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            ModelError::Denied(m)
            | ModelError::Backend(m)
            | ModelError::Invalid(m)
            | ModelError::AuditUnavailable(m)
            | ModelError::QuotaExceeded { message: m, .. } => m,
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for ModelError {}

/// Tokens in `bytes` of text, roughly: four bytes a token, rounded up.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> ChatMessage {
        ChatMessage::new(Role::User, text)
    }

    #[test]
    fn the_reservation_is_the_output_limit_plus_the_prompt() {
        let mut req = ChatRequest::new("fast", vec![user("12345678")]);
        assert_eq!(req.reserved_tokens(), u64::from(DEFAULT_MAX_TOKENS) + 2);
        req.max_tokens = Some(10);
        assert_eq!(req.reserved_tokens(), 12);
    }

    #[test]
    fn an_empty_request_is_invalid() {
        let err = ChatRequest::new("fast", vec![]).validate().unwrap_err();
        assert!(err.contains("no messages"), "{err}");
    }

    #[test]
    fn a_tool_result_must_answer_an_earlier_call() {
        let mut answer = ChatMessage::new(Role::Tool, "42");
        answer.tool_call_id = Some("call_9".into());
        let err = ChatRequest::new("fast", vec![user("hi"), answer.clone()])
            .validate()
            .unwrap_err();
        assert!(err.contains("call_9"), "{err}");
        let mut asked = ChatMessage::new(Role::Assistant, "");
        asked.tool_calls.push(ToolCall {
            id: "call_9".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        });
        ChatRequest::new("fast", vec![user("hi"), asked, answer])
            .validate()
            .unwrap();
    }

    #[test]
    fn tool_parameters_must_be_a_json_object() {
        let mut req = ChatRequest::new("fast", vec![user("hi")]);
        req.tools.push(ToolDefinition {
            name: "lookup".into(),
            description: String::new(),
            parameters: "[1]".into(),
        });
        assert!(req.validate().unwrap_err().contains("JSON Schema object"));
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let mut req = ChatRequest::new("fast", vec![user("hi")]);
        req.temperature = Some(3.0);
        assert!(req.validate().unwrap_err().contains("temperature"));
        req.temperature = None;
        req.max_tokens = Some(0);
        assert!(req.validate().unwrap_err().contains("max-tokens"));
    }
}
