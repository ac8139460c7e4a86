//! `warden config check`, and loading the config for the other commands.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::print_stdout;
use crate::config::{ConfigProblems, WardenConfig};
use crate::error::{CallError, ErrorKind};

/// `--config`, for the commands that need one.
#[derive(Debug, Args)]
pub(super) struct ConfigArg {
    /// The operator's config file.
    #[arg(long, env = "WARDEN_CONFIG", default_value = "warden.toml")]
    pub(super) config: PathBuf,
}

/// Subcommands of `warden config`.
#[derive(Debug, Subcommand)]
pub(super) enum ConfigCommand {
    /// Check a config and report every problem with its key and what to write instead.
    Check(ConfigArg),
}

pub(super) fn run(command: ConfigCommand) -> Result<(), CallError> {
    match command {
        ConfigCommand::Check(arg) => {
            let config = WardenConfig::load_verifying_pins(&arg.config)
                .map_err(|problems| config_error(&arg.config, &problems))?;
            // Warnings do not fail the check: the config works, but hands out more than it seems.
            let warnings = config.warnings(Some(&arg.config));
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            print_stdout(&format!(
                "{}: ok{} ({} plugins, {} sources, {} models, {} agents, {} tenants)",
                arg.config.display(),
                match warnings.len() {
                    0 => String::new(),
                    1 => ", 1 warning".into(),
                    n => format!(", {n} warnings"),
                },
                config.plugins.len(),
                config.sources.len(),
                config.models.len(),
                config.agents.len(),
                config.tenants.len()
            ))
        }
    }
}

/// Loads and checks a config; its problems become one error listing them all.
pub(super) fn load(path: &Path) -> Result<WardenConfig, CallError> {
    WardenConfig::load(path).map_err(|problems| config_error(path, &problems))
}

fn config_error(path: &Path, problems: &ConfigProblems) -> CallError {
    CallError::new(
        ErrorKind::Config,
        format!("{}: {}", path.display(), problems.to_string().trim_end()),
    )
}
