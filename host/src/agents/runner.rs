//! The I/O shell around the step function: it holds the session's lease, asks the model
//! through the [`ModelRouter`](crate::models::ModelRouter), runs tool calls through the
//! [`WardenHost`], and journals every outcome under the lease's fencing token before the next
//! step. What to do next is always [`task::next`] over the journal, so a resumed task goes on
//! exactly where the journal says it stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::events::{AgentEvent, EventSink};
use super::journal::{
    AskedCall, ContextSummary, FinalAnswer, ModelResponse, PlannedCall, TaskFailed, TaskStarted,
    ToolFailure, ToolOutcome, step,
};
use super::lease::HeldLease;
use super::names::ToolNames;
use super::task::{self, Next, SessionView, TaskEnd};
use crate::config::{AgentConfig, WardenConfig};
use crate::error::{CallError, ErrorKind, Limit};
use crate::host::{CallId, CallRequest, Generation, WardenHost};
use crate::models::{
    ChatMessage, ChatRequest, Completion, ModelCaller, ModelGrants, ModelRouter, Role,
    ToolDefinition,
};
use crate::sandbox::CallIdentity;
use crate::state::StoreError;
use crate::state::agents::AgentStore;
use crate::state::journal::{JournalEntry, MAX_PAYLOAD_BYTES, MAX_READ_ENTRIES, NewStep, StepKind};
use crate::state::sessions::{Session, SessionId, SessionStatus};

/// The most model steps of one task when the agent's `limits.max_steps` does not say.
pub const DEFAULT_MAX_STEPS: u32 = 10;

/// The largest task input, in bytes. A task is an instruction, not a document: a document
/// belongs in a granted source the tools read.
pub const MAX_TASK_BYTES: usize = 256 * 1024;

/// How a task ended, as front ends report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// The model gave a final answer.
    Answered,
    /// The task used its `max_steps`; its work is kept in the journal.
    MaxSteps,
}

/// A finished task.
#[derive(Debug, Clone)]
pub struct TaskReport {
    /// The session it ran in.
    pub session: SessionId,
    /// Its id.
    pub task: Uuid,
    /// How it ended.
    pub status: TaskStatus,
    /// The final answer, if it gave one.
    pub answer: Option<String>,
    /// Its journal entries, from `task_started` on.
    pub steps: Vec<JournalEntry>,
}

/// One task to start.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    /// The tenant it runs for.
    pub tenant: String,
    /// The agent.
    pub agent: String,
    /// The session to run in; a new one when `None`.
    pub session: Option<SessionId>,
    /// The task's input.
    pub input: String,
    /// Wait for a busy session instead of refusing.
    pub wait: bool,
}

/// Runs agent tasks on a host.
pub struct AgentRunner {
    host: Arc<WardenHost>,
    holder: String,
    /// Set when the process drains: each task stops after the step it is on.
    draining: std::sync::atomic::AtomicBool,
}

/// Everything one task needs from the generation serving it.
struct Agent {
    config: Arc<WardenConfig>,
    name: String,
    tenant: String,
    alias: String,
    store: Arc<dyn AgentStore>,
    max_steps: u32,
    lease_ttl: Duration,
}

/// A task while it holds its session: the agent, the session, the lease every journal write
/// names, and where its events go.
#[derive(Clone, Copy)]
struct Held<'a> {
    agent: &'a Agent,
    session: SessionId,
    lease: &'a HeldLease,
    events: &'a EventSink,
}

impl Agent {
    fn settings(&self) -> &AgentConfig {
        // Checked to exist when the task began; a reload that removes the agent leaves this
        // task on its generation's config.
        &self.config.agents[&self.name]
    }
}

impl AgentRunner {
    /// A runner whose lease holder id names this process and a fresh id, so two runners
    /// never mistake each other's lease for their own.
    pub fn new(host: Arc<WardenHost>) -> AgentRunner {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        let holder = format!(
            "{hostname}:{}:{}",
            std::process::id(),
            &Uuid::now_v7().simple().to_string()[20..]
        );
        AgentRunner {
            host,
            holder,
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Asks every task of this runner to stop once the step it is on is journaled: it then
    /// releases its session (left `interrupted`) and ends with [`ErrorKind::Interrupted`], and
    /// a later resume goes on from the journal. New tasks are refused.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`AgentRunner::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// This runner's holder id (`host:pid:random`); each lease it takes names it, followed by
    /// a part of its own.
    pub fn holder_id(&self) -> &str {
        &self.holder
    }

    /// The host service this runner runs tasks on.
    pub fn host(&self) -> &Arc<WardenHost> {
        &self.host
    }

    /// Runs one task to its end: a final answer, or `max_steps`. A failure on the way (the
    /// model backend, the store) is [`ErrorKind::Interrupted`]; the journal keeps everything
    /// done so far, and [`AgentRunner::resume`] goes on from there.
    pub async fn run(
        &self,
        request: TaskRequest,
        events: &EventSink,
    ) -> Result<TaskReport, CallError> {
        let input = check_task_input(&request.input)?;
        let generation = self.host.generation();
        let agent = self.agent(&generation, &request.tenant, &request.agent)?;
        let (session, created) = match request.session {
            Some(id) => (find_session(&agent, id).await?, false),
            None => (
                agent
                    .store
                    .create_session(&agent.tenant, &agent.name)
                    .await
                    .map_err(store_error)?,
                true,
            ),
        };
        if session.status == SessionStatus::Closed {
            return Err(CallError::invalid_input(format!(
                "session {} is closed; start a new session",
                session.id
            )));
        }
        events(&AgentEvent::Session {
            session: session.id.to_string(),
            created,
        });
        let lease = self
            .acquire(&agent, session.id, request.wait, events)
            .await?;
        let mut view = match read_view(&agent, session.id).await {
            Ok(view) => view,
            Err(e) => {
                lease.release().await;
                return Err(e);
            }
        };
        if let Some(last) = view.last_task()
            && last.end.is_none()
        {
            lease.release().await;
            return Err(CallError::new(
                ErrorKind::Busy,
                format!(
                    "session {} has an unfinished task ({}); finish it first with \
                     `warden agent resume --session {}`",
                    session.id, last.task, session.id
                ),
            ));
        }
        let task = Uuid::now_v7();
        let started = step(task, StepKind::TaskStarted, None, &TaskStarted { input });
        let held = Held {
            agent: &agent,
            session: session.id,
            lease: &lease,
            events,
        };
        if let Err(e) = append(&held, &mut view, vec![started]).await {
            lease.release().await;
            return Err(e);
        }
        events(&AgentEvent::TaskStarted {
            task: task.to_string(),
            resumed: false,
        });
        self.drive(&agent, session.id, lease, view, events).await
    }

    /// Finishes the session's unfinished task from its journal: the tool calls without a
    /// result run again with their call-ids, and the model is asked only for what the journal
    /// does not hold yet.
    pub async fn resume(
        &self,
        tenant: &str,
        session: SessionId,
        wait: bool,
        events: &EventSink,
    ) -> Result<TaskReport, CallError> {
        let generation = self.host.generation();
        let config = generation
            .config()
            .ok_or_else(|| CallError::invalid_input("resuming a task needs a config"))?;
        let store = store_of(&generation)?;
        let stored = store
            .get_session(tenant, session)
            .await
            .map_err(store_error)?
            .ok_or_else(|| no_session(tenant, session))?;
        if !config.agents.contains_key(&stored.agent) {
            return Err(CallError::new(
                ErrorKind::Config,
                format!(
                    "session {session} belongs to agent `{}`, which the config no longer has",
                    stored.agent
                ),
            ));
        }
        let agent = self.agent(&generation, tenant, &stored.agent)?;
        let lease = self.acquire(&agent, session, wait, events).await?;
        let view = match read_view(&agent, session).await {
            Ok(view) => view,
            Err(e) => {
                lease.release().await;
                return Err(e);
            }
        };
        let Some(last) = view.last_task().filter(|t| t.end.is_none()) else {
            // Acquiring marked it `running`; nothing runs, so say so, or a rescuer would keep
            // finding it abandoned.
            if let Err(e) = agent
                .store
                .set_session_status(tenant, session, SessionStatus::Idle)
                .await
            {
                tracing::warn!("session {session}: could not record its status `idle`: {e}");
            }
            lease.release().await;
            return Err(CallError::invalid_input(format!(
                "session {session} has no unfinished task to resume"
            )));
        };
        events(&AgentEvent::Session {
            session: session.to_string(),
            created: false,
        });
        events(&AgentEvent::TaskStarted {
            task: last.task.to_string(),
            resumed: true,
        });
        self.drive(&agent, session, lease, view, events).await
    }

    /// The agent as this generation serves it, for `tenant`.
    fn agent(&self, generation: &Generation, tenant: &str, name: &str) -> Result<Agent, CallError> {
        let Some(config) = generation.config() else {
            return Err(CallError::invalid_input("running an agent needs a config"));
        };
        let Some(settings) = config.agents.get(name) else {
            let known: Vec<&str> = config.agents.keys().map(String::as_str).collect();
            return Err(CallError::invalid_input(format!(
                "there is no agent `{}` in the config; the agents are: {}",
                name.escape_debug(),
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        if let Some(t) = config.tenants.get(tenant)
            && !t.agents.iter().any(|a| a == name)
        {
            return Err(CallError::new(
                ErrorKind::Denied,
                format!(
                    "tenant `{tenant}` may not use agent `{name}`; add it to tenants.{tenant}.agents"
                ),
            ));
        }
        let Some(alias) = settings.model.clone() else {
            return Err(CallError::new(
                ErrorKind::Config,
                format!(
                    "agents.{name}.model is not set: name the model alias the agent's loop uses"
                ),
            ));
        };
        Ok(Agent {
            config: config.clone(),
            name: name.to_string(),
            tenant: tenant.to_string(),
            alias,
            store: store_of(generation)?,
            max_steps: settings
                .limits
                .max_steps
                .unwrap_or(DEFAULT_MAX_STEPS)
                .max(1),
            lease_ttl: config.state.session_lease(),
        })
    }

    async fn acquire(
        &self,
        agent: &Agent,
        session: SessionId,
        wait: bool,
        events: &EventSink,
    ) -> Result<HeldLease, CallError> {
        let on_wait = |holder: &str, until_ms: u64| {
            events(&AgentEvent::Waiting {
                holder: holder.to_string(),
                until_ms,
            })
        };
        // One holder id per acquisition, not per runner: two tasks of one process on one
        // session are two holders, so the second is refused (or waits) instead of being
        // granted the first one's session, fencing it.
        let holder = format!(
            "{}:{}",
            self.holder,
            &Uuid::now_v7().simple().to_string()[20..]
        );
        let lease = HeldLease::acquire(
            agent.store.clone(),
            &agent.tenant,
            session,
            &holder,
            agent.lease_ttl,
            wait,
            &on_wait,
        )
        .await;
        match lease {
            Ok(lease) => {
                if let Err(e) = agent
                    .store
                    .set_session_status(&agent.tenant, session, SessionStatus::Running)
                    .await
                {
                    lease.release().await;
                    return Err(store_error(e));
                }
                Ok(lease)
            }
            Err(StoreError::LeaseHeld { holder, until_ms }) => Err(CallError::new(
                ErrorKind::Busy,
                format!(
                    "session {session} is busy: a task held by `{holder}` runs on it (its lease \
                     lapses in {} ms unless renewed); pass --wait to wait for it",
                    until_ms.saturating_sub(crate::state::now_ms())
                ),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Runs the step function until the task ends, journaling each outcome.
    async fn drive(
        &self,
        agent: &Agent,
        session: SessionId,
        lease: HeldLease,
        mut view: SessionView,
        events: &EventSink,
    ) -> Result<TaskReport, CallError> {
        let held = Held {
            agent,
            session,
            lease: &lease,
            events,
        };
        let outcome = self.steps(&held, &mut view).await;
        let status = match &outcome {
            Ok(_) => SessionStatus::Idle,
            // Handed over, when draining or stopped by the store (a restart of PostgreSQL):
            // left `running` with its lease released, so a rescuer (another host's, or this
            // host's next start) resumes it.
            Err(_) if self.is_draining() || lease.store_failed() => SessionStatus::Running,
            Err(_) => SessionStatus::Interrupted,
        };
        // Best effort: a session left `running` by a failed store reads as interrupted once
        // its lease lapses.
        if !lease.lost()
            && let Err(e) = agent
                .store
                .set_session_status(&agent.tenant, session, status)
                .await
        {
            tracing::warn!("session {session}: could not record its status `{status}`: {e}");
        }
        lease.release().await;
        let end = outcome?;
        let progress = view
            .last_task()
            .ok_or_else(|| CallError::new(ErrorKind::Internal, "the task vanished"))?;
        let (status, answer) = match end {
            TaskEnd::Answered(text) => (TaskStatus::Answered, Some(text)),
            TaskEnd::Failed(_) => (TaskStatus::MaxSteps, None),
        };
        Ok(TaskReport {
            session,
            task: progress.task,
            status,
            answer,
            steps: view.entries_from(progress.started_at).to_vec(),
        })
    }

    async fn steps(&self, held: &Held<'_>, view: &mut SessionView) -> Result<TaskEnd, CallError> {
        let Held {
            agent,
            session,
            lease,
            events,
        } = *held;
        loop {
            if lease.lost() {
                return Err(lost_lease(session));
            }
            if self.is_draining() {
                return Err(CallError::new(
                    ErrorKind::Interrupted,
                    format!(
                        "the host is shutting down: the task stopped after its last journaled \
                         step, and resumes from there (`warden agent resume --session {session}`, \
                         or when `warden serve` starts again)"
                    ),
                ));
            }
            let progress = view
                .last_task()
                .ok_or_else(|| CallError::new(ErrorKind::Internal, "no task in the journal"))?;
            match task::next(&progress, agent.max_steps) {
                Next::Ended(end) => {
                    match &end {
                        TaskEnd::Answered(text) => {
                            events(&AgentEvent::Answer { text: text.clone() })
                        }
                        TaskEnd::Failed(f) => events(&AgentEvent::Stopped {
                            reason: f.reason.clone(),
                            message: f.message.clone(),
                        }),
                    }
                    return Ok(end);
                }
                Next::StopAtMaxSteps => {
                    let failed = TaskFailed {
                        reason: "max_steps".into(),
                        message: format!(
                            "the task used its {} model steps (agents.{}.limits.max_steps) \
                             without a final answer; its work is kept in the session",
                            agent.max_steps, agent.name
                        ),
                    };
                    let entry = step(progress.task, StepKind::TaskFailed, None, &failed);
                    append(held, view, vec![entry]).await?;
                }
                Next::CallModel { model_step } => {
                    self.model_step(held, view, progress.task, model_step)
                        .await?;
                }
                Next::RunTools(calls) => {
                    self.run_tools(held, view, progress.task, calls).await?;
                }
            }
        }
    }

    /// Asks the model for the task's next response and journals it with the tool calls it
    /// asks for (or the final answer), in one append.
    async fn model_step(
        &self,
        held: &Held<'_>,
        view: &mut SessionView,
        task: Uuid,
        model_step: u32,
    ) -> Result<(), CallError> {
        let Held {
            agent,
            session,
            events,
            ..
        } = *held;
        let generation = self.host.generation();
        let (names, tools) = offered_tools(&generation, &agent.name);
        let mut request = ChatRequest::new(
            agent.alias.clone(),
            view.messages(&agent.settings().instructions),
        );
        request.tools = tools;
        if self.compact_if_needed(held, view, task, &request).await? {
            request.messages = view.messages(&agent.settings().instructions);
        }
        let at = view.next_step();
        let call_id = CallId::for_step(&session.to_string(), &task.to_string(), at);
        let started = Instant::now();
        let completion = ask_model(&generation, agent, session, call_id, request)
            .await?
            .map_err(|e| {
                // Refused because the store could not audit it: the store's trouble, not the
                // model's, so the task is handed over to resume once the store answers.
                if matches!(e, crate::models::ModelError::AuditUnavailable(_)) {
                    held.lease.note_store_failure();
                }
                CallError::new(
                    ErrorKind::Interrupted,
                    format!(
                        "the model (alias `{}`) failed: {e}; the task is kept and can be \
                         resumed with `warden agent resume --session {session}`",
                        agent.alias
                    ),
                )
            })?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let used = view.used_call_ids();
        let configured = |plugin: &str| agent.config.plugins.contains_key(plugin);
        let (entries, response) = response_entries(
            &names,
            &configured,
            session,
            task,
            at,
            model_step,
            completion,
            &used,
        );
        events(&AgentEvent::ModelTurn {
            model_step,
            served_by: response.served_by.clone(),
            input_tokens: response.usage.input_tokens,
            output_tokens: response.usage.output_tokens,
            elapsed_ms,
            tool_calls: response.tool_calls.len(),
        });
        append(held, view, entries).await
    }

    /// Folds the turns before the current task into a summary when the history would not fit
    /// the alias's context budget. A failed summary changes nothing: the turns stay as they are.
    /// Returns whether a summary was journaled, so `request` (the next model request, built
    /// from the view as it was) must be built again.
    async fn compact_if_needed(
        &self,
        held: &Held<'_>,
        view: &mut SessionView,
        task: Uuid,
        request: &ChatRequest,
    ) -> Result<bool, CallError> {
        let Held {
            agent,
            session,
            events,
            ..
        } = *held;
        let budget = agent
            .config
            .models
            .get(&agent.alias)
            .map_or(crate::config::DEFAULT_CONTEXT_TOKENS, |m| {
                m.context_budget()
            });
        if request.estimated_input_tokens() <= budget {
            return Ok(false);
        }
        let Some(progress) = view.last_task() else {
            return Ok(false);
        };
        let Some((transcript, through_step)) = view.compaction(progress.started_at) else {
            return Ok(false);
        };
        let call_id = CallId::from_caller(&format!(
            "{}:summary",
            CallId::for_step(&session.to_string(), &task.to_string(), view.next_step())
        ))
        .map_err(|e| CallError::new(ErrorKind::Internal, e))?;
        let summarise = ChatRequest::new(
            agent.alias.clone(),
            vec![
                ChatMessage::new(
                    Role::System,
                    "Summarise the conversation below for your own later use. Keep every fact, \
                     decision, name, number and open question a later turn may need; leave out \
                     pleasantries. Answer with the summary only.",
                ),
                ChatMessage::new(Role::User, transcript),
            ],
        );
        let generation = self.host.generation();
        match ask_model(&generation, agent, session, call_id, summarise).await? {
            Ok(completion) if !completion.message.content.trim().is_empty() => {
                let summary = ContextSummary {
                    summary: completion.message.content,
                    through_step,
                };
                let entry = step(task, StepKind::ContextSummary, None, &summary);
                append(held, view, vec![entry]).await?;
                events(&AgentEvent::Compacted { through_step });
                return Ok(true);
            }
            Ok(_) => events(&AgentEvent::CompactionFailed {
                message: "the model's summary was empty; the history is kept whole".into(),
            }),
            Err(e) => events(&AgentEvent::CompactionFailed {
                message: format!("{e}; the history is kept whole"),
            }),
        }
        Ok(false)
    }

    /// Runs the tool calls in parallel, each through the host service, and journals each
    /// result as soon as it is in, so a crash loses at most the calls still running.
    async fn run_tools(
        &self,
        held: &Held<'_>,
        view: &mut SessionView,
        task: Uuid,
        calls: Vec<(String, PlannedCall)>,
    ) -> Result<(), CallError> {
        let Held {
            agent,
            session,
            lease,
            events,
        } = *held;
        // A process paused past its lease must not start a tool call the new holder also
        // runs: the journal would fence its result, but not the call's effects. Checked once
        // here, so a lease running low is renewed once for the batch, not by every call at
        // once; each call checks again (locally) right before it starts.
        lease
            .ensure_live()
            .await
            .map_err(|e| stopped_by_store(lease, session, e, "its lease could not be renewed"))?;
        let (sender, mut results) = tokio::sync::mpsc::unbounded_channel();
        let mut running = Vec::new();
        for (call_id, call) in calls {
            events(&AgentEvent::ToolStarted {
                call_id: call_id.clone(),
                name: call.name.clone(),
            });
            let host = self.host.clone();
            let sender = sender.clone();
            let check = lease.check();
            let request = (
                agent.tenant.clone(),
                agent.name.clone(),
                session.to_string(),
            );
            running.push(tokio::spawn(async move {
                // Again right before this call: the process may have been paused since the
                // batch's check, and a paused holder must not start what the new one runs.
                if let Err(e) = check.ensure_live().await {
                    let _ = sender.send((call_id, call, Err(Halt::Lease(e))));
                    return;
                }
                let started = Instant::now();
                let outcome = run_one(&host, request, &call_id, &call)
                    .await
                    .map(|outcome| ToolOutcome {
                        elapsed_ms: started.elapsed().as_millis() as u64,
                        ..outcome
                    })
                    .map_err(Halt::Unaudited);
                let _ = sender.send((call_id, call, outcome));
            }));
        }
        drop(sender);
        let abort_all = |running: &[tokio::task::JoinHandle<()>]| {
            for handle in running {
                handle.abort();
            }
        };
        while let Some((call_id, call, outcome)) = results.recv().await {
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(halt) => {
                    abort_all(&running);
                    if lease.lost() {
                        return Err(lost_lease(session));
                    }
                    return Err(match halt {
                        Halt::Lease(e) => stopped_by_store(
                            lease,
                            session,
                            e,
                            &format!(
                                "the session's lease could not be renewed before tool call \
                                 {call_id}"
                            ),
                        ),
                        // Not the tool's result: kept out of the journal, so the call runs
                        // again, with its call-id, once the store answers.
                        Halt::Unaudited(e) => {
                            lease.note_store_failure();
                            CallError::new(
                                ErrorKind::Interrupted,
                                format!(
                                    "tool call {call_id} stopped the task: {}; the task is kept \
                                     up to its last committed step, and `warden serve` resumes \
                                     it from there once the store answers",
                                    e.message()
                                ),
                            )
                        }
                    });
                }
            };
            events(&AgentEvent::ToolFinished {
                call_id: call_id.clone(),
                name: call.name.clone(),
                ok: outcome.ok,
                elapsed_ms: outcome.elapsed_ms,
                error: outcome
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.kind, e.message)),
            });
            let entry = result_entry(task, call_id, outcome);
            if let Err(e) = append(held, view, vec![entry]).await {
                abort_all(&running);
                return Err(e);
            }
            if lease.lost() {
                abort_all(&running);
                return Err(lost_lease(session));
            }
        }
        Ok(())
    }
}

/// One completion for the agent's own loop, as `call_id`: through the generation's router,
/// with the agent's alias as its only grant. The outer error is a generation that serves no
/// config; the inner one is the model's.
async fn ask_model(
    generation: &Generation,
    agent: &Agent,
    session: SessionId,
    call_id: CallId,
    request: ChatRequest,
) -> Result<Result<Completion, crate::models::ModelError>, CallError> {
    let router = router_of(generation)?;
    let identity = identity(agent, session, call_id);
    let grants = OwnAlias(&agent.alias);
    let caller = ModelCaller {
        identity: &identity,
        plugin: "",
        tool: "",
        grants: &grants,
    };
    Ok(router.complete(&caller, request).await)
}

/// Why a tool call did not give the task a result to journal.
enum Halt {
    /// The session's lease could not be confirmed before the call started.
    Lease(StoreError),
    /// The host refused the call for want of an audit record.
    Unaudited(CallError),
}

/// One tool call through the host service; a call that cannot be made becomes its result,
/// except a refusal for want of an audit record, which is the host's trouble.
async fn run_one(
    host: &WardenHost,
    (tenant, agent, session): (String, String, String),
    call_id: &str,
    call: &PlannedCall,
) -> Result<ToolOutcome, CallError> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&call.arguments) {
        return Ok(task::refused(
            call,
            "invalid-input",
            format!("the arguments are not valid JSON ({e}); the tool was not called"),
        ));
    }
    let (Some(plugin), Some(tool)) = (&call.plugin, &call.tool) else {
        return Ok(task::refused(
            call,
            "unknown-tool",
            format!(
                "`{}` is not one of this agent's tools; call only the tools offered",
                call.name.escape_debug()
            ),
        ));
    };
    let call_id = match CallId::from_caller(call_id) {
        Ok(id) => id,
        Err(e) => return Ok(task::refused(call, "internal", e)),
    };
    let request = CallRequest {
        tenant,
        agent,
        session,
        call_id,
        plugin: plugin.clone(),
        tool: tool.clone(),
        input: call.arguments.clone(),
    };
    match host.call(request).await {
        Ok(output) => Ok(ToolOutcome {
            index: call.index,
            model_call_id: call.model_call_id.clone(),
            ok: true,
            output: Some(output),
            error: None,
            elapsed_ms: 0,
        }),
        Err(e) if e.is_unaudited() => Err(e),
        Err(e) => Ok(task::refused(
            call,
            kind_word(e.kind()),
            format!("`{}`: {}", call.name.escape_debug(), e.message()),
        )),
    }
}

/// A tool result as a journal entry. An output too big for one entry is journaled as the
/// error it is, so the task goes on and the model hears why.
fn result_entry(task: Uuid, call_id: String, outcome: ToolOutcome) -> NewStep {
    let entry = step(task, StepKind::ToolResult, Some(call_id.clone()), &outcome);
    let size = serde_json::to_string(&entry.payload).map_or(0, |s| s.len());
    if size <= MAX_PAYLOAD_BYTES {
        return entry;
    }
    let too_big = ToolOutcome {
        ok: false,
        output: None,
        error: Some(ToolFailure {
            kind: "limit-exceeded".into(),
            message: format!(
                "the tool's output is {size} bytes of JSON; a journal entry holds at most \
                 {MAX_PAYLOAD_BYTES}: lower the agent's max_output_kb or ask for less"
            ),
        }),
        ..outcome
    };
    step(task, StepKind::ToolResult, Some(call_id), &too_big)
}

/// The entries a model response journals: the response, then its tool calls with their
/// call-ids, or the final answer.
#[allow(clippy::too_many_arguments)]
fn response_entries(
    names: &ToolNames,
    configured: &dyn Fn(&str) -> bool,
    session: SessionId,
    task: Uuid,
    at: u64,
    model_step: u32,
    completion: Completion,
    used: &std::collections::BTreeSet<String>,
) -> (Vec<NewStep>, ModelResponse) {
    let mut asked: Vec<AskedCall> = completion
        .message
        .tool_calls
        .iter()
        .take(crate::state::journal::MAX_ENTRIES_PER_APPEND - 1)
        .map(|c| AskedCall {
            id: c.id.clone(),
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        })
        .collect();
    task::distinct_call_ids(&mut asked, at, used);
    let response = ModelResponse {
        text: completion.message.content,
        tool_calls: asked,
        usage: completion.usage.into(),
        served_by: completion.served_by,
        model: completion.model,
        finish_reason: completion.finish_reason,
        model_step,
    };
    let mut entries = vec![step(task, StepKind::ModelResponse, None, &response)];
    if response.tool_calls.is_empty() {
        let answer = FinalAnswer {
            text: response.text.clone(),
        };
        entries.push(step(task, StepKind::FinalAnswer, None, &answer));
    }
    let (session, task_text) = (session.to_string(), task.to_string());
    for (index, asked) in response.tool_calls.iter().enumerate() {
        let (plugin, tool) = match names.resolve(&asked.name) {
            Some((p, t)) => (Some(p.to_string()), Some(t.to_string())),
            // Not offered, but named like a tool of a configured plugin: sent to the host
            // service, whose tool check refuses it and audits the refusal.
            None => match asked.name.split_once("__") {
                Some((p, t)) if configured(p) && !t.is_empty() => {
                    (Some(p.to_string()), Some(t.to_string()))
                }
                _ => (None, None),
            },
        };
        let planned = PlannedCall {
            index,
            model_call_id: asked.id.clone(),
            name: asked.name.clone(),
            plugin,
            tool,
            arguments: asked.arguments.clone(),
        };
        let call_id = CallId::for_tool_call(&session, &task_text, at, index).into_string();
        entries.push(step(task, StepKind::ToolCall, Some(call_id), &planned));
    }
    (entries, response)
}

/// The agent's tools as the model is offered them, and the names mapping back.
fn offered_tools(generation: &Generation, agent: &str) -> (ToolNames, Vec<ToolDefinition>) {
    let tools = generation.agent_tools(agent);
    let (names, offered) =
        ToolNames::assign(tools.iter().map(|t| (t.plugin, t.tool.name.as_str())));
    let definitions = offered
        .iter()
        .filter_map(|o| {
            let tool = tools
                .iter()
                .find(|t| t.plugin == o.plugin && t.tool.name == o.tool)?;
            Some(ToolDefinition {
                name: o.model_name.clone(),
                description: tool.tool.description.clone(),
                parameters: tool.tool.input_schema.to_string(),
            })
        })
        .collect();
    (names, definitions)
}

/// Appends `entries` at the view's next step under the lease's token, then folds them in.
async fn append(
    held: &Held<'_>,
    view: &mut SessionView,
    entries: Vec<NewStep>,
) -> Result<(), CallError> {
    let Held {
        agent,
        session,
        lease,
        ..
    } = *held;
    let at = view.next_step();
    let token = lease.lease().token;
    let mut written = agent
        .store
        .append_steps(&agent.tenant, session, at, token, &entries)
        .await;
    // A heartbeat that came late (a starved or paused process) leaves a lapsed lease, which
    // fences the write even though nobody took the session over: renew, and try once more.
    // The renewal fails if another holder did take over, and the write stays refused.
    if matches!(written, Err(StoreError::Fenced { .. })) && lease.renew_now().await.is_ok() {
        written = agent
            .store
            .append_steps(&agent.tenant, session, at, token, &entries)
            .await;
    }
    written.map_err(|e| stopped_by_store(lease, session, e, "the journal could not be written"))?;
    let now = crate::state::now_ms();
    let committed: Vec<JournalEntry> = entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| JournalEntry {
            step: at + i as u64,
            task: e.task,
            kind: e.kind,
            call_id: e.call_id,
            payload: e.payload,
            token,
            recorded_at_ms: now,
        })
        .collect();
    view.extend(&committed)
        .map_err(|e| CallError::new(ErrorKind::Internal, e.to_string()))
}

/// The error that stops a task whose store write (or lease renewal) failed: a lost lease when
/// another holder took over, else an interruption, handed over when the failure may pass.
fn stopped_by_store(lease: &HeldLease, session: SessionId, e: StoreError, what: &str) -> CallError {
    match e {
        StoreError::Fenced { .. } | StoreError::Conflict { .. } => lost_lease(session),
        other => {
            let how = if transient(&other) {
                lease.note_store_failure();
                "`warden serve` resumes it from there once the store answers".to_string()
            } else {
                format!("resume it with `warden agent resume --session {session}`")
            };
            CallError::new(
                ErrorKind::Interrupted,
                format!("{what} ({other}); the task is kept up to its last committed step: {how}"),
            )
        }
    }
}

/// Whether a store failure may pass by itself (the store was down or busy), so a later try of
/// the same write could succeed.
fn transient(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Unavailable(_) | StoreError::Database(_) | StoreError::Busy(_)
    )
}

/// Reads the session's whole journal, a page at a time.
async fn read_view(agent: &Agent, session: SessionId) -> Result<SessionView, CallError> {
    read_journal(agent.store.as_ref(), &agent.tenant, session).await
}

/// Reads and folds a session's whole journal, a page at a time: what a front end shows of a
/// session's tasks. A session the tenant does not have reads as empty.
pub async fn read_journal(
    store: &dyn AgentStore,
    tenant: &str,
    session: SessionId,
) -> Result<SessionView, CallError> {
    let mut entries = Vec::new();
    loop {
        let page = store
            .read_journal(tenant, session, entries.len() as u64, MAX_READ_ENTRIES)
            .await
            .map_err(store_error)?;
        let full = page.len() as u32 == MAX_READ_ENTRIES;
        entries.extend(page);
        if !full {
            break;
        }
    }
    SessionView::from_journal(&entries)
        .map_err(|e| CallError::new(ErrorKind::Internal, e.to_string()))
}

async fn find_session(agent: &Agent, id: SessionId) -> Result<Session, CallError> {
    let session = agent
        .store
        .get_session(&agent.tenant, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| no_session(&agent.tenant, id))?;
    if session.agent != agent.name {
        return Err(CallError::invalid_input(format!(
            "session {id} belongs to agent `{}`, not `{}`",
            session.agent, agent.name
        )));
    }
    Ok(session)
}

fn no_session(tenant: &str, id: SessionId) -> CallError {
    CallError::invalid_input(format!(
        "tenant `{tenant}` has no session {id}; `warden session list` shows its sessions"
    ))
}

/// The task's input, or why it cannot be one.
fn check_task_input(input: &str) -> Result<String, CallError> {
    if input.trim().is_empty() {
        return Err(CallError::invalid_input(
            "the task is empty; say what the agent should do",
        ));
    }
    if input.len() > MAX_TASK_BYTES {
        return Err(CallError::limit(
            Limit::Input,
            format!(
                "the task is {} bytes; the most is {MAX_TASK_BYTES}: put large material in a \
                 source the agent's tools can read",
                input.len()
            ),
        ));
    }
    Ok(input.to_string())
}

fn identity(agent: &Agent, session: SessionId, call_id: CallId) -> CallIdentity {
    CallIdentity {
        tenant: agent.tenant.clone(),
        agent: agent.name.clone(),
        session: session.to_string(),
        call_id: call_id.into_string(),
    }
}

fn store_of(generation: &Generation) -> Result<Arc<dyn AgentStore>, CallError> {
    generation
        .capabilities()
        .map(|c| c.store.agent_state())
        .ok_or_else(|| CallError::invalid_input("running an agent needs a config"))
}

fn router_of(generation: &Generation) -> Result<&ModelRouter, CallError> {
    generation
        .capabilities()
        .map(|c| &c.models)
        .ok_or_else(|| CallError::invalid_input("running an agent needs a config"))
}

fn store_error(e: StoreError) -> CallError {
    match e {
        StoreError::Invalid(m) | StoreError::NotFound(m) => CallError::invalid_input(m),
        other => CallError::new(
            ErrorKind::Interrupted,
            format!("the state store failed: {other}"),
        ),
    }
}

fn lost_lease(session: SessionId) -> CallError {
    CallError::new(
        ErrorKind::Interrupted,
        format!(
            "this process lost session {session}'s lease (it lapsed, and another holder took the \
             session over); it stopped without running another tool call"
        ),
    )
}

/// The word a tool failure of `kind` is journaled and shown to the model with.
fn kind_word(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::LimitExceeded(Limit::Input) => "invalid-input",
        ErrorKind::Denied => "denied",
        ErrorKind::ToolFailed => "tool-failed",
        ErrorKind::LimitExceeded(_) => "limit-exceeded",
        ErrorKind::Unusable => "unusable",
        ErrorKind::Config => "config",
        ErrorKind::Internal => "internal",
        ErrorKind::Busy => "busy",
        ErrorKind::Interrupted => "interrupted",
        ErrorKind::Cancelled => "cancelled",
    }
}

/// The loop's own model grant: exactly the agent's alias (its fallbacks are the router's).
struct OwnAlias<'a>(&'a str);

impl ModelGrants for OwnAlias<'_> {
    fn check_model(&self, alias: &str) -> Result<(), String> {
        if alias == self.0 {
            Ok(())
        } else {
            Err(format!(
                "the agent loop uses its own alias `{}`, not `{alias}`",
                self.0
            ))
        }
    }
}
