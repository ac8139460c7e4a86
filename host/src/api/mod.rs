//! The HTTP API that `warden serve` runs: axum routes over the host service and the agent loop.
//!
//! Every `/v1` route authenticates a tenant by its bearer token ([`tenants`]) and sees only that
//! tenant's agents and sessions: another tenant's session is 404, never 403. Every request's
//! Host header is checked first (DNS-rebinding protection), bodies are capped, and connections
//! that send their headers or body too slowly are closed. `/openapi.json` is generated from the
//! handlers themselves (utoipa), so it cannot drift from the routes.

mod audit;
mod catalog;
pub mod error;
mod health;
mod rescue;
mod server;
mod sessions;
mod tasks;
pub mod tenants;
mod tools;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use rescue::spawn_rescuer;
pub use server::{ApiServer, ServeOptions};
pub use tasks::{TaskBoard, resume_interrupted};

use crate::agents::AgentRunner;
use crate::agents::runner::read_journal;
use crate::error::{CallError, ErrorKind};
use crate::host::{WardenHost, shown};
use crate::mcp::http::McpState;
use crate::state::agents::AgentStore;
use error::ApiError;

/// What every handler shares.
pub struct ApiState {
    /// The host service.
    pub host: Arc<WardenHost>,
    /// The agent loop.
    pub runner: Arc<AgentRunner>,
    /// The tasks this process runs, with their events.
    pub tasks: TaskBoard,
    /// MCP's live sessions and their shutdown.
    pub mcp: McpState,
}

impl ApiState {
    /// The state for a host and its runner.
    pub fn new(runner: Arc<AgentRunner>) -> ApiState {
        ApiState {
            host: runner.host().clone(),
            runner,
            tasks: TaskBoard::default(),
            mcp: McpState::new(),
        }
    }

    /// The current generation's agent state store.
    fn store(&self) -> Result<Arc<dyn AgentStore>, ApiError> {
        self.host
            .generation()
            .capabilities()
            .map(|c| c.store.agent_state())
            .ok_or_else(|| {
                ApiError::from_call(&CallError::new(
                    ErrorKind::Config,
                    "this host serves no config, so it has no state store",
                ))
            })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Warden",
        description = "A stateful runtime for AI agents: sessions, tasks, sandboxed tools, audit."
    ),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and the OpenAPI document they generate.
fn routes() -> (axum::Router<Arc<ApiState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sessions::create, sessions::list))
        .routes(routes!(sessions::show, sessions::delete))
        .routes(routes!(tasks::start))
        .routes(routes!(tasks::show))
        .routes(routes!(tools::call))
        .routes(routes!(catalog::agents))
        .routes(routes!(catalog::agent_tools))
        .routes(routes!(audit::records))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts()
}

/// The OpenAPI document of the API, as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The whole application: the routes, `/openapi.json`, the fallback, the body limit and the
/// Host check.
pub fn app(state: Arc<ApiState>, max_body_bytes: usize) -> axum::Router {
    let (router, doc) = routes();
    let doc = Arc::new(doc);
    let mcp_service = crate::mcp::http::service(state.host.clone(), &state.mcp, max_body_bytes);
    let mcp = axum::Router::new()
        .route("/mcp", axum::routing::any(crate::mcp::http::without_agent))
        .route(
            "/mcp/{agent}",
            axum::routing::any(crate::mcp::http::with_agent),
        )
        .with_state((state.clone(), mcp_service));
    router
        .merge(mcp)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_host,
        ))
        .with_state(state)
}

async fn unknown_route(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "there is no route {} {}; the routes are listed at /openapi.json",
        request.method(),
        shown(request.uri().path())
    ))
}

async fn wrong_method(request: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take {}; the routes are listed at /openapi.json",
            shown(request.uri().path()),
            request.method()
        ),
    )
}

/// Refuses a request whose Host header names a host this server does not answer to, before
/// anything else: a page on another site that rebinds its DNS name to 127.0.0.1 sends its
/// own name.
async fn check_host(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let generation = state.host.generation();
    let allowed = match (host, generation.config()) {
        (Some(host), Some(config)) => config.serve.allows_host(host),
        (Some(host), None) => crate::config::serve::ServeConfig::default().allows_host(host),
        (None, _) => false,
    };
    if allowed {
        return next.run(request).await;
    }
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "host_not_allowed",
        format!(
            "this server does not answer to Host `{}`; an operator adds names to `[serve] \
             allowed_hosts`",
            shown(host.unwrap_or(""))
        ),
    )
    .into_response()
}

/// Reads a session's journal for a front end: every task as it stands.
async fn session_tasks(
    store: &dyn AgentStore,
    tenant: &str,
    session: crate::state::sessions::SessionId,
) -> Result<Vec<crate::agents::task::TaskProgress>, ApiError> {
    Ok(read_journal(store, tenant, session).await?.tasks())
}
