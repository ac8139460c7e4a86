//! One generation of the host: a config with everything built from it once — the capabilities,
//! every plugin loaded (or the reason it could not be), and each agent's limits and effective
//! rights per plugin. A generation never changes; a reload builds a new one and swaps it in.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::HostOptions;
use crate::capabilities::{CallGrants, Capabilities};
use crate::config::{AgentLimits, WardenConfig};
use crate::engine::WardenEngine;
use crate::error::{CallError, ErrorKind};
use crate::plugins::{Plugin, plugin_name, read_plugin_file_within};
use crate::sandbox::{CallLimits, MAX_OUTPUT_KB};

/// A tool an agent may call: its plugin's name in the config, and the tool as the plugin
/// declared it.
#[derive(Debug, Clone, Copy)]
pub struct AgentTool<'g> {
    /// The plugin's name in the config.
    pub plugin: &'g str,
    /// The tool: its name, description and schemas.
    pub tool: &'g crate::plugins::Tool,
}

/// A plugin of a generation: loaded and ready, or the reason it is not.
#[derive(Clone)]
pub(super) enum PluginSlot {
    Ready(Plugin),
    Failed(CallError),
}

/// An agent's limits (or why they are unusable) and its grants for each plugin.
pub(super) struct AgentEntry {
    pub(super) limits: Result<CallLimits, CallError>,
    pub(super) grants: BTreeMap<String, CallGrants>,
}

/// What the host serves: a configured set of agents and plugins, or one plugin file with
/// nothing granted (`warden call FILE.wasm`).
pub(super) enum Served {
    Configured {
        config: Arc<WardenConfig>,
        /// Where the config came from, for messages.
        source: String,
        agents: BTreeMap<String, AgentEntry>,
        /// The capabilities every grant of this generation shares: the store, the router.
        capabilities: Arc<Capabilities>,
    },
    File {
        limits: Result<CallLimits, CallError>,
    },
}

/// One immutable generation of the host.
pub struct Generation {
    pub(super) served: Served,
    pub(super) plugins: BTreeMap<String, PluginSlot>,
}

impl Generation {
    /// Builds a generation from `config`: configures the capabilities, loads the plugins that
    /// `options` selects (each once; one that fails is kept with its cause, and the others
    /// still serve), and computes every agent's limits and rights.
    pub(super) async fn configured(
        engine: &WardenEngine,
        config: Arc<WardenConfig>,
        source: &Path,
        options: &HostOptions,
    ) -> Result<Generation, CallError> {
        let source = source.display().to_string();
        // A config may come here having had only its shape checked (`WardenConfig::load`):
        // what each capability would refuse is refused before anything is built.
        let problems = crate::capabilities::check::problems(&config);
        if !problems.is_empty() {
            let problems = crate::config::ConfigProblems(problems);
            return Err(CallError::new(
                ErrorKind::Config,
                format!("{source}: {}", problems.to_string().trim_end()),
            ));
        }
        // Opening the store (and migrating it) does file and database I/O: off the async workers.
        let for_configure = config.clone();
        let capabilities =
            tokio::task::spawn_blocking(move || Capabilities::configure(for_configure))
                .await
                .map_err(|e| {
                    CallError::new(
                        ErrorKind::Internal,
                        format!("configuring the host failed: {e}"),
                    )
                })?
                .map_err(|e| CallError::new(ErrorKind::Config, format!("{source}: {e}")))?;
        let capabilities = Arc::new(capabilities);
        let mut plugins = BTreeMap::new();
        for (name, plugin) in &config.plugins {
            if !options.plugins.includes(name) {
                continue;
            }
            let path = if crate::plugins::builtin::for_path(&plugin.path).is_some() {
                plugin.path.clone()
            } else {
                config.resolve(&plugin.path)
            };
            let limits =
                clamp_for_loading(options.limits.resolve(&strictest_limits(&config, name)));
            let slot = match load(
                engine,
                name,
                &path,
                plugin.sha256.as_deref(),
                &limits,
                options,
            )
            .await
            {
                Ok(plugin) => PluginSlot::Ready(plugin),
                Err(e) => {
                    tracing::error!("plugin `{name}` is not served: {e}");
                    PluginSlot::Failed(e)
                }
            };
            plugins.insert(name.clone(), slot);
        }
        let agents = config
            .agents
            .iter()
            .map(|(agent, agent_config)| {
                let grants = config
                    .plugins
                    .keys()
                    .filter(|plugin| plugins.contains_key(*plugin))
                    .map(|plugin| {
                        let grants = CallGrants::for_agent(&capabilities, plugin, agent);
                        (plugin.clone(), grants)
                    })
                    .collect();
                let entry = AgentEntry {
                    limits: checked_limits(options.limits.resolve(&agent_config.limits)),
                    grants,
                };
                (agent.clone(), entry)
            })
            .collect();
        Ok(Generation {
            served: Served::Configured {
                config,
                source,
                agents,
                capabilities,
            },
            plugins,
        })
    }

    /// A generation serving the one plugin file at `path`, named after the file, with nothing
    /// granted. A file that cannot be loaded is an error: there is nothing else to serve.
    pub(super) async fn file(
        engine: &WardenEngine,
        path: &Path,
        options: &HostOptions,
    ) -> Result<(Generation, String), CallError> {
        let name = plugin_name(path);
        let limits = checked_limits(options.limits.resolve(&AgentLimits::default()));
        let load_limits = limits.clone()?;
        let plugin = load(engine, &name, path, None, &load_limits, options).await?;
        let mut plugins = BTreeMap::new();
        plugins.insert(name.clone(), PluginSlot::Ready(plugin));
        Ok((
            Generation {
                served: Served::File { limits },
                plugins,
            },
            name,
        ))
    }

    /// The capabilities of a configured generation: its state store and model router.
    pub fn capabilities(&self) -> Option<&Arc<Capabilities>> {
        match &self.served {
            Served::Configured { capabilities, .. } => Some(capabilities),
            Served::File { .. } => None,
        }
    }

    /// The tools `agent` may call, in plugin and tool order, among the plugins that serve; a
    /// plugin that failed to load offers none.
    pub fn agent_tools(&self, agent: &str) -> Vec<AgentTool<'_>> {
        let Some(config) = self.config() else {
            return Vec::new();
        };
        let mut tools = Vec::new();
        for (name, slot) in &self.plugins {
            let PluginSlot::Ready(plugin) = slot else {
                continue;
            };
            for tool in plugin.tools() {
                if crate::policy::check_tool(config, agent, name, &tool.name).is_ok() {
                    tools.push(AgentTool { plugin: name, tool });
                }
            }
        }
        tools
    }

    /// Tool `tool` of plugin `plugin`: `None` when this generation has no such plugin or the
    /// plugin no such tool, `Some(Err)` with the cause when the plugin failed to load.
    pub fn tool(
        &self,
        plugin: &str,
        tool: &str,
    ) -> Option<Result<&crate::plugins::Tool, &CallError>> {
        match self.plugins.get(plugin)? {
            PluginSlot::Ready(loaded) => loaded.tool(tool).map(Ok),
            PluginSlot::Failed(error) => Some(Err(error)),
        }
    }

    /// The limits `agent`'s calls run with (the operator's overrides applied), if the agent
    /// is configured and its limits are usable.
    pub fn agent_limits(&self, agent: &str) -> Option<CallLimits> {
        match &self.served {
            Served::Configured { agents, .. } => agents.get(agent)?.limits.clone().ok(),
            Served::File { limits } => limits.clone().ok(),
        }
    }

    /// The config this generation serves, if it serves one.
    pub fn config(&self) -> Option<&Arc<WardenConfig>> {
        match &self.served {
            Served::Configured { config, .. } => Some(config),
            Served::File { .. } => None,
        }
    }
}

/// Reads, pins and loads one plugin.
async fn load(
    engine: &WardenEngine,
    name: &str,
    path: &Path,
    pin: Option<&str>,
    limits: &CallLimits,
    options: &HostOptions,
) -> Result<Plugin, CallError> {
    let bytes = match crate::plugins::builtin::for_path(path) {
        Some(Ok(bytes)) => std::borrow::Cow::Borrowed(bytes),
        Some(Err(message)) => return Err(CallError::unusable(message)),
        None => std::borrow::Cow::Owned(read_plugin_file_within(path, options.max_plugin_bytes)?),
    };
    let on_compile = |size| {
        if let Some(progress) = &options.on_compile {
            progress(name, size);
        }
    };
    Plugin::from_bytes_with_limits(
        engine,
        name,
        &bytes,
        pin.map(|pin| (path, pin)),
        limits,
        on_compile,
    )
    .await
}

/// The strictest limits among the agents that may call `plugin`, so that a plugin cannot spend
/// more listing its tools than any call of it may. With no such agent, the defaults.
fn strictest_limits(config: &WardenConfig, plugin: &str) -> AgentLimits {
    let mut strictest = AgentLimits::default();
    let lower = |slot: &mut Option<u64>, value: Option<u64>| {
        if let Some(v) = value {
            *slot = Some(slot.map_or(v, |s| s.min(v)));
        }
    };
    for agent in config.agents.values() {
        if !agent.tools.iter().any(|t| t.plugin == plugin) {
            continue;
        }
        lower(&mut strictest.call_timeout_ms, agent.limits.call_timeout_ms);
        lower(&mut strictest.memory_mb, agent.limits.memory_mb);
        lower(&mut strictest.max_output_kb, agent.limits.max_output_kb);
    }
    strictest
}

/// Refuses limits no call can meet: an output over [`MAX_OUTPUT_KB`] is never handed over.
pub(super) fn checked_limits(limits: CallLimits) -> Result<CallLimits, CallError> {
    if limits.max_output_kb > MAX_OUTPUT_KB {
        return Err(CallError::invalid_input(format!(
            "--max-output-kb (or an agent's max_output_kb) is {}, but no output over {} KiB \
             ({} MiB) is ever handed over; use at most {MAX_OUTPUT_KB}",
            limits.max_output_kb,
            MAX_OUTPUT_KB,
            MAX_OUTPUT_KB / 1024
        )));
    }
    Ok(limits)
}

/// Listing tools under an output limit no call can have would only fail the load; the calls
/// themselves report the bad limit.
fn clamp_for_loading(mut limits: CallLimits) -> CallLimits {
    limits.max_output_kb = limits.max_output_kb.min(MAX_OUTPUT_KB);
    limits
}
