//! `/v1/sessions`: create, list, show and delete a tenant's sessions.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, JsonBody};
use super::tasks::{TaskBody, task_body};
use super::tenants::Tenant;
use super::{ApiState, session_tasks, shown};
use crate::state::StoreError;
use crate::state::agents::AgentStore;
use crate::state::now_ms;
use crate::state::sessions::{Session, SessionId, SessionQuery, SessionStatus};

/// How long a delete holds the session's lease while it deletes.
const DELETE_LEASE_TTL: Duration = Duration::from_secs(30);

/// A session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    /// Its id.
    pub id: String,
    /// The agent it belongs to.
    pub agent: String,
    /// `idle`, `running`, `interrupted` or `closed`.
    pub status: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When its status last changed, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

impl From<&Session> for SessionBody {
    fn from(s: &Session) -> SessionBody {
        SessionBody {
            id: s.id.to_string(),
            agent: s.agent.clone(),
            status: s.status.as_str().to_string(),
            created_at_ms: s.created_at_ms,
            updated_at_ms: s.updated_at_ms,
        }
    }
}

/// A session with its tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDetail {
    /// The session.
    #[serde(flatten)]
    pub session: SessionBody,
    /// Its tasks, oldest first.
    pub tasks: Vec<TaskBody>,
}

/// A page of sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// The sessions, oldest first.
    pub sessions: Vec<SessionBody>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// The agent the session is for.
    pub agent: String,
}

/// Which sessions to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this agent's sessions.
    pub agent: Option<String>,
    /// The previous page's `next_cursor`.
    pub after: Option<String>,
    /// At most this many (default and most: 1000).
    pub limit: Option<u32>,
}

/// How to delete.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Delete even while a task holds the session (the task fails at its next step).
    pub force: Option<bool>,
}

/// Creates a session for one of the tenant's agents.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    request_body = NewSession,
    security(("bearer" = [])),
    responses(
        (status = 201, body = SessionBody, description = "The new session"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such agent for this tenant"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    JsonBody(body): JsonBody<NewSession>,
) -> Result<(StatusCode, Json<SessionBody>), ApiError> {
    check_agent(&state, &tenant, &body.agent)?;
    let store = state.store()?;
    let session = store
        .create_session(&tenant, &body.agent)
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(SessionBody::from(&session))))
}

/// Lists the tenant's sessions, a page at a time.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SessionList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let after = match &query.after {
        Some(text) => Some(text.parse::<SessionId>().map_err(|_| {
            ApiError::bad_request(format!(
                "`after` is `{}`, not a session id: pass the previous page's next_cursor",
                shown(text)
            ))
        })?),
        None => None,
    };
    let store = state.store()?;
    let page = store
        .list_sessions(
            &tenant,
            &SessionQuery {
                agent: query.agent.as_deref(),
                after,
                limit: query.limit.unwrap_or(0),
            },
        )
        .await
        .map_err(store_error)?;
    Ok(Json(SessionList {
        sessions: page.sessions.iter().map(SessionBody::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// Shows one session and its tasks.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SessionDetail),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such session for this tenant"),
    ))]
pub(super) async fn show(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    let (store, session) = find(&state, &tenant, &id).await?;
    let tasks = session_tasks(store.as_ref(), &tenant, session.id).await?;
    let tasks = tasks
        .iter()
        .map(|t| task_body(&state, &session, t))
        .collect();
    Ok(Json(SessionDetail {
        session: SessionBody::from(&session),
        tasks,
    }))
}

/// Deletes a session with its journal, memory and lease; its audit records stay.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id"), DeleteQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "A task holds the session; pass force=true"),
    ))]
pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (store, session) = find(&state, &tenant, &id).await?;
    let force = query.force.unwrap_or(false);
    // Without force, take the session's lease first: the store grants it only while no task
    // holds it, and no task can start while the delete runs.
    let held = if force {
        None
    } else {
        let holder = format!("warden serve delete (pid {})", std::process::id());
        match store
            .acquire_lease(&tenant, session.id, &holder, DELETE_LEASE_TTL)
            .await
        {
            Ok(lease) => Some(lease),
            Err(StoreError::LeaseHeld { holder, until_ms }) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "busy",
                    format!(
                        "session {} is busy: a task held by `{}` runs on it (its lease lapses in \
                         {} ms unless renewed); wait for it, or pass force=true",
                        session.id,
                        shown(&holder),
                        until_ms.saturating_sub(now_ms())
                    ),
                ));
            }
            Err(e) => return Err(store_error(e)),
        }
    };
    match store.delete_session(&tenant, session.id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(no_session(&id)),
        Err(e) => {
            if let Some(lease) = &held {
                let _ = store.release_lease(&tenant, lease).await;
            }
            Err(store_error(e))
        }
    }
}

/// The tenant's session `id`, or 404 naming it (whether another tenant has it is not said).
pub(super) async fn find(
    state: &ApiState,
    tenant: &str,
    id: &str,
) -> Result<(Arc<dyn AgentStore>, Session), ApiError> {
    let parsed = id.parse::<SessionId>().map_err(|_| no_session(id))?;
    let store = state.store()?;
    match store.get_session(tenant, parsed).await {
        Ok(Some(session)) => Ok((store, session)),
        Ok(None) => Err(no_session(id)),
        Err(e) => Err(store_error(e)),
    }
}

/// Refuses a session that cannot take a task: closed.
pub(super) fn check_open(session: &Session) -> Result<(), ApiError> {
    if session.status == SessionStatus::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "closed",
            format!("session {} is closed; start a new session", session.id),
        ));
    }
    Ok(())
}

/// 404 unless `agent` is one of the tenant's agents in the serving config.
pub(super) fn check_agent(state: &ApiState, tenant: &str, agent: &str) -> Result<(), ApiError> {
    let generation = state.host.generation();
    let known = generation.config().is_some_and(|c| {
        c.agents.contains_key(agent)
            && c.tenants
                .get(tenant)
                .is_some_and(|t| t.agents.iter().any(|a| a == agent))
    });
    if known {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "there is no agent `{}` for this tenant; GET /v1/agents lists them",
            shown(agent)
        )))
    }
}

fn no_session(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "there is no session `{}`; GET /v1/sessions lists this tenant's sessions",
        shown(id)
    ))
}

/// A store failure: a refused request is the client's, anything else is the host's.
pub(super) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid(message) => ApiError::bad_request(message),
        StoreError::NotFound(message) => ApiError::not_found(message),
        other => {
            tracing::error!("state store: {other}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the state store failed: {other}"),
            )
        }
    }
}
