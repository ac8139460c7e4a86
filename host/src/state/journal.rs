//! The step journal: the durability boundary of the agent loop. Each session's entries are
//! numbered 0, 1, 2, ... with no gaps; an append names the step it expects to be next and the
//! fencing token of the lease it holds, and lands whole or not at all. Every model response and
//! every tool result is committed here before the next step runs, so `resume` replays the journal
//! and reruns only the step that was in flight, with its recorded call id (Golem's oplog
//! discipline, at the tool-call and model-call boundary).

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use super::leases::FencingToken;
use super::sessions::SessionId;

/// The largest payload of one entry, in bytes of JSON text. A model response or a tool result
/// (whose size the call limits already bound) fits; a runaway loop does not fill the store with
/// one step.
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// The most entries one append carries (one per tool call a model response asked for, say).
pub const MAX_ENTRIES_PER_APPEND: usize = 256;

/// The longest call id, in bytes (providers' tool-call ids are a few dozen).
pub const MAX_CALL_ID_BYTES: usize = 256;

/// The most entries one [`SessionJournal::read_journal`] returns; ask again from the next step.
pub const MAX_READ_ENTRIES: u32 = 10_000;

/// What a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// A task (one input to the session) began; the payload is the input.
    TaskStarted,
    /// The model answered (text, tool calls, or both).
    ModelResponse,
    /// A tool call is about to run; its call id is the one a retry reuses.
    ToolCall,
    /// A tool call's result (or its failure).
    ToolResult,
    /// The task's final answer.
    FinalAnswer,
    /// The task ended without an answer (max steps, a refused tool, a model failure).
    TaskFailed,
    /// The older turns, up to a step, summarised by the model so the history fits the context
    /// budget; the turns themselves stay in the journal.
    ContextSummary,
}

impl StepKind {
    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::TaskStarted => "task_started",
            StepKind::ModelResponse => "model_response",
            StepKind::ToolCall => "tool_call",
            StepKind::ToolResult => "tool_result",
            StepKind::FinalAnswer => "final_answer",
            StepKind::TaskFailed => "task_failed",
            StepKind::ContextSummary => "context_summary",
        }
    }

    /// The kind a stored word names; `None` for a word this build does not know.
    pub fn parse(word: &str) -> Option<StepKind> {
        [
            StepKind::TaskStarted,
            StepKind::ModelResponse,
            StepKind::ToolCall,
            StepKind::ToolResult,
            StepKind::FinalAnswer,
            StepKind::TaskFailed,
            StepKind::ContextSummary,
        ]
        .into_iter()
        .find(|k| k.as_str() == word)
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStep {
    /// The task it belongs to.
    pub task: Uuid,
    /// What it records.
    pub kind: StepKind,
    /// The model's or the loop's id for the call it concerns, if any.
    pub call_id: Option<String>,
    /// What happened, as JSON.
    pub payload: serde_json::Value,
}

/// A committed entry.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// Its position in the session's journal, from 0.
    pub step: u64,
    /// The task it belongs to.
    pub task: Uuid,
    /// What it records.
    pub kind: StepKind,
    /// The call it concerns, if any.
    pub call_id: Option<String>,
    /// What happened.
    pub payload: serde_json::Value,
    /// The fencing token it was written under.
    pub token: FencingToken,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub recorded_at_ms: u64,
}

/// Each session's journal. Appends are refused unless the writer holds the session's live lease
/// with that token ([`StoreError::Fenced`]) and names the step that is next
/// ([`StoreError::Conflict`] carrying the step that is, as its `current_version`).
#[async_trait]
pub trait SessionJournal: Send + Sync {
    /// Appends `steps` as steps `expected_step`, `expected_step + 1`, ... in one commit and
    /// returns the step that is next after them.
    async fn append_steps(
        &self,
        tenant: &str,
        session: SessionId,
        expected_step: u64,
        token: FencingToken,
        steps: &[NewStep],
    ) -> Result<u64, StoreError>;

    /// The entries from step `from` on, in order, at most `limit` of them (0 or more than
    /// [`MAX_READ_ENTRIES`] means [`MAX_READ_ENTRIES`]). [`StoreError::NotFound`] when the
    /// tenant has no such session.
    async fn read_journal(
        &self,
        tenant: &str,
        session: SessionId,
        from: u64,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, StoreError>;
}

/// A step ready for SQL: its JSON rendered once, and every bound checked.
pub(crate) struct EncodedStep {
    pub task: String,
    pub kind: &'static str,
    pub call_id: Option<String>,
    pub payload: String,
}

/// Checks an append's shape and bounds and renders its payloads; bad input is refused here,
/// before any transaction starts.
pub(crate) fn encode_steps(steps: &[NewStep]) -> Result<Vec<EncodedStep>, StoreError> {
    if steps.is_empty() {
        return Err(StoreError::invalid("an append needs at least one step"));
    }
    if steps.len() > MAX_ENTRIES_PER_APPEND {
        return Err(StoreError::invalid(format!(
            "an append of {} steps; the most is {MAX_ENTRIES_PER_APPEND}",
            steps.len()
        )));
    }
    steps
        .iter()
        .map(|s| {
            if let Some(id) = &s.call_id
                && (id.is_empty() || id.len() > MAX_CALL_ID_BYTES || id.contains('\0'))
            {
                return Err(StoreError::invalid(format!(
                    "a call id must be 1 to {MAX_CALL_ID_BYTES} bytes without NUL; got {} bytes",
                    id.len()
                )));
            }
            let payload = serde_json::to_string(&s.payload)
                .map_err(|e| StoreError::invalid(format!("a step payload: {e}")))?;
            if payload.len() > MAX_PAYLOAD_BYTES {
                return Err(StoreError::invalid(format!(
                    "a {} step's payload is {} bytes of JSON; the most is {MAX_PAYLOAD_BYTES}",
                    s.kind,
                    payload.len()
                )));
            }
            Ok(EncodedStep {
                task: s.task.hyphenated().to_string(),
                kind: s.kind.as_str(),
                call_id: s.call_id.clone(),
                payload,
            })
        })
        .collect()
}

/// The read size a caller asks for, within [`MAX_READ_ENTRIES`].
pub(crate) fn read_limit(limit: u32) -> u32 {
    if limit == 0 || limit > MAX_READ_ENTRIES {
        MAX_READ_ENTRIES
    } else {
        limit
    }
}

/// Decides whether an append names the step that is next; the refusal carries that step.
pub(crate) fn check_next_step(next: u64, expected: u64) -> Result<(), StoreError> {
    if next == expected {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            current_version: next as i64,
        })
    }
}

/// Turns a stored row back into an entry; a row this build cannot read is reported, not
/// guessed at.
pub(crate) fn decode_entry(
    step: i64,
    task: &str,
    kind: &str,
    call_id: Option<String>,
    payload: &str,
    token: i64,
    recorded_at_ms: i64,
) -> Result<JournalEntry, StoreError> {
    let unreadable =
        |what: &str| StoreError::Database(format!("journal step {step}: unreadable {what}"));
    Ok(JournalEntry {
        step: step.max(0) as u64,
        task: Uuid::parse_str(task).map_err(|_| unreadable("task id"))?,
        kind: StepKind::parse(kind).ok_or_else(|| unreadable("kind"))?,
        call_id,
        payload: serde_json::from_str(payload).map_err(|_| unreadable("payload"))?,
        token: FencingToken(token.max(0) as u64),
        recorded_at_ms: recorded_at_ms.max(0) as u64,
    })
}
