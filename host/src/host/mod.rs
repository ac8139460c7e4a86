//! The host service: one async call path for every front end.
//!
//! A [`WardenHost`] is built once from a config. It configures the capabilities, loads every
//! plugin once (compiled through the cache, linked into an `InstancePre`, its tools and their
//! schema validators ready), and computes each agent's limits and effective rights for each
//! plugin. [`WardenHost::call`] then does everything one call needs — the tool permission,
//! the input checks, the limits, the audit, the sandboxed call — so the CLI, the HTTP API, the
//! MCP server and the agent loop are thin adapters that never re-implement a check.
//!
//! What the host serves is a [`Generation`]: immutable, held behind an `Arc`. A reload builds
//! a new generation beside the old one and swaps it in atomically; calls in flight finish on
//! the generation they started with.

mod generation;
mod request;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

pub use crate::sandbox::{CallId, MAX_CALL_ID_BYTES};
pub use generation::{AgentTool, Generation};
use generation::{PluginSlot, Served};
pub use request::CallRequest;

use crate::capabilities::{CallGrants, CallSite};
use crate::config::{AgentLimits, WardenConfig};
use crate::engine::WardenEngine;
use crate::error::{CallError, ErrorKind};
use crate::metrics;
use crate::plugins::{DEFAULT_MAX_PLUGIN_MB, Plugin, TOOL_NAME_RULE, is_valid_tool_name};
use crate::policy::{Outcome, check_tool};
use crate::sandbox::{CallIdentity, CallLimits};
use tokio_util::sync::CancellationToken;

/// Limits set by the operator for every call of this host (the CLI's flags). Each one set here
/// overrides the agent's `limits`, which override the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// Wall-clock limit of a call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Linear-memory limit of a call, in MiB.
    pub memory_mb: Option<u64>,
    /// Limit on a tool's output, in KiB.
    pub max_output_kb: Option<u64>,
    /// Limit on a tool's input, in KiB.
    pub max_input_kb: Option<u64>,
}

impl LimitOverrides {
    /// The limits of a call for an agent with `agent` limits.
    pub fn resolve(&self, agent: &AgentLimits) -> CallLimits {
        let defaults = CallLimits::default();
        CallLimits {
            timeout_ms: self
                .timeout_ms
                .or(agent.call_timeout_ms)
                .unwrap_or(defaults.timeout_ms),
            memory_mb: self
                .memory_mb
                .or(agent.memory_mb)
                .unwrap_or(defaults.memory_mb),
            max_output_kb: self
                .max_output_kb
                .or(agent.max_output_kb)
                .unwrap_or(defaults.max_output_kb),
            max_input_kb: self.max_input_kb.unwrap_or(defaults.max_input_kb),
        }
    }
}

/// Which configured plugins a host loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PluginSelection {
    /// Every plugin in the config: a long-running host.
    #[default]
    All,
    /// Only these: a one-shot command that calls one plugin need not load the rest.
    Only(BTreeSet<String>),
}

impl PluginSelection {
    fn includes(&self, name: &str) -> bool {
        match self {
            PluginSelection::All => true,
            PluginSelection::Only(names) => names.contains(name),
        }
    }
}

/// Told a plugin's name and size when a compile the cache could not spare is still running
/// after a second ([`crate::engine::SLOW_COMPILE`]).
pub type CompileProgress = Arc<dyn Fn(&str, usize) + Send + Sync>;

/// How a host is built, besides its config.
#[derive(Clone)]
pub struct HostOptions {
    /// The largest plugin file read; a bigger one is refused before it is read.
    pub max_plugin_bytes: u64,
    /// Limits that override every agent's.
    pub limits: LimitOverrides,
    /// Which plugins to load.
    pub plugins: PluginSelection,
    /// Told of a compile still running after a second, so a front end can say why it waits.
    pub on_compile: Option<CompileProgress>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            max_plugin_bytes: DEFAULT_MAX_PLUGIN_MB << 20,
            limits: LimitOverrides::default(),
            plugins: PluginSelection::All,
            on_compile: None,
        }
    }
}

/// How a plugin of the current generation stands.
#[derive(Debug, Clone)]
pub enum PluginStatus {
    /// Loaded and serving these tools.
    Ready {
        /// The plugin's name.
        name: String,
        /// The loaded plugin: its tools, its sha256, its imports.
        plugin: Plugin,
    },
    /// Not served, and why.
    Failed {
        /// The plugin's name.
        name: String,
        /// What went wrong when it was loaded.
        error: CallError,
    },
}

/// The host service. Cheap to share: clone the `Arc` it is built in.
pub struct WardenHost {
    engine: WardenEngine,
    options: HostOptions,
    current: RwLock<Arc<Generation>>,
}

impl WardenHost {
    /// Builds the host for `config` (read from `source`, named in messages). A plugin that fails
    /// to load is reported with its cause (see [`WardenHost::plugins`]) and the others still
    /// serve; a config whose capabilities cannot be configured is an error.
    pub async fn start(
        engine: WardenEngine,
        config: Arc<WardenConfig>,
        source: &Path,
        options: HostOptions,
    ) -> Result<WardenHost, CallError> {
        let generation = Generation::configured(&engine, config, source, &options).await?;
        Ok(WardenHost {
            engine,
            options,
            current: RwLock::new(Arc::new(generation)),
        })
    }

    /// A host serving the one plugin file at `path` with nothing granted, as
    /// `warden call FILE.wasm` runs it; returns the host and the plugin's name.
    pub async fn for_file(
        engine: WardenEngine,
        path: &Path,
        options: HostOptions,
    ) -> Result<(WardenHost, String), CallError> {
        let (generation, name) = Generation::file(&engine, path, &options).await?;
        let host = WardenHost {
            engine,
            options,
            current: RwLock::new(Arc::new(generation)),
        };
        Ok((host, name))
    }

    /// Builds a generation from `config` and swaps it in atomically. Calls already running
    /// finish on the generation they started with; the next call sees the new one. On an error
    /// the current generation stays.
    pub async fn reload(&self, config: Arc<WardenConfig>, source: &Path) -> Result<(), CallError> {
        let next = Generation::configured(&self.engine, config, source, &self.options).await?;
        self.swap(Arc::new(next));
        Ok(())
    }

    fn swap(&self, next: Arc<Generation>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// The generation serving now.
    pub fn generation(&self) -> Arc<Generation> {
        // Held only to clone an `Arc`: never across an await, never for long.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The engine the host runs plugins on.
    pub fn engine(&self) -> &WardenEngine {
        &self.engine
    }

    /// Every plugin of the current generation, loaded or not, by name.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.generation()
            .plugins
            .iter()
            .map(|(name, slot)| match slot {
                PluginSlot::Ready(plugin) => PluginStatus::Ready {
                    name: name.clone(),
                    plugin: plugin.clone(),
                },
                PluginSlot::Failed(error) => PluginStatus::Failed {
                    name: name.clone(),
                    error: error.clone(),
                },
            })
            .collect()
    }

    /// Runs one call: checks that the agent may call the tool, then runs it in a fresh sandboxed
    /// instance with the agent's limits and effective rights. The call and every capability use
    /// go into the audit log; a denial of the tool itself is audited too. Every call, refused or
    /// run, is timed in [`metrics`].
    pub async fn call(&self, request: CallRequest) -> Result<String, CallError> {
        self.call_cancellable(request, &CancellationToken::new())
            .await
    }

    /// [`WardenHost::call`], stopped when `cancel` fires: the instance is dropped at its next
    /// epoch tick, the call ends with [`ErrorKind::Cancelled`], and the audit log records it.
    pub async fn call_cancellable(
        &self,
        request: CallRequest,
        cancel: &CancellationToken,
    ) -> Result<String, CallError> {
        let started = Instant::now();
        let generation = self.generation();
        let (plugin, tool) = served_labels(&generation, &request.plugin, &request.tool);
        let result = call_on(&generation, request, cancel).await;
        let outcome = result.as_ref().map(|_| ()).map_err(CallError::kind);
        metrics::tool_call(plugin, tool, outcome, started.elapsed());
        result
    }
}

/// The checks and the sandboxed call of [`WardenHost::call`], on the generation it started on.
async fn call_on(
    generation: &Generation,
    request: CallRequest,
    cancel: &CancellationToken,
) -> Result<String, CallError> {
    check_names(&request)?;
    let identity = CallIdentity {
        tenant: request.tenant,
        agent: request.agent,
        session: request.session,
        call_id: request.call_id.into_string(),
    };
    match &generation.served {
        Served::File { limits } => {
            let plugin = ready(generation, &request.plugin)?;
            let limits = limits.clone()?;
            let grants = CallGrants::none(&request.plugin);
            plugin
                .call_granted(
                    &request.tool,
                    &request.input,
                    &identity,
                    &limits,
                    &grants,
                    cancel,
                )
                .await
        }
        Served::Configured {
            config,
            source,
            agents,
            ..
        } => {
            let Some(agent) = agents.get(&identity.agent) else {
                return Err(CallError::invalid_input(format!(
                    "there is no agent `{}` in {source}; the agents are: {}",
                    shown(&identity.agent),
                    names(config.agents.keys())
                )));
            };
            if !config.plugins.contains_key(&request.plugin) {
                return Err(CallError::unusable(format!(
                    "`{}` is not a plugin in [plugins] of {source}; the plugins are: {}",
                    shown(&request.plugin),
                    names(config.plugins.keys())
                )));
            }
            let Some(grants) = agent.grants.get(&request.plugin) else {
                return Err(CallError::unusable(format!(
                    "plugin `{}` is not loaded by this host (it loads only {})",
                    request.plugin,
                    names(generation.plugins.keys())
                )));
            };
            if let Err(denial) = check_tool(config, &identity.agent, &request.plugin, &request.tool)
            {
                let denial = denial.to_string();
                deny_tool(grants, &identity, &request.plugin, &request.tool, &denial).await;
                return Err(CallError::new(ErrorKind::Denied, denial));
            }
            let limits = agent.limits.clone()?;
            let plugin = ready(generation, &request.plugin)?;
            plugin
                .call_granted(
                    &request.tool,
                    &request.input,
                    &identity,
                    &limits,
                    grants,
                    cancel,
                )
                .await
        }
    }
}

/// The metric labels of a call, borrowed from the generation: the plugin and tool when it serves
/// them, else [`metrics::UNKNOWN`]. Only names the operator configured and the plugins declared
/// become labels, so names made up by a caller add no series.
fn served_labels<'g>(generation: &'g Generation, plugin: &str, tool: &str) -> (&'g str, &'g str) {
    match generation.plugins.get_key_value(plugin) {
        Some((name, PluginSlot::Ready(loaded))) => match loaded.tool(tool) {
            Some(known) => (name, &known.name),
            None => (name, metrics::UNKNOWN),
        },
        Some((name, PluginSlot::Failed(_))) => (name, metrics::UNKNOWN),
        None => (metrics::UNKNOWN, metrics::UNKNOWN),
    }
}

/// Records a refused tool. Denied either way; a record that cannot be written is logged by
/// `audit`.
async fn deny_tool(
    grants: &CallGrants,
    identity: &CallIdentity,
    plugin: &str,
    tool: &str,
    why: &str,
) {
    let site = CallSite {
        identity,
        plugin,
        tool,
    };
    let _ = grants
        .audit(
            &site,
            "call",
            &format!("{plugin}/{tool}"),
            Outcome::Denied,
            why,
        )
        .await;
}

/// The loaded plugin `name`, or why it is not served. A configured call reaches here only for
/// a plugin the generation loaded (its grants exist), so a missing one is a file host's.
fn ready<'g>(generation: &'g Generation, name: &str) -> Result<&'g Plugin, CallError> {
    match generation.plugins.get(name) {
        Some(PluginSlot::Ready(plugin)) => Ok(plugin),
        Some(PluginSlot::Failed(error)) => Err(error.clone()),
        None => Err(CallError::unusable(format!(
            "this host serves plugin `{}`, not `{}`",
            names(generation.plugins.keys()),
            shown(name)
        ))),
    }
}

/// Refuses a tool name no plugin can have before anything looks it up: the caller's text is
/// hostile input, and the close-name search of an unknown tool costs its length times the tools.
fn check_names(request: &CallRequest) -> Result<(), CallError> {
    if !is_valid_tool_name(&request.tool) {
        return Err(CallError::invalid_input(format!(
            "`{}` is not a tool name: tool names match {TOOL_NAME_RULE}",
            shown(&request.tool)
        )));
    }
    Ok(())
}

/// A name from a caller, as messages show it: at most 64 characters, control characters
/// escaped, so that an error line cannot be stretched or forged.
pub(crate) fn shown(name: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = name
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if name.chars().count() > MAX {
        out.push('…');
    }
    out
}

fn names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        "(none)".into()
    } else {
        list.join(", ")
    }
}
