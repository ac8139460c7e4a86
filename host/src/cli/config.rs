//! `warden config check`, and loading the config for the other commands.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::print_stdout;
use crate::capabilities::check;
use crate::config::{ConfigProblem, ConfigProblems, WardenConfig};
use crate::engine::CompileCache;
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
            let config = check::load_and(&arg.config, plugin_file_problems)
                .map_err(|problems| config_error(&arg.config, &problems))?;
            // Warnings do not fail the check: the config works, but hands out more than it seems.
            let cache = CompileCache::default_dir();
            let warnings = config.warnings(Some(&arg.config), cache.as_deref());
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

/// Loads and checks a config, its shape and every capability's sections; its problems become
/// one error listing them all.
pub(super) fn load(path: &Path) -> Result<WardenConfig, CallError> {
    check::load(path).map_err(|problems| config_error(path, &problems))
}

/// Plugins whose file is missing, and pinned plugins whose file no longer has the pinned
/// sha256. This reads and hashes every pinned file, so it belongs to `warden config check`, not
/// to every start: at start-up each plugin that fails to load (a missing file, a pin that does
/// not match, see [`crate::plugins::check_pin`]) is reported on its own, and the others serve.
fn plugin_file_problems(config: &WardenConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for (name, plugin) in &config.plugins {
        match crate::plugins::builtin::for_path(&plugin.path) {
            Some(Ok(_)) => continue,
            Some(Err(message)) => {
                problems.push(ConfigProblem {
                    key: format!("plugins.{name}.path"),
                    message,
                });
                continue;
            }
            None => {}
        }
        let path = config.resolve(&plugin.path);
        if !path.is_file() {
            problems.push(ConfigProblem {
                key: format!("plugins.{name}.path"),
                message: format!(
                    "`{}` is not a file; paths are relative to the config file's folder",
                    path.display()
                ),
            });
            continue;
        }
        let Some(pin) = &plugin.sha256 else { continue };
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let actual = crate::plugins::sha256_hex(&bytes);
        if let Err(e) = crate::plugins::check_pin(name, &path, &actual, pin) {
            problems.push(ConfigProblem {
                key: format!("plugins.{name}.sha256"),
                message: e.message().to_string(),
            });
        }
    }
    problems
}

fn config_error(path: &Path, problems: &ConfigProblems) -> CallError {
    CallError::new(
        ErrorKind::Config,
        format!("{}: {}", path.display(), problems.to_string().trim_end()),
    )
}
