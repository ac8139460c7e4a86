//! What a running task tells its front end as it goes: the CLI prints these as progress lines,
//! and the HTTP API streams them as server-sent events.

use std::sync::Arc;

use serde::Serialize;

/// One thing that happened in a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The task runs in this session.
    Session {
        /// The session's id.
        session: String,
        /// Whether it was created for this task.
        created: bool,
    },
    /// Another holder has the session; the task waits for it.
    Waiting {
        /// Who holds the session's lease.
        holder: String,
        /// When its lease lapses unless renewed, in milliseconds since the Unix epoch.
        until_ms: u64,
    },
    /// The task began, or resumed from its journal.
    TaskStarted {
        /// The task's id.
        task: String,
        /// Whether it resumed an interrupted task.
        resumed: bool,
    },
    /// The model answered.
    ModelTurn {
        /// Which model step of the task, from 1.
        model_step: u32,
        /// The alias that served it.
        served_by: String,
        /// Tokens read.
        input_tokens: u32,
        /// Tokens generated.
        output_tokens: u32,
        /// How long the model took.
        elapsed_ms: u64,
        /// How many tool calls it asked for.
        tool_calls: usize,
    },
    /// A tool call starts.
    ToolStarted {
        /// Its Warden call-id.
        call_id: String,
        /// The tool's model name.
        name: String,
    },
    /// A tool call ended.
    ToolFinished {
        /// Its Warden call-id.
        call_id: String,
        /// The tool's model name.
        name: String,
        /// Whether it gave an output.
        ok: bool,
        /// How long it took.
        elapsed_ms: u64,
        /// Why it failed, when it did.
        error: Option<String>,
    },
    /// Older turns were folded into a summary.
    Compacted {
        /// The last journal step the summary covers.
        through_step: u64,
    },
    /// A compaction failed; the history was left as it was.
    CompactionFailed {
        /// Why.
        message: String,
    },
    /// The task's final answer.
    Answer {
        /// Its text.
        text: String,
    },
    /// The task ended without an answer.
    Stopped {
        /// `max_steps`.
        reason: String,
        /// In words.
        message: String,
    },
}

/// Where a task's events go.
pub type EventSink = Arc<dyn Fn(&AgentEvent) + Send + Sync>;

/// A sink that drops every event.
pub fn no_events() -> EventSink {
    Arc::new(|_| {})
}
