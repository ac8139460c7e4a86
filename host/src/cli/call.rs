//! `warden call PLUGIN TOOL`: one call in a fresh sandboxed instance. Without `--config` the
//! plugin is a file and nothing is granted; with `--config` and `--agent` it is a configured
//! plugin called with that agent's rights, and the call is audited.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::Args;

use super::{EngineArgs, LimitArgs, compile_progress, config, print_stdout};
use crate::capabilities::{CallGrants, CallSite};
use crate::config::AgentLimits;
use crate::error::{CallError, ErrorKind};
use crate::plugins::{DEFAULT_MAX_PLUGIN_MB, Plugin, plugin_name, read_plugin_file_within};
use crate::policy::check_tool;
use crate::sandbox::{CallIdentity, CallLimits, MAX_OUTPUT_KB, new_call_id};

/// Arguments of `warden call`.
#[derive(Debug, Args)]
pub(super) struct CallArgs {
    /// The plugin: a .wasm file, or with --config the name of a configured plugin.
    plugin: String,
    /// The tool to call.
    tool: String,
    /// The input as JSON, or `-` to read it from stdin.
    #[arg(long, default_value = "{}")]
    input: String,
    /// The operator's config: the plugin is then a name from [plugins], called with an agent's rights.
    #[arg(long, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// The agent whose grants and limits the call runs with (needs --config).
    #[arg(long)]
    agent: Option<String>,
    /// The largest plugin file read, in MiB; a bigger one is refused before it is read.
    #[arg(long, env = "WARDEN_MAX_PLUGIN_MB", default_value_t = DEFAULT_MAX_PLUGIN_MB,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_plugin_mb: u64,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Refuses limits no call can meet: an output over [`MAX_OUTPUT_KB`] is never handed over.
fn checked_limits(limits: CallLimits) -> Result<CallLimits, CallError> {
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

pub(super) async fn run(args: CallArgs) -> Result<(), CallError> {
    let input = read_input(&args.input)?;
    let engine = args.engine.engine()?;
    let Some(config_path) = &args.config else {
        if args.agent.is_some() {
            return Err(CallError::invalid_input(
                "--agent needs --config: agents are defined in warden.toml",
            ));
        }
        let path = PathBuf::from(&args.plugin);
        let name = plugin_name(&path);
        let limits = checked_limits(args.limits.resolve(&AgentLimits::default()))?;
        let bytes = read_plugin_file_within(&path, args.max_plugin_mb << 20)?;
        let plugin = Plugin::from_bytes_with_limits(
            &engine,
            &name,
            &bytes,
            None,
            &limits,
            compile_progress(&name),
        )
        .await?;
        let output = plugin
            .call(&args.tool, &input, &CallIdentity::default(), &limits)
            .await?;
        return print_output(output);
    };

    let capabilities = config::capabilities(config_path)?;
    let cfg = &capabilities.config;
    let agent = match &args.agent {
        Some(agent) => agent.clone(),
        None => {
            return Err(CallError::invalid_input(format!(
                "name the agent to call as with --agent; the agents in {} are: {}",
                config_path.display(),
                cfg.agents.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    };
    let Some(plugin_config) = cfg.plugins.get(&args.plugin) else {
        return Err(CallError::unusable(format!(
            "`{}` is not a plugin in [plugins] of {}; the plugins are: {}",
            args.plugin,
            config_path.display(),
            cfg.plugins.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let Some(agent_config) = cfg.agents.get(&agent) else {
        return Err(CallError::invalid_input(format!(
            "there is no agent `{agent}` in {}; the agents are: {}",
            config_path.display(),
            cfg.agents.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let identity = CallIdentity {
        tenant: "local".into(),
        agent: agent.clone(),
        session: "cli".into(),
        call_id: new_call_id(),
    };
    let grants = CallGrants::for_agent(&capabilities, &args.plugin, &agent);
    if let Err(denial) = check_tool(cfg, &agent, &args.plugin, &args.tool) {
        let target = format!("{}/{}", args.plugin, args.tool);
        let site = CallSite {
            identity: &identity,
            plugin: &args.plugin,
            tool: &args.tool,
        };
        // Denied either way; a record that cannot be written is logged by `audit`.
        let _ = grants
            .audit(
                &site,
                "call",
                &target,
                crate::policy::Outcome::Denied,
                &denial,
            )
            .await;
        return Err(CallError::new(ErrorKind::Denied, denial));
    }
    let limits = checked_limits(args.limits.resolve(&agent_config.limits))?;
    let path = cfg.resolve(&plugin_config.path);
    let bytes = read_plugin_file_within(&path, args.max_plugin_mb << 20)?;
    let pin = plugin_config
        .sha256
        .as_deref()
        .map(|pin| (path.as_path(), pin));
    let plugin = Plugin::from_bytes_with_limits(
        &engine,
        &args.plugin,
        &bytes,
        pin,
        &limits,
        compile_progress(&args.plugin),
    )
    .await?;
    let output = plugin
        .call_granted(&args.tool, &input, &identity, &limits, &grants)
        .await?;
    print_output(output)
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
