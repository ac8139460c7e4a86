//! MCP: the agent's tools for any MCP client, over stdio (`warden mcp`) and streamable HTTP
//! (`/mcp/{agent}` in `warden serve`).
//!
//! The protocol is the official Rust SDK's (`rmcp`); this module is a thin adapter over the
//! host service: `tools/list` is the agent's tools ([`tools::shown`]), and `tools/call` is one
//! [`WardenHost::call_cancellable`] in the client's Warden session, with the agent's grants and
//! limits, audited like every call. Who is calling is never taken from the client's messages:
//! stdio runs as the tenant and agent it was started for, HTTP as the tenant whose bearer token
//! the request carried ([`http`]).

pub mod http;
pub mod stdio;
pub mod tools;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Implementation, InitializeRequestParams,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ServerCapabilities,
};
use rmcp::service::{Peer, RequestContext, RoleServer};
use serde_json::json;

use crate::error::ErrorKind;
use crate::host::{CallId, CallRequest, Generation, WardenHost, shown};
use crate::state::sessions::{SessionId, SessionStatus};

/// The protocol versions served: the initialize handshake from 2025-06-18, and the stateless
/// envelope (`server/discover`) of 2026-07-28, the newest rmcp knows.
pub const PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// How often a call that asked for progress hears that it is still running.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Who an MCP request runs as: set by the front end from what it authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant.
    pub tenant: String,
    /// The agent whose tools, grants and limits the calls use.
    pub agent: String,
}

/// A caller and the Warden session its calls run in.
#[derive(Debug, Clone)]
struct Binding {
    caller: Caller,
    session: SessionId,
}

/// Where a connection's caller and session come from.
enum Scope {
    /// stdio: one caller and one session, fixed when the process started.
    Fixed(Binding),
    /// HTTP: the caller comes with each request; the session is named by the request or made
    /// at the MCP session's first call and kept for its life.
    Http(Mutex<Option<Binding>>),
}

/// The peers that may be told their tool list changed, by agent.
#[derive(Default)]
pub struct McpHub {
    peers: Mutex<Vec<(String, Peer<RoleServer>)>>,
}

/// The most peers a hub keeps; past it the oldest are forgotten (they still work, but are not
/// told of a changed list).
const MAX_PEERS: usize = 4096;

impl McpHub {
    /// A new, empty hub, shared by every connection of one process.
    pub fn new() -> Arc<McpHub> {
        Arc::new(McpHub::default())
    }

    fn register(&self, agent: &str, peer: Peer<RoleServer>) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|(_, p)| !p.is_transport_closed());
        if peers.len() >= MAX_PEERS {
            peers.remove(0);
        }
        peers.push((agent.to_string(), peer));
    }

    /// After a reload from `before` to `after`: sends `notifications/tools/list_changed` to
    /// every live peer whose agent's tools changed, and returns how many were told.
    pub async fn tools_changed(&self, before: &Generation, after: &Generation) -> usize {
        let targets: Vec<Peer<RoleServer>> = {
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers.retain(|(_, p)| !p.is_transport_closed());
            let mut changed = std::collections::BTreeMap::new();
            peers
                .iter()
                .filter(|(agent, _)| {
                    *changed.entry(agent.clone()).or_insert_with(|| {
                        tools::shown(before, agent) != tools::shown(after, agent)
                    })
                })
                .map(|(_, p)| p.clone())
                .collect()
        };
        let mut told = 0;
        for peer in targets {
            match peer.notify_tool_list_changed().await {
                Ok(()) => told += 1,
                Err(e) => tracing::debug!("an MCP client was not told its tools changed: {e}"),
            }
        }
        told
    }
}

/// The MCP server of one connection (stdio) or one MCP session (HTTP).
pub struct WardenMcp {
    host: Arc<WardenHost>,
    hub: Arc<McpHub>,
    scope: Scope,
}

impl WardenMcp {
    /// The server of a stdio connection: every call runs as `caller` in `session`.
    pub fn fixed(
        host: Arc<WardenHost>,
        hub: Arc<McpHub>,
        caller: Caller,
        session: SessionId,
    ) -> WardenMcp {
        WardenMcp {
            host,
            hub,
            scope: Scope::Fixed(Binding { caller, session }),
        }
    }

    /// The server of one HTTP MCP session, whose requests carry their caller.
    pub fn http(host: Arc<WardenHost>, hub: Arc<McpHub>) -> WardenMcp {
        WardenMcp {
            host,
            hub,
            scope: Scope::Http(Mutex::new(None)),
        }
    }

    /// Who the request runs as.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
        match &self.scope {
            Scope::Fixed(binding) => Ok(binding.caller.clone()),
            Scope::Http(_) => http::caller(context).ok_or_else(|| {
                ErrorData::internal_error("the request reached MCP without its tenant", None)
            }),
        }
    }

    /// The session the request's calls run in: checked, or made.
    async fn session(
        &self,
        context: &RequestContext<RoleServer>,
        caller: &Caller,
    ) -> Result<SessionId, ErrorData> {
        let bound = match &self.scope {
            Scope::Fixed(binding) => return Ok(binding.session),
            Scope::Http(bound) => bound,
        };
        let store = self
            .host
            .generation()
            .capabilities()
            .map(|c| c.store.agent_state())
            .ok_or_else(|| ErrorData::internal_error("this host has no state store", None))?;
        if let Some(named) = http::named_session(context) {
            let no_session = || {
                ErrorData::invalid_params(
                    format!(
                        "there is no open session `{}` of agent `{}` for this tenant; leave \
                         `session` out to start one",
                        shown(&named),
                        caller.agent
                    ),
                    None,
                )
            };
            let id = named.parse::<SessionId>().map_err(|_| no_session())?;
            return match store.get_session(&caller.tenant, id).await {
                Ok(Some(s)) if s.agent == caller.agent && s.status != SessionStatus::Closed => {
                    Ok(id)
                }
                Ok(_) => Err(no_session()),
                Err(e) => Err(ErrorData::internal_error(
                    format!("the state store failed: {e}"),
                    None,
                )),
            };
        }
        if let Some(binding) = bound.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if binding.caller != *caller {
                return Err(ErrorData::invalid_request(
                    "this MCP session was started by another tenant or for another agent",
                    None,
                ));
            }
            return Ok(binding.session);
        }
        let session = store
            .create_session(&caller.tenant, &caller.agent)
            .await
            .map_err(|e| ErrorData::internal_error(format!("the state store failed: {e}"), None))?;
        let mut slot = bound.lock().unwrap_or_else(|p| p.into_inner());
        // Two first calls raced: the first one's session is the MCP session's.
        let binding = slot.get_or_insert(Binding {
            caller: caller.clone(),
            session: session.id,
        });
        Ok(binding.session)
    }
}

/// The methods of MCP that rmcp parses itself: a request that reaches
/// [`ServerHandler::on_custom_request`] with one of these names had params that did not fit.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
];

impl ServerHandler for WardenMcp {
    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        let method = request.method.as_str();
        if method == "tools/call" {
            let why = match serde_json::from_value::<CallToolRequestParams>(
                request.params.unwrap_or(serde_json::Value::Null),
            ) {
                Err(e) => e.to_string(),
                Ok(_) => "they do not fit the method".to_string(),
            };
            return Err(ErrorData::invalid_params(
                format!(
                    "the params of `tools/call` are not valid: {why}; they are \
                     {{\"name\": TOOL, \"arguments\": {{...}}}}"
                ),
                None,
            ));
        }
        if KNOWN_METHODS.contains(&method) {
            return Err(ErrorData::invalid_params(
                format!("the params of `{method}` are not valid"),
                None,
            ));
        }
        Err(ErrorData::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            format!(
                "there is no method `{}`; this server serves initialize, server/discover, ping, \
                 tools/list and tools/call",
                shown(method)
            ),
            None,
        ))
    }

    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("warden", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Warden runs each tool in a fresh WebAssembly sandbox with the agent's grants, in \
             this client's Warden session (its memory persists), and audits every call. A \
             failed call is a result with isError and the reason.",
        )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let caller = self.caller(&context)?;
        self.hub.register(&caller.agent, context.peer.clone());
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller(&context)?;
        let generation = self.host.generation();
        Ok(ListToolsResult::with_all_items(tools::shown(
            &generation,
            &caller.agent,
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context)?;
        let (plugin, tool, structured, limit_ms) = {
            let generation = self.host.generation();
            let limit_ms = generation
                .agent_limits(&caller.agent)
                .map(|l| l.timeout_ms as f64);
            let found =
                tools::resolve(&generation, &caller.agent, &request.name).map_err(|count| {
                    ErrorData::invalid_params(
                        format!(
                            "agent `{}` has no tool `{}`; tools/list lists its {count} tools",
                            caller.agent,
                            shown(&request.name),
                        ),
                        None,
                    )
                })?;
            (found.plugin, found.name, found.structured, limit_ms)
        };
        let session = self.session(&context, &caller).await?.to_string();
        let input = match &request.arguments {
            Some(arguments) => serde_json::to_string(arguments),
            None => Ok("{}".to_string()),
        }
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let call_id = CallId::new();
        let call_id_text = call_id.as_str().to_string();
        let _progress = context.meta.get_progress_token().map(|token| {
            let peer = context.peer.clone();
            let what = format!("{plugin}/{tool}");
            AbortOnDrop(tokio::spawn(async move {
                let started = Instant::now();
                let mut every = tokio::time::interval(PROGRESS_EVERY);
                every.tick().await;
                loop {
                    every.tick().await;
                    let ms = started.elapsed().as_millis() as f64;
                    let mut note = ProgressNotificationParam::new(token.clone(), ms)
                        .with_message(format!("{what} running for {:.1} s", ms / 1000.0));
                    // The total is the time limit: progress is time, and a call ends by it.
                    if let Some(total) = limit_ms {
                        note = note.with_total(total);
                    }
                    if peer.notify_progress(note).await.is_err() {
                        return;
                    }
                }
            }))
        });
        let outcome = self
            .host
            .call_cancellable(
                CallRequest {
                    tenant: caller.tenant,
                    agent: caller.agent,
                    session: session.clone(),
                    call_id,
                    plugin,
                    tool,
                    input,
                },
                &context.ct,
            )
            .await;
        match outcome {
            Ok(output) => Ok(tools::success(output, structured, &session, &call_id_text).into()),
            // The client gave up on the request, so rmcp sends it nothing; this is for the log.
            Err(e) if e.kind() == ErrorKind::Cancelled => Err(ErrorData::new(
                rmcp::model::ErrorCode::INTERNAL_ERROR,
                e.to_string(),
                Some(json!({ tools::META_CALL_ID: call_id_text })),
            )),
            Err(e) => tools::failure(&e, &session, &call_id_text).map(Into::into),
        }
    }
}

/// Aborts its task when dropped: the progress ticker ends with the call, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
