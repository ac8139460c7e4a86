//! `/v1/agents`: the tenant's agents and the tools each may call, with their schemas.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::sessions::check_agent;
use super::tenants::Tenant;
use crate::agents::names::ToolNames;

/// One of the tenant's agents.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentSummary {
    /// The agent's name.
    pub name: String,
    /// The model alias its loop uses, if it has one.
    pub model: Option<String>,
    /// How many tools it may call now.
    pub tools: usize,
}

/// The tenant's agents.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    /// By name.
    pub agents: Vec<AgentSummary>,
}

/// A tool an agent may call.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolInfo {
    /// The plugin's name in the config.
    pub plugin: String,
    /// The tool's name in the plugin.
    pub tool: String,
    /// The name the agent's model (and MCP) calls it by: `plugin__tool`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its input.
    pub input_schema: serde_json::Value,
    /// JSON Schema of its output, when the plugin declares one.
    pub output_schema: Option<serde_json::Value>,
}

/// An agent's tools.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentTools {
    /// The agent.
    pub agent: String,
    /// In plugin and tool order.
    pub tools: Vec<ToolInfo>,
}

/// Lists the tenant's agents.
#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    security(("bearer" = [])),
    responses((status = 200, body = AgentList), (status = 401, body = ErrorBody)))]
pub(super) async fn agents(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
) -> Result<Json<AgentList>, ApiError> {
    let generation = state.host.generation();
    let mut agents = Vec::new();
    if let Some(config) = generation.config()
        && let Some(t) = config.tenants.get(&tenant)
    {
        for name in &t.agents {
            let Some(agent) = config.agents.get(name) else {
                continue;
            };
            agents.push(AgentSummary {
                name: name.clone(),
                model: agent.model.clone(),
                tools: generation.agent_tools(name).len(),
            });
        }
    }
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    agents.dedup_by(|a, b| a.name == b.name);
    Ok(Json(AgentList { agents }))
}

/// Lists the tools an agent may call, with their schemas.
#[utoipa::path(get, path = "/v1/agents/{agent}/tools", tag = "agents",
    params(("agent" = String, Path, description = "The agent's name")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AgentTools),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such agent for this tenant"),
    ))]
pub(super) async fn agent_tools(
    State(state): State<Arc<ApiState>>,
    Tenant(tenant): Tenant,
    Path(agent): Path<String>,
) -> Result<Json<AgentTools>, ApiError> {
    check_agent(&state, &tenant, &agent)?;
    let generation = state.host.generation();
    let tools = generation.agent_tools(&agent);
    let (_, offered) = ToolNames::assign(tools.iter().map(|t| (t.plugin, t.tool.name.as_str())));
    let tools = tools
        .iter()
        .zip(offered)
        .map(|(t, offered)| ToolInfo {
            plugin: t.plugin.to_string(),
            tool: t.tool.name.clone(),
            name: offered.model_name,
            description: t.tool.description.clone(),
            input_schema: t.tool.input_schema.clone(),
            output_schema: t.tool.output_schema.clone(),
        })
        .collect();
    Ok(Json(AgentTools { agent, tools }))
}
