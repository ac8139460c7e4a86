//! `/healthz` and `/readyz`: for probes, without a token.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::error::{ApiError, ErrorBody};

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `ready`.
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = Health)))]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The process can serve: its state store answers, and it is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub(super) async fn readyz(State(state): State<Arc<ApiState>>) -> Result<Json<Health>, ApiError> {
    let unavailable =
        |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    if state.runner.is_draining() {
        return Err(unavailable("this server is shutting down".into()));
    }
    let store = state.store()?;
    let probe = crate::state::sessions::SessionQuery {
        agent: None,
        after: None,
        limit: 1,
    };
    store
        .list_sessions("warden-readiness-probe", &probe)
        .await
        .map_err(|e| unavailable(format!("the state store does not answer: {e}")))?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}
