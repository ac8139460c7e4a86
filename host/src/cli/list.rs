//! `warden plugin list --config warden.toml`: starts the host service as a server would, loading
//! every configured plugin once, and says which serve (with their tools) and which do not (with
//! the cause). It exits 6 when any plugin failed to load, after listing them all.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::{EngineArgs, PluginFileArgs, compile_progress, config, print_stdout};
use crate::error::CallError;
use crate::host::{HostOptions, PluginStatus, WardenHost};

/// Arguments of `warden plugin list`.
#[derive(Debug, Args)]
pub(super) struct ListArgs {
    /// The operator's config file.
    #[arg(long, env = "WARDEN_CONFIG", default_value = "warden.toml")]
    config: PathBuf,
    /// Print one JSON object per plugin, a line each.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    plugin_file: PluginFileArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(super) async fn run(args: ListArgs) -> Result<(), CallError> {
    let started = Instant::now();
    let engine = args.engine.engine()?;
    let config = Arc::new(config::load(&args.config)?);
    let options = HostOptions {
        max_plugin_bytes: args.plugin_file.max_bytes(),
        on_compile: Some(Arc::new(compile_progress)),
        ..HostOptions::default()
    };
    let host = WardenHost::start(engine, config, &args.config, options).await?;
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    let plugins = host.plugins();
    let mut failed = Vec::new();
    let mut lines = Vec::new();
    for status in &plugins {
        match status {
            PluginStatus::Ready { name, plugin } => {
                let sha256 = plugin.sha256();
                let names: Vec<&str> = plugin.tools().iter().map(|t| t.name.as_str()).collect();
                lines.push(if args.json {
                    json!({"plugin": name, "status": "ready", "sha256": sha256, "tools": names})
                        .to_string()
                } else {
                    format!(
                        "{name:<20} ready   {} tools: {}",
                        names.len(),
                        names.join(", ")
                    )
                });
            }
            PluginStatus::Failed { name, error } => {
                failed.push(name.as_str());
                lines.push(if args.json {
                    json!({"plugin": name, "status": "failed", "error": error.to_string()})
                        .to_string()
                } else {
                    format!("{name:<20} FAILED  {error}")
                });
            }
        }
    }
    if !args.json {
        lines.push(format!(
            "{} of {} plugins serve; the host was ready in {ready_ms:.0} ms",
            plugins.len() - failed.len(),
            plugins.len()
        ));
    }
    print_stdout(&lines.join("\n"))?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CallError::unusable(format!(
            "{} of {} plugins did not load: {}; the others serve",
            failed.len(),
            plugins.len(),
            failed.join(", ")
        )))
    }
}
