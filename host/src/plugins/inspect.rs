//! What a plugin could ever do, read before it runs: its tools, every interface it imports and
//! whether this host provides it, and its sha256.

use std::path::Path;

use serde::Serialize;

use super::{
    DEFAULT_MAX_PLUGIN_MB, Plugin, Tool, compile, plugin_name, read_plugin_file_within, sha256_hex,
    shape,
};
use crate::capabilities;
use crate::engine::WardenEngine;
use crate::error::CallError;

/// One import of a component.
#[derive(Debug, Serialize)]
pub struct ImportInfo {
    /// The full interface name, with its version.
    pub name: String,
    /// Whether this host provides it; a plugin with an unsupported import is refused at load.
    pub supported: bool,
    /// What the interface gives a plugin on this host.
    pub grants: String,
}

/// The report of `warden plugin inspect`.
#[derive(Serialize)]
pub struct Inspection {
    /// The plugin's name, from the file name.
    pub name: String,
    /// The sha256 of the file, in hex (the value for a `sha256` pin in warden.toml).
    pub sha256: String,
    /// The file's size in bytes.
    pub size_bytes: usize,
    /// The tools, when the plugin could be loaded.
    pub tools: Vec<Tool>,
    /// Every interface the component imports.
    pub imports: Vec<ImportInfo>,
    /// Every interface the component exports.
    pub exports: Vec<String>,
    /// Why the plugin cannot be used, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Inspects the component at `path`. Fails only when it is not a component at all; a component
/// this host cannot use is reported with its `problem` set.
pub async fn inspect(
    engine: &WardenEngine,
    path: &Path,
    on_compile: impl FnOnce(usize),
) -> Result<Inspection, CallError> {
    inspect_within(engine, path, DEFAULT_MAX_PLUGIN_MB << 20, on_compile).await
}

/// As [`inspect`], for a file of at most `max_bytes`; its tools are listed under the default
/// call limits.
pub async fn inspect_within(
    engine: &WardenEngine,
    path: &Path,
    max_bytes: u64,
    on_compile: impl FnOnce(usize),
) -> Result<Inspection, CallError> {
    let bytes = read_plugin_file_within(path, max_bytes)?;
    let name = plugin_name(path);
    let sha256 = sha256_hex(&bytes);
    let component = compile(engine, &name, &bytes, &sha256, on_compile)?;
    let shape = shape(engine, &component);
    let imports = shape
        .imports
        .iter()
        .map(|i| match capabilities::provided(i) {
            Some(what) => ImportInfo {
                name: i.clone(),
                supported: true,
                grants: what.to_string(),
            },
            None => ImportInfo {
                name: i.clone(),
                supported: false,
                grants: "not provided by this host".into(),
            },
        })
        .collect();
    let (tools, problem) = match Plugin::from_component(
        engine,
        &name,
        sha256.clone(),
        &component,
        &crate::sandbox::CallLimits::default(),
    )
    .await
    {
        Ok(plugin) => (
            std::sync::Arc::try_unwrap(plugin.inner)
                .map(|p| p.tools)
                .unwrap_or_default(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.message().to_string())),
    };
    Ok(Inspection {
        name,
        sha256,
        size_bytes: bytes.len(),
        tools,
        imports,
        exports: shape.exports,
        problem,
    })
}
