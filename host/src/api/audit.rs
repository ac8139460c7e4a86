//! `GET /v1/audit`: the tenant's own audit records, newest last.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::sessions::store_error;
use super::tenants::Tenant;
use crate::policy::audit::AuditRecord;

/// Records returned when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// The most records one request returns.
const MAX_LIMIT: usize = 1000;

/// How many records.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// The newest this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The tenant's audit records.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Oldest first; each carries its place in the whole chain and its hashes.
    pub records: Vec<AuditRecord>,
}

/// The tenant's newest audit records: every call, capability use and denial.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AuditList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ))]
pub(super) async fn records(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit is {limit}; ask for 1 to {MAX_LIMIT} records"
        )));
    }
    let generation = state.host.generation();
    let Some(capabilities) = generation.capabilities() else {
        return Ok(Json(AuditList {
            records: Vec::new(),
        }));
    };
    let records = capabilities
        .audit
        .tail_for_tenant(&tenant, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(AuditList { records }))
}
