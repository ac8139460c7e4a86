//! Stateful agents: sessions that keep their conversation across tasks and restarts, and the
//! agent loop that drives a model and the agent's tools.
//!
//! - [`task`]: the loop as a step function over a session's journal, without I/O;
//! - [`journal`]: the typed payloads the loop journals (a contract for every reader);
//! - [`runner`]: the I/O shell — the session's lease, the model, the tools, the journal;
//! - [`lease`]: holding a session's lease with a heartbeat;
//! - [`names`]: the model's names for the agent's tools, mapped back without ambiguity;
//! - [`events`]: what a running task tells its front end.

pub mod events;
pub mod journal;
pub mod lease;
pub mod names;
pub mod runner;
pub mod task;

pub use events::{AgentEvent, EventSink, no_events};
pub use runner::{AgentRunner, TaskReport, TaskRequest, TaskStatus};
