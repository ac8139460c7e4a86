//! `/v1/sessions/{id}/tasks`: start a task, follow its events, read its result.
//!
//! A task runs in its own tokio task, not in the request: a client that disconnects does not
//! stop it. Its events are kept on the [`TaskBoard`] while this process runs it (and a while
//! after), so a client can reconnect to the stream and is replayed every event from the start.
//! Its result is read from the journal, so it outlives the process.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, JsonBody};
use super::sessions::{check_agent, check_open, find};
use super::tenants::Tenant;
use super::{ApiState, session_tasks, shown};
use crate::agents::task::{TaskEnd, TaskProgress};
use crate::agents::{AgentEvent, EventSink, TaskRequest};
use crate::error::CallError;
use crate::state::sessions::{Session, SessionId, SessionStatus};

/// How long a finished task's events stay on the board for a client that reconnects.
const KEEP_FINISHED: Duration = Duration::from_secs(600);
/// The most finished tasks kept on the board; the oldest go first.
const MAX_FINISHED: usize = 10_000;

/// `POST /v1/sessions/{id}/tasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// The task's input: what the agent is asked to do.
    pub input: String,
    /// Wait for a busy session instead of answering 409.
    #[serde(default)]
    pub wait: bool,
}

/// A task that was started.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskAccepted {
    /// The task's id.
    pub task: String,
    /// The session it runs in.
    pub session: String,
}

/// Where a task stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskBody {
    /// The task's id.
    pub task: String,
    /// The session it runs in.
    pub session: String,
    /// `running`, `answered`, `max_steps`, `failed` or `interrupted` (stopped before its end;
    /// `warden serve` resumes it at start, `warden agent resume` by hand).
    pub status: String,
    /// Its input.
    pub input: String,
    /// The final answer, once it gave one.
    pub answer: Option<String>,
    /// How many model responses it has.
    pub model_steps: u32,
    /// How many tool calls the model asked for.
    pub tool_calls: u32,
    /// Why it stopped without an answer, when it did.
    pub error: Option<String>,
}

/// The tasks this process runs (and ran lately), by id.
#[derive(Default)]
pub struct TaskBoard {
    runs: Mutex<HashMap<Uuid, Arc<TaskRun>>>,
    /// How many runs are live, for draining.
    live: watch::Sender<usize>,
}

/// One task's events as this process saw them.
pub(super) struct TaskRun {
    tenant: String,
    session: SessionId,
    state: Mutex<RunState>,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct RunState {
    task: Option<Uuid>,
    events: Vec<AgentEvent>,
    done: Option<TaskBody>,
    finished_at: Option<Instant>,
}

impl TaskRun {
    fn push(&self, event: &AgentEvent) {
        lock(&self.state).events.push(event.clone());
        self.changed.send_modify(|v| *v += 1);
    }

    fn finish(&self, body: TaskBody) {
        {
            let mut state = lock(&self.state);
            state.done = Some(body);
            state.finished_at = Some(Instant::now());
        }
        self.changed.send_modify(|v| *v += 1);
    }

    fn is_done(&self) -> bool {
        lock(&self.state).done.is_some()
    }

    /// Every event from the start, then the live ones, then `done`.
    fn stream(self: Arc<Self>) -> impl Stream<Item = Result<Event, Infallible>> + Send {
        futures_util::stream::unfold(
            (self, 0usize, false, None::<watch::Receiver<u64>>),
            |(run, cursor, ended, rx)| async move {
                if ended {
                    return None;
                }
                let mut rx = rx.unwrap_or_else(|| run.changed.subscribe());
                loop {
                    rx.mark_unchanged();
                    let next = {
                        let state = lock(&run.state);
                        if let Some(event) = state.events.get(cursor) {
                            Some((event_frame(event), false))
                        } else {
                            state.done.as_ref().map(|done| (done_frame(done), true))
                        }
                    };
                    if let Some((frame, ended)) = next {
                        return Some((Ok(frame), (run, cursor + 1, ended, Some(rx))));
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
    }
}

impl TaskBoard {
    fn insert(&self, task: Uuid, run: Arc<TaskRun>) {
        let mut runs = lock(&self.runs);
        runs.retain(|_, r| {
            lock(&r.state)
                .finished_at
                .is_none_or(|at| at.elapsed() < KEEP_FINISHED)
        });
        if runs.len() >= MAX_FINISHED {
            let oldest = runs
                .iter()
                .filter_map(|(id, r)| lock(&r.state).finished_at.map(|at| (at, *id)))
                .min();
            if let Some((_, id)) = oldest {
                runs.remove(&id);
            }
        }
        runs.insert(task, run);
    }

    fn get(&self, tenant: &str, session: SessionId, task: Uuid) -> Option<Arc<TaskRun>> {
        lock(&self.runs)
            .get(&task)
            .filter(|r| r.tenant == tenant && r.session == session)
            .cloned()
    }

    fn is_running(&self, task: Uuid) -> bool {
        lock(&self.runs).get(&task).is_some_and(|r| !r.is_done())
    }

    /// How many tasks are running now.
    pub fn running(&self) -> usize {
        *self.live.borrow()
    }

    /// Waits until no task runs, or `limit` passes; returns how many still run.
    pub async fn wait_idle(&self, limit: Duration) -> usize {
        let mut rx = self.live.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await;
        *self.live.borrow()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a task does: a new one, or the session's unfinished one resumed.
pub(super) enum Work {
    Run(TaskRequest),
    /// Resume the session's unfinished task; `wait` for a live lease to lapse, or give up at
    /// once (a rescuer that lost the race to another host).
    Resume {
        tenant: String,
        session: SessionId,
        wait: bool,
    },
}

/// Starts `work` in its own tokio task and returns its run once it has a task id, or the
/// error that stopped it before (a busy session, a refused input).
pub(super) async fn launch(
    state: &Arc<ApiState>,
    work: Work,
) -> Result<(Uuid, Arc<TaskRun>), CallError> {
    let (tenant, session) = match &work {
        Work::Run(request) => (
            request.tenant.clone(),
            request.session.expect("runs start in a session"),
        ),
        Work::Resume {
            tenant, session, ..
        } => (tenant.clone(), *session),
    };
    let run = Arc::new(TaskRun {
        tenant: tenant.clone(),
        session,
        state: Mutex::new(RunState::default()),
        changed: watch::Sender::new(0),
    });
    let (started_tx, started_rx) = oneshot::channel::<Result<Uuid, CallError>>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let sink: EventSink = {
        let run = run.clone();
        let state = state.clone();
        let started_tx = started_tx.clone();
        Arc::new(move |event: &AgentEvent| {
            if let AgentEvent::TaskStarted { task, .. } = event
                && let Ok(task) = task.parse::<Uuid>()
            {
                let first = lock(&run.state).task.replace(task).is_none();
                if first {
                    // The session's lease is held from here to the run's end.
                    crate::metrics::session_active(1);
                }
                state.tasks.insert(task, run.clone());
                if let Some(tx) = lock(&started_tx).take() {
                    let _ = tx.send(Ok(task));
                }
            }
            if matches!(
                event,
                AgentEvent::ModelTurn { .. } | AgentEvent::ToolFinished { .. }
            ) {
                crate::metrics::task_steps(1);
            }
            run.push(event);
        })
    };
    state.tasks.live.send_modify(|n| *n += 1);
    let task_state = state.clone();
    let task_run = run.clone();
    tokio::spawn(async move {
        let _running = crate::metrics::running_task();
        let result = match work {
            Work::Run(request) => task_state.runner.run(request, &sink).await,
            Work::Resume {
                tenant,
                session,
                wait,
            } => {
                task_state
                    .runner
                    .resume(&tenant, session, wait, &sink)
                    .await
            }
        };
        let error = result.as_ref().err().cloned();
        if let Some(e) = &error
            && let Some(tx) = lock(&started_tx).take()
        {
            let _ = tx.send(Err(e.clone()));
        }
        let task = lock(&task_run.state).task;
        if let Some(task) = task {
            crate::metrics::session_active(-1);
            let body = final_body(&task_state, &task_run, task, error.as_ref()).await;
            task_run.finish(body);
        }
        task_state
            .tasks
            .live
            .send_modify(|n| *n = n.saturating_sub(1));
    });
    match started_rx.await {
        Ok(Ok(task)) => Ok((task, run)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(CallError::new(
            crate::error::ErrorKind::Internal,
            "the task ended before it started",
        )),
    }
}

/// The task's body once its run ended: from the journal, with the run's error when the
/// journal cannot say why it stopped.
async fn final_body(
    state: &ApiState,
    run: &TaskRun,
    task: Uuid,
    error: Option<&CallError>,
) -> TaskBody {
    let progress = match state.store() {
        Ok(store) => session_tasks(store.as_ref(), &run.tenant, run.session)
            .await
            .ok()
            .and_then(|tasks| tasks.into_iter().find(|t| t.task == task)),
        Err(_) => None,
    };
    let mut body = match progress {
        Some(progress) => body_of(run.session, &progress, false),
        None => TaskBody {
            task: task.to_string(),
            session: run.session.to_string(),
            status: "interrupted".into(),
            input: String::new(),
            answer: None,
            model_steps: 0,
            tool_calls: 0,
            error: None,
        },
    };
    if let Some(e) = error
        && body.error.is_none()
    {
        body.error = Some(e.message().to_string());
    }
    body
}

/// A task as the journal holds it; `running` says whether a process is still on it.
fn body_of(session: SessionId, progress: &TaskProgress, running: bool) -> TaskBody {
    let (status, answer, error) = match &progress.end {
        Some(TaskEnd::Answered(text)) => ("answered".to_string(), Some(text.clone()), None),
        Some(TaskEnd::Failed(failed)) => {
            (failed.reason.clone(), None, Some(failed.message.clone()))
        }
        None if running => ("running".to_string(), None, None),
        None => ("interrupted".to_string(), None, None),
    };
    TaskBody {
        task: progress.task.to_string(),
        session: session.to_string(),
        status,
        input: progress.input.clone(),
        answer,
        model_steps: progress.model_steps,
        tool_calls: progress.tool_calls,
        error,
    }
}

/// A task of `session` as it stands: running while this process runs it, or while the
/// session is marked running by another holder.
pub(super) fn task_body(state: &ApiState, session: &Session, progress: &TaskProgress) -> TaskBody {
    let running = state.tasks.is_running(progress.task)
        || (progress.end.is_none() && session.status == SessionStatus::Running);
    body_of(session.id, progress, running)
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

fn event_frame(event: &AgentEvent) -> Event {
    let value = serde_json::to_value(event).unwrap_or_default();
    let name = value
        .get("event")
        .and_then(|v| v.as_str())
        .unwrap_or("event")
        .to_string();
    Event::default().event(name).data(value.to_string())
}

fn done_frame(body: &TaskBody) -> Event {
    Event::default()
        .event("done")
        .data(serde_json::to_string(body).unwrap_or_default())
}

fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Starts a task in the session. With `Accept: text/event-stream` its events stream as
/// server-sent events, each named by its kind (`task_started`, `model_turn`, `tool_started`,
/// `tool_finished`, `answer`, …) and ending with `done`; otherwise 202 with the task's id.
#[utoipa::path(post, path = "/v1/sessions/{id}/tasks", tag = "tasks",
    params(("id" = String, Path, description = "The session's id")),
    request_body = NewTask,
    security(("bearer" = [])),
    responses(
        (status = 202, body = TaskAccepted, description = "Started; GET the task for its result"),
        (status = 200, content_type = "text/event-stream", body = String,
            description = "The task's events, ending with `done`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The session is busy"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn start(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewTask>,
) -> Result<Response, ApiError> {
    let (_, session) = find(&state, &tenant, &id).await?;
    check_open(&session)?;
    check_agent(&state, &tenant, &session.agent)?;
    if state.runner.is_draining() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this server is shutting down; send the task again once it is back",
        ));
    }
    let request = TaskRequest {
        tenant,
        agent: session.agent.clone(),
        session: Some(session.id),
        input: body.input,
        wait: body.wait,
    };
    let (task, run) = launch(&state, Work::Run(request)).await?;
    if wants_events(&headers) {
        return Ok(sse(run.stream()));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(TaskAccepted {
            task: task.to_string(),
            session: session.id.to_string(),
        }),
    )
        .into_response())
}

/// A task's status and result. With `Accept: text/event-stream`, its events (replayed from
/// the start while this process keeps them) and then `done`.
#[utoipa::path(get, path = "/v1/sessions/{id}/tasks/{task}", tag = "tasks",
    params(
        ("id" = String, Path, description = "The session's id"),
        ("task" = String, Path, description = "The task's id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TaskBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub(super) async fn show(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path((id, task)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (store, session) = find(&state, &tenant, &id).await?;
    let no_task = || {
        ApiError::not_found(format!(
            "session {} has no task `{}`; GET /v1/sessions/{} lists its tasks",
            session.id,
            shown(&task),
            session.id
        ))
    };
    let task_id = task.parse::<Uuid>().map_err(|_| no_task())?;
    if wants_events(&headers)
        && let Some(run) = state.tasks.get(&tenant, session.id, task_id)
    {
        return Ok(sse(run.stream()));
    }
    let tasks = session_tasks(store.as_ref(), &tenant, session.id).await?;
    let progress = tasks
        .iter()
        .find(|t| t.task == task_id)
        .ok_or_else(no_task)?;
    let body = task_body(&state, &session, progress);
    if wants_events(&headers) {
        let frame = done_frame(&body);
        return Ok(sse(futures_util::stream::iter([Ok(frame)])));
    }
    Ok(Json(body).into_response())
}

/// Resumes, in the background, every unfinished task of the sessions of `tenants` that no live
/// holder has: the tasks a crash or a drain left. Returns how many it started.
pub async fn resume_interrupted(state: &Arc<ApiState>, tenants: &[String]) -> usize {
    let Ok(store) = state.store() else {
        return 0;
    };
    let mut started = 0;
    for tenant in tenants {
        let mut after = None;
        loop {
            let query = crate::state::sessions::SessionQuery {
                agent: None,
                after,
                limit: 0,
            };
            let page = match store.list_sessions(tenant, &query).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!("resuming tenant `{tenant}`'s tasks: {e}");
                    break;
                }
            };
            for session in &page.sessions {
                if !matches!(
                    session.status,
                    SessionStatus::Running | SessionStatus::Interrupted
                ) {
                    continue;
                }
                let unfinished = session_tasks(store.as_ref(), tenant, session.id)
                    .await
                    .ok()
                    .and_then(|t| t.last().map(|t| t.end.is_none()))
                    .unwrap_or(false);
                if !unfinished {
                    continue;
                }
                let work = Work::Resume {
                    tenant: tenant.clone(),
                    session: session.id,
                    wait: true,
                };
                // The lease of a process that died stays until it lapses; the resume waits
                // for it in its own task, so start-up does not.
                let state = state.clone();
                let id = session.id;
                tokio::spawn(async move {
                    match launch(&state, work).await {
                        Ok((task, _)) => eprintln!("resuming task {task} of session {id}"),
                        Err(e) => eprintln!("could not resume session {id}: {e}"),
                    }
                });
                started += 1;
            }
            match page.next_cursor {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
    }
    started
}
