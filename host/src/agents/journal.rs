//! What the agent loop writes to a session's journal, as typed payloads. Each entry kind has one
//! payload shape; `warden session show`, the HTTP API and resume all read these, so the field
//! names are a contract.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::models::{ToolCall, Usage};
use crate::state::journal::{JournalEntry, NewStep, StepKind};

/// `task_started`: one input to the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStarted {
    /// The task as the user gave it.
    pub input: String,
}

/// A tool call as the model asked for it, inside a `model_response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskedCall {
    /// The model's id for the call; the tool's result answers it.
    pub id: String,
    /// The model name of the tool.
    pub name: String,
    /// The arguments, as the model wrote them (not necessarily JSON).
    pub arguments: String,
}

/// Tokens of one model call, as journaled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Tokens read.
    pub input_tokens: u32,
    /// Tokens generated.
    pub output_tokens: u32,
}

impl From<Usage> for UsageRecord {
    fn from(u: Usage) -> Self {
        UsageRecord {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

/// `model_response`: what the model answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    /// Its text (possibly empty when it only calls tools).
    pub text: String,
    /// The tool calls it asked for.
    pub tool_calls: Vec<AskedCall>,
    /// The tokens it used.
    pub usage: UsageRecord,
    /// The alias that served it.
    pub served_by: String,
    /// The provider's model name.
    pub model: String,
    /// Why generation stopped.
    pub finish_reason: String,
    /// Which model step of the task this is, from 1.
    pub model_step: u32,
}

impl ModelResponse {
    /// The tool calls as the router's type, for the conversation sent back to the model.
    /// What the model wrote is hostile input: a call without a name, or with arguments that
    /// are not JSON, would make every later request of the session invalid, so such calls are
    /// replayed with a placeholder name and the text wrapped in a JSON object (the call's
    /// result already told the model what was wrong).
    pub fn calls(&self) -> Vec<ToolCall> {
        self.tool_calls
            .iter()
            .map(|c| ToolCall {
                id: c.id.clone(),
                name: if c.name.is_empty() {
                    "unnamed".into()
                } else {
                    c.name.clone()
                },
                arguments: if serde_json::from_str::<serde_json::Map<String, Value>>(&c.arguments)
                    .is_ok()
                {
                    c.arguments.clone()
                } else {
                    serde_json::json!({ "unparsed_arguments": c.arguments }).to_string()
                },
            })
            .collect()
    }
}

/// `tool_call`: a call about to run; the entry's `call_id` is the Warden call-id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCall {
    /// Its position among the calls of its model response.
    pub index: usize,
    /// The model's id for it.
    pub model_call_id: String,
    /// The model name of the tool.
    pub name: String,
    /// The plugin it resolved to, or `None` when the name is none of the agent's tools.
    pub plugin: Option<String>,
    /// The tool it resolved to.
    pub tool: Option<String>,
    /// The arguments, as the model wrote them.
    pub arguments: String,
}

/// Why a tool call gave no output, as journaled and shown to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolFailure {
    /// `invalid-input`, `denied`, `tool-failed`, `limit-exceeded`, `unusable`, `unknown-tool`...
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

/// `tool_result`: a call's outcome; the entry's `call_id` is the call's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolOutcome {
    /// Its position among the calls of its model response.
    pub index: usize,
    /// The model's id for it.
    pub model_call_id: String,
    /// Whether the tool gave an output.
    pub ok: bool,
    /// The output, as JSON text, when it did.
    pub output: Option<String>,
    /// Why not, when it did not.
    pub error: Option<ToolFailure>,
    /// How long the call took.
    pub elapsed_ms: u64,
}

impl ToolOutcome {
    /// What the model reads as the call's result: the output, or the error as JSON.
    pub fn for_model(&self) -> String {
        match (&self.output, &self.error) {
            (Some(output), _) if self.ok => output.clone(),
            (_, Some(error)) => serde_json::json!({ "error": error }).to_string(),
            _ => serde_json::json!({ "error": { "kind": "unknown", "message": "no output" } })
                .to_string(),
        }
    }
}

/// `final_answer`: the task's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalAnswer {
    /// The answer's text.
    pub text: String,
}

/// `task_failed`: the task ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailed {
    /// `max_steps`.
    pub reason: String,
    /// In words.
    pub message: String,
}

/// `context_summary`: the turns up to `through_step`, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextSummary {
    /// The model's summary.
    pub summary: String,
    /// The last journal step it covers.
    pub through_step: u64,
}

/// A journal entry, read back as the loop's types.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// See [`TaskStarted`].
    TaskStarted(TaskStarted),
    /// See [`ModelResponse`].
    ModelResponse(ModelResponse),
    /// See [`PlannedCall`]; with its call-id.
    ToolCall(String, PlannedCall),
    /// See [`ToolOutcome`]; with its call-id.
    ToolResult(String, ToolOutcome),
    /// See [`FinalAnswer`].
    FinalAnswer(FinalAnswer),
    /// See [`TaskFailed`].
    TaskFailed(TaskFailed),
    /// See [`ContextSummary`].
    ContextSummary(ContextSummary),
}

/// A journal entry this build cannot read as the loop wrote it: the store was edited, or a
/// newer Warden wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal step {step} ({kind}) is unreadable: {cause}")]
pub struct Unreadable {
    /// The step.
    pub step: u64,
    /// Its kind.
    pub kind: String,
    /// What is wrong with it.
    pub cause: String,
}

/// Reads an entry's payload as its kind's type.
pub fn decode(entry: &JournalEntry) -> Result<Entry, Unreadable> {
    fn payload<T: serde::de::DeserializeOwned>(entry: &JournalEntry) -> Result<T, Unreadable> {
        serde_json::from_value(entry.payload.clone()).map_err(|e| Unreadable {
            step: entry.step,
            kind: entry.kind.to_string(),
            cause: e.to_string(),
        })
    }
    let call_id = || {
        entry.call_id.clone().ok_or_else(|| Unreadable {
            step: entry.step,
            kind: entry.kind.to_string(),
            cause: "no call id".into(),
        })
    };
    Ok(match entry.kind {
        StepKind::TaskStarted => Entry::TaskStarted(payload(entry)?),
        StepKind::ModelResponse => Entry::ModelResponse(payload(entry)?),
        StepKind::ToolCall => Entry::ToolCall(call_id()?, payload(entry)?),
        StepKind::ToolResult => Entry::ToolResult(call_id()?, payload(entry)?),
        StepKind::FinalAnswer => Entry::FinalAnswer(payload(entry)?),
        StepKind::TaskFailed => Entry::TaskFailed(payload(entry)?),
        StepKind::ContextSummary => Entry::ContextSummary(payload(entry)?),
    })
}

/// A new journal entry of `kind` for `task`, with `payload`.
pub fn step(
    task: uuid::Uuid,
    kind: StepKind,
    call_id: Option<String>,
    payload: &impl Serialize,
) -> NewStep {
    NewStep {
        task,
        kind,
        call_id,
        // These payloads are plain structs of strings and numbers: serialising cannot fail.
        payload: serde_json::to_value(payload).unwrap_or(Value::Null),
    }
}
