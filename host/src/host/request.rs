//! What a front end hands the host service for one call.

use crate::sandbox::CallId;

/// One tool call, as a front end (the CLI, the HTTP API, MCP, the agent loop) asks for it. Who
/// is calling is set by the front end from what it authenticated, never by the caller's input.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The tenant the call runs for.
    pub tenant: String,
    /// The agent whose grants, tools and limits the call runs with.
    pub agent: String,
    /// The agent's session.
    pub session: String,
    /// The call's id.
    pub call_id: CallId,
    /// The plugin, by its name in the config.
    pub plugin: String,
    /// The tool.
    pub tool: String,
    /// The input, as JSON text.
    pub input: String,
}
