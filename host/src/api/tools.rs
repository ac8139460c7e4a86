//! `POST /v1/sessions/{id}/tools/{plugin}/{tool}`: one tool call in a session, with the
//! session's agent's grants and limits, through the host service like every other call.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody};
use super::sessions::{check_agent, find};
use super::tenants::Tenant;
use super::{ApiState, shown};
use crate::host::{CallId, CallRequest};

/// Calls a tool in the session. The body is the tool's input (JSON), the answer its output.
#[utoipa::path(post, path = "/v1/sessions/{id}/tools/{plugin}/{tool}", tag = "tools",
    params(
        ("id" = String, Path, description = "The session's id"),
        ("plugin" = String, Path, description = "The plugin's name in the config"),
        ("tool" = String, Path, description = "The tool's name"),
    ),
    request_body(content = serde_json::Value, description = "The tool's input, as its schema says",
        content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = serde_json::Value, description = "The tool's output",
            headers(("x-warden-call-id" = String, description = "The call's id in the audit log"))),
        (status = 400, body = ErrorBody, description = "The body is not JSON"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Denied: the agent may not call it, or the tool used a capability it was not granted"),
        (status = 404, body = ErrorBody, description = "No such session, plugin or tool"),
        (status = 413, body = ErrorBody, description = "The body, the input or the output is over its limit, or the call ran out of memory"),
        (status = 422, body = ErrorBody, description = "The input does not match the tool's schema"),
        (status = 502, body = ErrorBody, description = "The tool failed"),
        (status = 503, body = ErrorBody, description = "The plugin is not served"),
        (status = 504, body = ErrorBody, description = "The call ran out of time"),
    ))]
pub(super) async fn call(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path((id, plugin, tool)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "too_large",
                "the request body is larger than `[serve] max_body_kb` allows",
            )
        } else {
            ApiError::new(status, "invalid_input", rejection.body_text())
        }
    })?;
    let (_, session) = find(&state, &tenant, &id).await?;
    check_agent(&state, &tenant, &session.agent)?;
    let generation = state.host.generation();
    match generation.tool(&plugin, &tool) {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(ApiError::from_call(e)),
        None => {
            let has_plugin = generation
                .config()
                .is_some_and(|c| c.plugins.contains_key(&plugin));
            return Err(ApiError::not_found(if has_plugin {
                format!(
                    "plugin `{}` has no tool `{}`; GET /v1/agents/{}/tools lists the tools",
                    shown(&plugin),
                    shown(&tool),
                    session.agent
                )
            } else {
                format!(
                    "there is no plugin `{}`; GET /v1/agents/{}/tools lists the tools",
                    shown(&plugin),
                    session.agent
                )
            }));
        }
    }
    drop(generation);
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(ApiError::bad_request(format!(
            "the body must be the tool's input as JSON: {e}"
        )));
    }
    // Valid JSON is valid UTF-8.
    let input = String::from_utf8(body.to_vec())
        .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
    let call_id = CallId::new();
    let call_id_header = HeaderValue::from_str(call_id.as_str()).ok();
    let output = state
        .host
        .call(CallRequest {
            tenant,
            agent: session.agent.clone(),
            session: session.id.to_string(),
            call_id,
            plugin,
            tool,
            input,
        })
        .await?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        output,
    )
        .into_response();
    if let Some(value) = call_id_header {
        response.headers_mut().insert("x-warden-call-id", value);
    }
    Ok(response)
}
