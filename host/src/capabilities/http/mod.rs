//! Outbound HTTP for `http` sources, through `wasi:http/outgoing-handler`.
//!
//! Placeholder until the HTTP capability lands: the interface is not linked, so a component
//! that imports `wasi:http` still loads (it is listed as provided) but every request is refused.

use wasmtime::component::Linker;

use crate::config::WardenConfig;
use crate::sandbox::CallState;

/// Every configured `http` source.
#[derive(Debug, Default)]
pub struct HttpSources {}

impl HttpSources {
    /// Prepares the configured `http` sources.
    pub fn configure(_config: &WardenConfig) -> Result<HttpSources, String> {
        Ok(HttpSources {})
    }
}

/// Checks one allowlist pattern, e.g. `https://api.example.com/v2/*`.
pub fn parse_allow_pattern(pattern: &str) -> Result<(), String> {
    if pattern.starts_with("https://") || pattern.starts_with("http://") {
        Ok(())
    } else {
        Err(format!(
            "`{pattern}` is not an allowed URL pattern; write e.g. \"https://api.example.com/v2/*\""
        ))
    }
}

/// Links `wasi:http` (outgoing only).
pub(crate) fn link(_linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    Ok(())
}
