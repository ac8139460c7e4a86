//! The agent loop as a step function over the journal (Restate's state machine, Golem's
//! oplog). A session's journal is folded into a [`SessionView`]; [`next`] says what the loop does
//! now — ask the model, run the tool calls still without a result, stop at `max_steps`, or
//! nothing because the task ended. The I/O shell ([`super::runner`]) runs the action and
//! journals its outcome, and resuming after a crash is the same fold over the same journal.
//! Nothing here does I/O, so every path is unit-tested without a model or a plugin.

use uuid::Uuid;

use super::journal::{
    AskedCall, ContextSummary, Entry, FinalAnswer, PlannedCall, TaskFailed, ToolOutcome,
    Unreadable, decode,
};
use crate::models::{ChatMessage, Role};
use crate::state::journal::JournalEntry;

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// The model gave its final answer.
    Answered(String),
    /// It stopped without one.
    Failed(TaskFailed),
}

/// Where the session's last task stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskProgress {
    /// The task's id.
    pub task: Uuid,
    /// The journal step of its `task_started`.
    pub started_at: u64,
    /// Its input.
    pub input: String,
    /// How many model responses it has.
    pub model_steps: u32,
    /// How many tool calls its model responses asked for.
    pub tool_calls: u32,
    /// The tool calls of its last model response that have no result yet, in index order,
    /// each with its call-id.
    pub pending: Vec<(String, PlannedCall)>,
    /// How it ended, if it did.
    pub end: Option<TaskEnd>,
}

/// What the loop does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Ask the model; this is its `model_step`-th response in the task.
    CallModel {
        /// From 1.
        model_step: u32,
    },
    /// Run these tool calls (journaled, without a result), each with its call-id.
    RunTools(Vec<(String, PlannedCall)>),
    /// The task used its `max_steps` and asked for more: journal that it stopped.
    StopAtMaxSteps,
    /// The task is over.
    Ended(TaskEnd),
}

/// The step function: what the task in `progress` needs next, for an agent allowed
/// `max_steps` model responses per task. Pending tool calls always run first, so a task that
/// reaches its limit still records every result its last response asked for.
pub fn next(progress: &TaskProgress, max_steps: u32) -> Next {
    if let Some(end) = &progress.end {
        return Next::Ended(end.clone());
    }
    if !progress.pending.is_empty() {
        return Next::RunTools(progress.pending.clone());
    }
    if progress.model_steps >= max_steps {
        return Next::StopAtMaxSteps;
    }
    Next::CallModel {
        model_step: progress.model_steps + 1,
    }
}

/// One turn of the conversation, with the journal step it came from.
#[derive(Debug, Clone, PartialEq)]
struct Turn {
    step: u64,
    task: Uuid,
    entry: Entry,
}

/// A session's journal, folded: every entry decoded, and the next step's number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionView {
    entries: Vec<JournalEntry>,
    turns: Vec<Turn>,
    next_step: u64,
}

impl SessionView {
    /// Folds a journal read from step 0.
    pub fn from_journal(entries: &[JournalEntry]) -> Result<SessionView, Unreadable> {
        let mut view = SessionView::default();
        view.extend(entries)?;
        Ok(view)
    }

    /// Adds entries just committed (or read) after the ones already folded.
    pub fn extend(&mut self, entries: &[JournalEntry]) -> Result<(), Unreadable> {
        for entry in entries {
            self.turns.push(Turn {
                step: entry.step,
                task: entry.task,
                entry: decode(entry)?,
            });
            self.entries.push(entry.clone());
            self.next_step = entry.step + 1;
        }
        Ok(())
    }

    /// The journal entries from step `from` on, as stored.
    pub fn entries_from(&self, from: u64) -> &[JournalEntry] {
        let at = self.entries.partition_point(|e| e.step < from);
        &self.entries[at..]
    }

    /// The step the next append must name.
    pub fn next_step(&self) -> u64 {
        self.next_step
    }

    /// The session's last task, as it stands; `None` for a session that never ran one.
    pub fn last_task(&self) -> Option<TaskProgress> {
        let start = self
            .turns
            .iter()
            .rposition(|t| matches!(t.entry, Entry::TaskStarted(_)))?;
        self.task_from(start)
    }

    /// Every task of the session, oldest first, each as it stands.
    pub fn tasks(&self) -> Vec<TaskProgress> {
        (0..self.turns.len())
            .filter(|&i| matches!(self.turns[i].entry, Entry::TaskStarted(_)))
            .filter_map(|i| self.task_from(i))
            .collect()
    }

    /// The task that began at turn `start`, folded up to the next task's start.
    fn task_from(&self, start: usize) -> Option<TaskProgress> {
        let Entry::TaskStarted(started) = &self.turns[start].entry else {
            return None;
        };
        let mut progress = TaskProgress {
            task: self.turns[start].task,
            started_at: self.turns[start].step,
            input: started.input.clone(),
            model_steps: 0,
            tool_calls: 0,
            pending: Vec::new(),
            end: None,
        };
        for turn in &self.turns[start + 1..] {
            if matches!(turn.entry, Entry::TaskStarted(_)) {
                break;
            }
            match &turn.entry {
                Entry::ModelResponse(_) => {
                    progress.model_steps += 1;
                    progress.pending.clear();
                }
                Entry::ToolCall(call_id, call) => {
                    progress.tool_calls += 1;
                    progress.pending.push((call_id.clone(), call.clone()))
                }
                Entry::ToolResult(call_id, _) => progress.pending.retain(|(id, _)| id != call_id),
                Entry::FinalAnswer(FinalAnswer { text }) => {
                    progress.end = Some(TaskEnd::Answered(text.clone()));
                }
                Entry::TaskFailed(failed) => progress.end = Some(TaskEnd::Failed(failed.clone())),
                Entry::TaskStarted(_) | Entry::ContextSummary(_) => {}
            }
        }
        progress.pending.sort_by_key(|(_, c)| c.index);
        Some(progress)
    }

    /// The model's tool-call ids already used in this session.
    pub fn used_call_ids(&self) -> std::collections::BTreeSet<String> {
        self.turns
            .iter()
            .filter_map(|t| match &t.entry {
                Entry::ModelResponse(r) => Some(r.tool_calls.iter().map(|c| c.id.clone())),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The newest summary, if the session was compacted.
    fn summary(&self) -> Option<&ContextSummary> {
        self.turns.iter().rev().find_map(|t| match &t.entry {
            Entry::ContextSummary(s) => Some(s),
            _ => None,
        })
    }

    /// The conversation the model is sent: the instructions, the newest summary, and every
    /// turn after it. Tool results follow their model response in index order, whatever order
    /// the calls finished in.
    pub fn messages(&self, instructions: &str) -> Vec<ChatMessage> {
        let mut messages = Vec::new();
        if !instructions.trim().is_empty() {
            messages.push(ChatMessage::new(Role::System, instructions));
        }
        let summary = self.summary();
        if let Some(s) = summary {
            messages.push(ChatMessage::new(Role::System, summary_message(s)));
        }
        let after = summary.map(|s| s.through_step);
        let kept = self
            .turns
            .iter()
            .filter(|t| after.is_none_or(|through| t.step > through));
        let mut results: Vec<(usize, ChatMessage)> = Vec::new();
        let flush = |messages: &mut Vec<ChatMessage>, results: &mut Vec<(usize, ChatMessage)>| {
            results.sort_by_key(|(i, _)| *i);
            messages.extend(results.drain(..).map(|(_, m)| m));
        };
        for turn in kept {
            match &turn.entry {
                Entry::TaskStarted(started) => {
                    flush(&mut messages, &mut results);
                    messages.push(ChatMessage::new(Role::User, started.input.clone()));
                }
                Entry::ModelResponse(response) => {
                    flush(&mut messages, &mut results);
                    let mut message = ChatMessage::new(Role::Assistant, response.text.clone());
                    message.tool_calls = response.calls();
                    messages.push(message);
                }
                Entry::ToolResult(_, outcome) => {
                    let mut message = ChatMessage::new(Role::Tool, outcome.for_model());
                    message.tool_call_id = Some(outcome.model_call_id.clone());
                    results.push((outcome.index, message));
                }
                Entry::ToolCall(..)
                | Entry::FinalAnswer(_)
                | Entry::TaskFailed(_)
                | Entry::ContextSummary(_) => {}
            }
        }
        flush(&mut messages, &mut results);
        messages
    }

    /// What a compaction would fold into a summary before the task that starts at
    /// `current_task_start`: the newest summary and the turns after it, up to that task, as
    /// a transcript; and the step it would cover through. `None` when there is nothing older
    /// than the current task left to fold.
    pub fn compaction(&self, current_task_start: u64) -> Option<(String, u64)> {
        let previous = self.summary();
        let from = previous.map_or(0, |s| s.through_step + 1);
        if current_task_start <= from {
            return None;
        }
        let through = current_task_start - 1;
        let mut transcript = String::new();
        if let Some(s) = previous {
            transcript.push_str(&summary_message(s));
            transcript.push_str("\n\n");
        }
        for turn in self
            .turns
            .iter()
            .filter(|t| (from..=through).contains(&t.step))
        {
            let line = match &turn.entry {
                Entry::TaskStarted(s) => format!("User: {}", clipped(&s.input)),
                Entry::ModelResponse(r) => {
                    let mut line = format!("Assistant: {}", clipped(&r.text));
                    for call in &r.tool_calls {
                        line.push_str(&format!(
                            "\n  (calls {} with {})",
                            call.name,
                            clipped(&call.arguments)
                        ));
                    }
                    line
                }
                Entry::ToolResult(_, outcome) => {
                    format!(
                        "Tool result {}: {}",
                        outcome.index,
                        clipped(&outcome.for_model())
                    )
                }
                Entry::TaskFailed(f) => format!("(the task stopped: {})", f.message),
                Entry::ToolCall(..) | Entry::FinalAnswer(_) | Entry::ContextSummary(_) => {
                    continue;
                }
            };
            transcript.push_str(&line);
            transcript.push('\n');
        }
        Some((transcript, through))
    }
}

/// The most of one turn's text a compaction transcript carries: the summary needs the gist,
/// and the turn itself stays in the journal.
const TRANSCRIPT_TURN_BYTES: usize = 4096;

fn clipped(text: &str) -> String {
    if text.len() <= TRANSCRIPT_TURN_BYTES {
        return text.to_string();
    }
    let end = text.floor_char_boundary(TRANSCRIPT_TURN_BYTES);
    format!("{}… ({} bytes more)", &text[..end], text.len() - end)
}

fn summary_message(s: &ContextSummary) -> String {
    format!(
        "Summary of the earlier conversation in this session (its turns up to journal step {}):\n{}",
        s.through_step, s.summary
    )
}

/// Makes the model's tool-call ids usable as keys: each must be non-empty and unique in the
/// session's conversation (`used` holds the ids earlier turns took), or results could not be
/// told apart and a provider may refuse the history. A missing or repeated id is replaced by
/// one made from the journal step and the call's index.
pub fn distinct_call_ids(
    calls: &mut [AskedCall],
    step: u64,
    used: &std::collections::BTreeSet<String>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (index, call) in calls.iter_mut().enumerate() {
        if call.id.is_empty()
            || call.id.len() > 256
            || used.contains(&call.id)
            || !seen.insert(call.id.clone())
        {
            call.id = format!("warden_{step}_{index}");
            seen.insert(call.id.clone());
        }
    }
}

/// A tool outcome for a call that never reached a plugin.
pub fn refused(call: &PlannedCall, kind: &str, message: String) -> ToolOutcome {
    ToolOutcome {
        index: call.index,
        model_call_id: call.model_call_id.clone(),
        ok: false,
        output: None,
        error: Some(super::journal::ToolFailure {
            kind: kind.to_string(),
            message,
        }),
        elapsed_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::journal::{ModelResponse, TaskStarted, ToolFailure, UsageRecord, step};
    use super::*;
    use crate::state::journal::StepKind;
    use crate::state::leases::FencingToken;

    struct Journal {
        task: Uuid,
        entries: Vec<JournalEntry>,
    }

    impl Journal {
        fn new() -> Journal {
            Journal {
                task: Uuid::now_v7(),
                entries: Vec::new(),
            }
        }

        fn push(&mut self, kind: StepKind, call_id: Option<&str>, payload: serde_json::Value) {
            let s = step(self.task, kind, call_id.map(str::to_string), &payload);
            self.entries.push(JournalEntry {
                step: self.entries.len() as u64,
                task: s.task,
                kind: s.kind,
                call_id: s.call_id,
                payload: s.payload,
                token: FencingToken(1),
                recorded_at_ms: 0,
            });
        }

        fn start(&mut self, input: &str) {
            self.task = Uuid::now_v7();
            let p = serde_json::to_value(TaskStarted {
                input: input.into(),
            })
            .unwrap();
            self.push(StepKind::TaskStarted, None, p);
        }

        fn respond(&mut self, text: &str, calls: &[&str]) {
            let response = ModelResponse {
                text: text.into(),
                tool_calls: calls
                    .iter()
                    .map(|id| AskedCall {
                        id: id.to_string(),
                        name: "p__t".into(),
                        arguments: "{}".into(),
                    })
                    .collect(),
                usage: UsageRecord::default(),
                served_by: "fast".into(),
                model: "m".into(),
                finish_reason: "stop".into(),
                model_step: 1,
            };
            self.push(
                StepKind::ModelResponse,
                None,
                serde_json::to_value(&response).unwrap(),
            );
            for (index, id) in calls.iter().enumerate() {
                let call = PlannedCall {
                    index,
                    model_call_id: id.to_string(),
                    name: "p__t".into(),
                    plugin: Some("p".into()),
                    tool: Some("t".into()),
                    arguments: "{}".into(),
                };
                self.push(
                    StepKind::ToolCall,
                    Some(&format!("cid-{id}")),
                    serde_json::to_value(call).unwrap(),
                );
            }
            if calls.is_empty() {
                self.push(
                    StepKind::FinalAnswer,
                    None,
                    serde_json::json!({ "text": text }),
                );
            }
        }

        fn result(&mut self, index: usize, id: &str) {
            let outcome = ToolOutcome {
                index,
                model_call_id: id.into(),
                ok: true,
                output: Some(format!("{{\"from\":\"{id}\"}}")),
                error: None,
                elapsed_ms: 1,
            };
            self.push(
                StepKind::ToolResult,
                Some(&format!("cid-{id}")),
                serde_json::to_value(outcome).unwrap(),
            );
        }

        fn view(&self) -> SessionView {
            SessionView::from_journal(&self.entries).unwrap()
        }
    }

    #[test]
    fn a_new_task_asks_the_model_first() {
        let mut j = Journal::new();
        j.start("hi");
        let progress = j.view().last_task().unwrap();
        assert_eq!(next(&progress, 5), Next::CallModel { model_step: 1 });
    }

    #[test]
    fn only_the_calls_without_a_result_run_again_on_resume() {
        let mut j = Journal::new();
        j.start("count");
        j.respond("", &["a", "b", "c"]);
        j.result(1, "b");
        let Next::RunTools(pending) = next(&j.view().last_task().unwrap(), 5) else {
            panic!("expected tool calls");
        };
        let ids: Vec<&str> = pending.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["cid-a", "cid-c"]);
        j.result(0, "a");
        j.result(2, "c");
        assert_eq!(
            next(&j.view().last_task().unwrap(), 5),
            Next::CallModel { model_step: 2 }
        );
    }

    #[test]
    fn a_journaled_response_is_never_asked_for_again() {
        let mut j = Journal::new();
        j.start("q");
        j.respond("", &["a"]);
        // Crash before the result: the response is in the journal, so the next action is the
        // tool call, not the model.
        assert!(matches!(
            next(&j.view().last_task().unwrap(), 5),
            Next::RunTools(_)
        ));
    }

    #[test]
    fn max_steps_stops_after_the_last_results_are_in() {
        let mut j = Journal::new();
        j.start("loop");
        j.respond("", &["a"]);
        assert!(matches!(
            next(&j.view().last_task().unwrap(), 1),
            Next::RunTools(_)
        ));
        j.result(0, "a");
        assert_eq!(
            next(&j.view().last_task().unwrap(), 1),
            Next::StopAtMaxSteps
        );
    }

    #[test]
    fn an_answered_task_has_ended() {
        let mut j = Journal::new();
        j.start("q");
        j.respond("42", &[]);
        assert_eq!(
            next(&j.view().last_task().unwrap(), 5),
            Next::Ended(TaskEnd::Answered("42".into()))
        );
    }

    #[test]
    fn the_conversation_spans_tasks_and_orders_results_by_index() {
        let mut j = Journal::new();
        j.start("first");
        j.respond("", &["a", "b"]);
        j.result(1, "b");
        j.result(0, "a");
        j.respond("done", &[]);
        j.start("second");
        let messages = j.view().messages("be brief");
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Tool,
                Role::Assistant,
                Role::User
            ]
        );
        assert_eq!(messages[3].tool_call_id.as_deref(), Some("a"));
        assert_eq!(messages[4].tool_call_id.as_deref(), Some("b"));
        assert_eq!(messages[6].content, "second");
        crate::models::ChatRequest::new("fast", messages)
            .validate()
            .unwrap();
    }

    #[test]
    fn a_failed_tool_reaches_the_model_as_its_result() {
        let failed = ToolOutcome {
            index: 0,
            model_call_id: "x".into(),
            ok: false,
            output: None,
            error: Some(ToolFailure {
                kind: "denied".into(),
                message: "not granted".into(),
            }),
            elapsed_ms: 0,
        };
        let text = failed.for_model();
        assert!(
            text.contains("denied") && text.contains("not granted"),
            "{text}"
        );
    }

    #[test]
    fn each_task_folds_only_its_own_turns() {
        let mut j = Journal::new();
        j.start("first");
        j.respond("", &["a", "b"]);
        j.result(0, "a");
        j.result(1, "b");
        j.respond("done", &[]);
        j.start("second");
        let tasks = j.view().tasks();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].input, "first");
        assert_eq!((tasks[0].model_steps, tasks[0].tool_calls), (2, 2));
        assert_eq!(tasks[0].end, Some(TaskEnd::Answered("done".into())));
        assert_eq!(tasks[1].input, "second");
        assert_eq!((tasks[1].model_steps, tasks[1].tool_calls), (0, 0));
        assert_eq!(tasks[1].end, None);
        assert_eq!(j.view().last_task().unwrap(), tasks[1]);
    }

    #[test]
    fn a_summary_replaces_exactly_the_turns_it_covers() {
        let mut j = Journal::new();
        j.start("old question");
        j.respond("old answer", &[]);
        j.start("new question");
        let view = j.view();
        let current = view.last_task().unwrap().started_at;
        let (transcript, through) = view.compaction(current).unwrap();
        assert!(transcript.contains("old question") && transcript.contains("old answer"));
        assert_eq!(through, current - 1);
        let summary = ContextSummary {
            summary: "they asked an old question".into(),
            through_step: through,
        };
        j.push(
            StepKind::ContextSummary,
            None,
            serde_json::to_value(&summary).unwrap(),
        );
        let messages = j.view().messages("");
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].content.contains("they asked an old question"));
        assert_eq!(messages[1].content, "new question");
        // Nothing older than the current task is left to fold.
        assert_eq!(j.view().compaction(current), None);
    }

    #[test]
    fn repeated_or_missing_model_call_ids_are_made_distinct() {
        let call = |id: &str| AskedCall {
            id: id.into(),
            name: "t".into(),
            arguments: "{}".into(),
        };
        let mut calls = vec![call("x"), call("x"), call(""), call("old")];
        let used = ["old".to_string()].into_iter().collect();
        distinct_call_ids(&mut calls, 7, &used);
        assert_eq!(calls[0].id, "x");
        assert_eq!(calls[1].id, "warden_7_1");
        assert_eq!(calls[2].id, "warden_7_2");
        assert_eq!(calls[3].id, "warden_7_3");
    }
}
