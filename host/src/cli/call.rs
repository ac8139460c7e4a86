//! `warden call PLUGIN TOOL`: one call in a fresh sandboxed instance, through the host service
//! ([`crate::host`]). Without `--config` the plugin is a file and nothing is granted; with
//! `--config` and `--agent` it is a configured plugin called with that agent's rights, and the
//! call is audited.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::{EngineArgs, LimitArgs, PluginFileArgs, compile_progress, config, print_stdout};
use crate::error::CallError;
use crate::host::{CallId, CallRequest, HostOptions, PluginSelection, WardenHost};

/// Arguments of `warden call`.
#[derive(Debug, Args)]
pub(super) struct CallArgs {
    /// The plugin: a .wasm file, a plugin project's folder (built first, as `warden plugin build`
    /// does), or with --config the name of a configured plugin.
    plugin: String,
    /// The tool to call.
    tool: String,
    #[command(flatten)]
    options: CallOptions,
}

/// Everything `warden call` takes besides the plugin and the tool; `warden plugin test` takes
/// the same, so that the two calls behave alike.
#[derive(Debug, Args)]
pub(super) struct CallOptions {
    /// The input as JSON, or `-` to read it from stdin.
    #[arg(long, default_value = "{}")]
    input: String,
    /// The operator's config: the plugin is then a name from [plugins], called with an agent's rights.
    #[arg(long, env = "WARDEN_CONFIG")]
    pub(super) config: Option<PathBuf>,
    /// The agent whose grants and limits the call runs with (needs --config).
    #[arg(long)]
    agent: Option<String>,
    /// The id of a session of that agent to run the call in (needs --agent): the tool's
    /// `session` memory is that session's. Without it the call runs in no stored session.
    #[arg(long)]
    session: Option<String>,
    #[command(flatten)]
    plugin_file: PluginFileArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// The plugin a call goes to.
pub(super) enum Target {
    /// A component file: called with nothing granted, or with --config as the configured
    /// plugin whose `path` it is.
    File(PathBuf),
    /// A plugin configured under this name in the --config.
    Configured(String),
}

pub(super) async fn run(args: CallArgs) -> Result<(), CallError> {
    let target = if args.options.config.is_some() {
        Target::Configured(args.plugin)
    } else if Path::new(&args.plugin).is_dir() {
        Target::File(super::build::build_project(Path::new(&args.plugin))?.path)
    } else {
        Target::File(PathBuf::from(args.plugin))
    };
    call(target, args.tool, args.options).await
}

/// Calls `tool` of `target` once, as `warden call` does, and prints its output.
pub(super) async fn call(target: Target, tool: String, args: CallOptions) -> Result<(), CallError> {
    let input = read_input(&args.input)?;
    let engine = args.engine.engine()?;
    let mut options = HostOptions {
        max_plugin_bytes: args.plugin_file.max_bytes(),
        limits: args.limits.overrides(),
        on_compile: Some(Arc::new(compile_progress)),
        ..HostOptions::default()
    };
    let Some(config_path) = &args.config else {
        if args.agent.is_some() || args.session.is_some() {
            return Err(CallError::invalid_input(
                "--agent and --session need --config: agents are defined in warden.toml",
            ));
        }
        let path = match target {
            Target::File(path) => path,
            Target::Configured(name) => PathBuf::from(name),
        };
        let (host, plugin) = WardenHost::for_file(engine, &path, options).await?;
        let output = host
            .call(CallRequest {
                tenant: "local".into(),
                agent: "cli".into(),
                session: "cli".into(),
                call_id: CallId::new(),
                plugin,
                tool,
                input,
            })
            .await?;
        return print_output(output);
    };

    let config = Arc::new(config::load(config_path)?);
    let Some(agent) = args.agent else {
        return Err(CallError::invalid_input(format!(
            "name the agent to call as with --agent; the agents in {} are: {}",
            config_path.display(),
            config.agents.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let plugin = match target {
        Target::Configured(name) => name,
        Target::File(path) => configured_name(&config, config_path, &path)?,
    };
    // A one-shot call loads only the plugin it calls.
    options.plugins = PluginSelection::Only([plugin.clone()].into());
    let session = match args.session {
        Some(id) => {
            // Checked here for a clear message; the host checks the session is stored and the
            // agent's when the tool opens its `session` memory.
            if id.parse::<crate::state::sessions::SessionId>().is_err() {
                return Err(CallError::invalid_input(format!(
                    "--session takes a session id (a UUID, as `warden session list` shows), not \
                     {id:?}"
                )));
            }
            id
        }
        None => "cli".into(),
    };
    let host = WardenHost::start(engine, config, config_path, options).await?;
    let output = host
        .call(CallRequest {
            tenant: "local".into(),
            agent,
            session,
            call_id: CallId::new(),
            plugin,
            tool,
            input,
        })
        .await?;
    print_output(output)
}

/// The name under which `config` configures the component at `path`.
fn configured_name(
    config: &crate::config::WardenConfig,
    config_path: &Path,
    path: &Path,
) -> Result<String, CallError> {
    let wanted = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    config
        .plugins
        .iter()
        .find(|(_, plugin)| {
            let configured = config.resolve(&plugin.path);
            std::fs::canonicalize(&configured).unwrap_or(configured) == wanted
        })
        .map(|(name, _)| name.clone())
        .ok_or_else(|| {
            CallError::invalid_input(format!(
                "no plugin in {} has the path {}; add it as `[plugins.NAME]` with \
                 `path = \"{}\"`, or leave out --config to call it with nothing granted",
                config_path.display(),
                wanted.display(),
                wanted.display()
            ))
        })
}

fn read_input(arg: &str) -> Result<String, CallError> {
    if arg != "-" {
        return Ok(arg.to_string());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CallError::invalid_input(format!("cannot read the input from stdin: {e}")))?;
    Ok(text)
}

fn print_output(output: String) -> Result<(), CallError> {
    if std::io::stdout().is_terminal() {
        let value: serde_json::Value =
            serde_json::from_str(&output).unwrap_or(serde_json::Value::String(output.clone()));
        print_stdout(&serde_json::to_string_pretty(&value).unwrap_or(output))
    } else {
        print_stdout(&output)
    }
}
