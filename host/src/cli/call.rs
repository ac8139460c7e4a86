//! `warden call PLUGIN TOOL`: one call in a fresh sandboxed instance.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::Args;

use super::{EngineArgs, LimitArgs, compile_progress, print_stdout};
use crate::error::CallError;
use crate::plugins::{Plugin, plugin_name};
use crate::sandbox::{CallIdentity, CallLimits};

/// Arguments of `warden call`.
#[derive(Debug, Args)]
pub(super) struct CallArgs {
    /// The plugin's .wasm file.
    plugin: PathBuf,
    /// The tool to call.
    tool: String,
    /// The input as JSON, or `-` to read it from stdin.
    #[arg(long, default_value = "{}")]
    input: String,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(super) async fn run(args: CallArgs) -> Result<(), CallError> {
    let input = if args.input == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            CallError::invalid_input(format!("cannot read the input from stdin: {e}"))
        })?;
        text
    } else {
        args.input
    };
    let engine = args.engine.engine()?;
    let bytes = std::fs::read(&args.plugin).map_err(|e| {
        CallError::unusable(format!(
            "cannot read plugin file `{}`: {e}",
            args.plugin.display()
        ))
    })?;
    let name = plugin_name(&args.plugin);
    let plugin = Plugin::from_bytes(&engine, &name, &bytes, compile_progress(&name)).await?;
    let limits = CallLimits {
        timeout_ms: args.limits.timeout_ms,
        memory_mb: args.limits.memory_mb,
        max_output_kb: args.limits.max_output_kb,
        max_input_kb: args.limits.max_input_kb,
    };
    let output = plugin
        .call(&args.tool, &input, &CallIdentity::default(), &limits)
        .await?;
    if std::io::stdout().is_terminal() {
        let value: serde_json::Value =
            serde_json::from_str(&output).unwrap_or(serde_json::Value::String(output.clone()));
        print_stdout(&serde_json::to_string_pretty(&value).unwrap_or(output))
    } else {
        print_stdout(&output)
    }
}
