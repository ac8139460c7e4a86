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

/// One kind of thing outside the sandbox a plugin might reach, and how far it could.
#[derive(Debug, Serialize)]
pub struct CapabilityInfo {
    /// The capability's short name: `http`, `sockets`, `files`, `sql`, `memory`, `model`, `log`.
    pub name: &'static str,
    /// The interfaces of this capability the component imports; empty when it imports none.
    pub imports: Vec<String>,
    /// What the plugin could reach through them on this host, and what an operator must grant
    /// first. `None` when it imports none of them, and so can never use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<&'static str>,
    /// Whether the plugin could use it with no grant at all.
    pub without_grant: bool,
}

/// The capabilities `inspect` reports, each with the import prefixes that give it, what it
/// reaches on this host, and whether that needs no grant. Importing an interface is not reaching
/// anything: componentize-py and componentize-js import `wasi:filesystem` and `wasi:sockets`
/// into every component, used or not, and neither reaches anything without a grant here.
const CAPABILITIES: &[(&str, &[&str], &str, bool)] = &[
    (
        "http",
        &["wasi:http/"],
        "outgoing HTTP, only to the hosts an operator allowlists in an `http:NAME` grant; nothing \
         without one",
        false,
    ),
    (
        "sockets",
        &["wasi:sockets/"],
        "nothing: this host grants no socket address to any plugin (HTTP goes through wasi:http \
         and its grants)",
        false,
    ),
    (
        "files",
        &["wasi:filesystem/"],
        "only the directories an operator grants (`dir:NAME:ro` or `:rw`); nothing without a \
         grant",
        false,
    ),
    (
        "sql",
        &["warden:plugin/data"],
        "only the SQL sources an operator grants (`sql:NAME:ro`, writes only with `:rw`); \
         nothing without a grant",
        false,
    ),
    (
        "memory",
        &["warden:plugin/memory"],
        "its own session's and agent's memory once the plugin's `max` lists `memory:session` or \
         `memory:agent` (no agent grant needed); a shared namespace only with a `memory:NAME` \
         grant; nothing without an operator's entry",
        false,
    ),
    (
        "model",
        &["warden:plugin/model"],
        "completions only through the model aliases an operator grants (`model:ALIAS`); nothing \
         without a grant",
        false,
    ),
    (
        "log",
        &["warden:plugin/log"],
        "lines in the host's log (stdout and stderr are captured there too)",
        true,
    ),
];

/// What the plugin's imports could reach, capability by capability, in the order of
/// [`CAPABILITIES`].
pub fn capabilities(imports: &[String]) -> Vec<CapabilityInfo> {
    CAPABILITIES
        .iter()
        .map(|(name, prefixes, reach, without_grant)| {
            let imported: Vec<String> = imports
                .iter()
                .filter(|i| prefixes.iter().any(|p| i.starts_with(p)))
                .cloned()
                .collect();
            let used = !imported.is_empty();
            CapabilityInfo {
                name,
                imports: imported,
                reach: used.then_some(*reach),
                without_grant: used && *without_grant,
            }
        })
        .collect()
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
    /// What those imports could reach, capability by capability.
    pub capabilities: Vec<CapabilityInfo>,
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
        capabilities: capabilities(&shape.imports),
        exports: shape.exports,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imports(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_capability_is_reported_imported_or_not() {
        let report = capabilities(&imports(&["warden:plugin/log@0.1.0"]));
        let names: Vec<&str> = report.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            ["http", "sockets", "files", "sql", "memory", "model", "log"]
        );
        for c in &report {
            assert_eq!(c.reach.is_some(), c.name == "log", "{c:?}");
        }
    }

    #[test]
    fn sql_and_memory_are_named_with_what_they_reach() {
        let report = capabilities(&imports(&[
            "warden:plugin/data@0.1.0",
            "warden:plugin/memory@0.1.0",
        ]));
        let sql = report.iter().find(|c| c.name == "sql").unwrap();
        assert_eq!(sql.imports, ["warden:plugin/data@0.1.0"]);
        assert!(sql.reach.unwrap().contains("grant"), "{sql:?}");
        assert!(!sql.without_grant);
        let memory = report.iter().find(|c| c.name == "memory").unwrap();
        assert!(
            memory.reach.unwrap().contains("memory:session"),
            "{memory:?}"
        );
        // Even its own session's memory needs the operator's `max` entry.
        assert!(!memory.without_grant, "{memory:?}");
    }

    #[test]
    fn imported_sockets_and_files_reach_nothing_without_a_grant() {
        let report = capabilities(&imports(&[
            "wasi:sockets/tcp@0.2.3",
            "wasi:sockets/udp@0.2.3",
            "wasi:filesystem/preopens@0.2.3",
        ]));
        let sockets = report.iter().find(|c| c.name == "sockets").unwrap();
        assert_eq!(sockets.imports.len(), 2);
        assert!(!sockets.without_grant);
        assert!(sockets.reach.unwrap().starts_with("nothing"), "{sockets:?}");
        let files = report.iter().find(|c| c.name == "files").unwrap();
        assert!(!files.without_grant);
    }
}
