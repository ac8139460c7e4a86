//! MCP over streamable HTTP in `warden serve`: `/mcp/{agent}`, and `/mcp` when the tenant has
//! one agent.
//!
//! Before rmcp's service sees a request, the API's checks run: the Host header (for every
//! route), the tenant's bearer token, the agent (another tenant's is 404), and the `Origin`
//! header, which a browser sends and a page on another site cannot forge. The authenticated
//! [`Caller`] rides in the request's extensions, where the handler reads it; nothing the
//! client sends names its tenant.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::{Caller, McpHub, WardenMcp};
use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::tenants::tenant_for_request;
use crate::host::{WardenHost, shown};

/// The header that names the Warden session a request's calls run in (or `?session=ID`).
pub const SESSION_HEADER: &str = "warden-session";

/// rmcp's streamable HTTP service, built once per server.
pub type McpService = StreamableHttpService<WardenMcp, LocalSessionManager>;

/// The most MCP sessions (`initialize` handshakes) one server holds at once. Each holds a
/// handler and its channels in memory until it is deleted or idles out (5 minutes), so a
/// client that opens sessions in a loop is refused past this instead of growing the heap.
pub const MAX_SESSIONS: usize = 4096;

/// The MCP side of the API's state.
pub struct McpState {
    /// Live MCP sessions, told when a reload changes their tools.
    pub hub: Arc<McpHub>,
    /// Ends every MCP session and stream when the server shuts down.
    pub shutdown: CancellationToken,
    /// rmcp's sessions, counted before a new one is let in.
    sessions: Arc<LocalSessionManager>,
}

impl McpState {
    /// A fresh hub and shutdown token.
    pub fn new() -> McpState {
        McpState {
            hub: McpHub::new(),
            shutdown: CancellationToken::new(),
            sessions: Arc::new(LocalSessionManager::default()),
        }
    }
}

impl Default for McpState {
    fn default() -> Self {
        McpState::new()
    }
}

/// The service for `host`: sessions in memory, requests of at most `max_body_bytes`. The Host
/// check is the API's own (it knows `[serve] allowed_hosts`), so rmcp's is turned off.
pub fn service(host: Arc<WardenHost>, mcp: &McpState, max_body_bytes: usize) -> McpService {
    let hub = mcp.hub.clone();
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(max_body_bytes)
        .with_cancellation_token(mcp.shutdown.child_token());
    StreamableHttpService::new(
        move || Ok(WardenMcp::http(host.clone(), hub.clone())),
        mcp.sessions.clone(),
        config,
    )
}

/// `/mcp/{agent}`.
pub async fn with_agent(
    State((state, service)): State<(Arc<ApiState>, McpService)>,
    Path(agent): Path<String>,
    request: Request,
) -> Response {
    serve(&state, service, Some(agent), request).await
}

/// `/mcp`: the tenant's one agent.
pub async fn without_agent(
    State((state, service)): State<(Arc<ApiState>, McpService)>,
    request: Request,
) -> Response {
    serve(&state, service, None, request).await
}

async fn serve(
    state: &ApiState,
    mut service: McpService,
    agent: Option<String>,
    mut request: Request,
) -> Response {
    let caller = match authorize(state, agent, request.headers()) {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let opens_session = request.method() == axum::http::Method::POST
        && !request.headers().contains_key("mcp-session-id");
    if opens_session && state.mcp.sessions.sessions.read().await.len() >= MAX_SESSIONS {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "this server holds {MAX_SESSIONS} MCP sessions, its most; end one with DELETE \
                 (its Mcp-Session-Id), or wait for idle ones to close after 5 minutes"
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    match service.call(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}

/// The caller of a request: its tenant by token, its agent by path (or the tenant's only
/// one), and an `Origin`, when sent, that names a host this server answers to.
fn authorize(
    state: &ApiState,
    agent: Option<String>,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let tenant = tenant_for_request(&state.host, headers)?;
    let generation = state.host.generation();
    let config = generation.config();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin.to_str().ok().is_some_and(|origin| {
            config.map_or_else(
                || crate::config::serve::ServeConfig::default().allows_origin(origin),
                |c| c.serve.allows_origin(origin),
            )
        });
        if !allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!(
                    "this server does not take MCP requests from pages at Origin `{}`; an \
                     operator adds the host to `[serve] allowed_hosts`",
                    shown(origin.to_str().unwrap_or("(not text)"))
                ),
            ));
        }
    }
    let agents: Vec<String> = config
        .and_then(|c| c.tenant_agents(&tenant))
        .unwrap_or_default()
        .into_iter()
        .cloned()
        .collect();
    let agent = match agent {
        Some(agent) if agents.contains(&agent) => agent,
        Some(agent) => {
            return Err(ApiError::not_found(format!(
                "there is no agent `{}` for this tenant; its agents are at /mcp/NAME for NAME in: {}",
                shown(&agent),
                list(&agents)
            )));
        }
        None => match agents.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(ApiError::not_found(format!(
                    "/mcp serves a tenant with one agent, and this tenant has {}; use /mcp/NAME \
                     for NAME in: {}",
                    agents.len(),
                    list(&agents)
                )));
            }
        },
    };
    Ok(Caller { tenant, agent })
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// The HTTP request behind an MCP request, which rmcp hands the handler.
fn parts(context: &RequestContext<RoleServer>) -> Option<&axum::http::request::Parts> {
    context.extensions.get::<axum::http::request::Parts>()
}

/// The caller [`authorize`] put in the request.
pub(super) fn caller(context: &RequestContext<RoleServer>) -> Option<Caller> {
    parts(context)?.extensions.get::<Caller>().cloned()
}

/// The session a request names: `?session=ID` or the `Warden-Session` header.
pub(super) fn named_session(context: &RequestContext<RoleServer>) -> Option<String> {
    let parts = parts(context)?;
    let from_query = parts.uri.query().and_then(|query| {
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == "session").then(|| value.to_string())
        })
    });
    from_query.or_else(|| {
        parts
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })
}
