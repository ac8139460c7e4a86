//! The operator's `warden.toml`: its shape, and a check that reports every problem with its key
//! and what to write instead. Unknown keys are errors. Relative paths are relative to the
//! folder of the config file. Secrets never sit in the file: it names environment variables.

mod check;
mod model;
mod warnings;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use model::{
    AgentConfig, AgentLimits, ModelConfig, ModelQuota, PluginConfig, SourceConfig, SourceKind,
    StateConfig, TenantConfig,
};

/// One problem in a config: the key it is at, and what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key, e.g. `plugins.files.path`.
    pub key: String,
    /// What is wrong, and what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a config.
#[derive(Debug, Clone)]
pub struct ConfigProblems(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

/// A parsed and checked `warden.toml`.
#[derive(Debug, Clone, Default)]
pub struct WardenConfig {
    /// The folder relative paths are resolved against.
    pub base_dir: PathBuf,
    /// Where state (the audit log, memory, sessions) is kept.
    pub state: StateConfig,
    /// Plugins by name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Company data sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Model aliases by name.
    pub models: BTreeMap<String, ModelConfig>,
    /// Agents by name.
    pub agents: BTreeMap<String, AgentConfig>,
    /// Tenants by name.
    pub tenants: BTreeMap<String, TenantConfig>,
}

const SECTIONS: &[&str] = &["state", "plugins", "sources", "models", "agents", "tenants"];

impl WardenConfig {
    /// Reads, parses and checks the config at `path`; every problem is reported at once. Pins
    /// are not verified here: a plugin's pin is checked where it is loaded.
    pub fn load(path: &Path) -> Result<WardenConfig, ConfigProblems> {
        Self::load_with(path, false)
    }

    /// As [`WardenConfig::load`], and also hashes every pinned plugin file and reports each one
    /// that no longer matches its pin, as `warden config check` does.
    pub fn load_verifying_pins(path: &Path) -> Result<WardenConfig, ConfigProblems> {
        Self::load_with(path, true)
    }

    fn load_with(path: &Path, verify_pins: bool) -> Result<WardenConfig, ConfigProblems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigProblems(vec![ConfigProblem {
                key: path.display().to_string(),
                message: format!("cannot read the config file: {e}"),
            }])
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        Self::parse_with(&text, &base_dir, verify_pins)
    }

    /// Parses and checks config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<WardenConfig, ConfigProblems> {
        Self::parse_with(text, base_dir, false)
    }

    fn parse_with(
        text: &str,
        base_dir: &Path,
        verify_pins: bool,
    ) -> Result<WardenConfig, ConfigProblems> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigProblems(vec![ConfigProblem {
                key: "warden.toml".into(),
                message: format!("not valid TOML: {}", e.to_string().trim()),
            }])
        })?;
        let mut problems = Vec::new();
        let mut config = WardenConfig {
            base_dir: base_dir.to_path_buf(),
            ..WardenConfig::default()
        };
        for (key, value) in &table {
            match key.as_str() {
                "state" => {
                    if let Some(state) = entry::<StateConfig>("state", value.clone(), &mut problems)
                    {
                        config.state = state;
                    }
                }
                "plugins" => config.plugins = named_entries("plugins", value, &mut problems),
                "sources" => config.sources = named_entries("sources", value, &mut problems),
                "models" => config.models = named_entries("models", value, &mut problems),
                "agents" => config.agents = named_entries("agents", value, &mut problems),
                "tenants" => config.tenants = named_entries("tenants", value, &mut problems),
                other => problems.push(ConfigProblem {
                    key: other.to_string(),
                    message: format!("unknown section; the sections are {}", SECTIONS.join(", ")),
                }),
            }
        }
        check::check(&config, &mut problems);
        if verify_pins {
            problems.extend(config.pin_problems());
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigProblems(problems))
        }
    }

    /// Plugins whose file is missing, and pinned plugins whose file no longer has the pinned
    /// sha256. This reads and hashes every pinned file, so it belongs to `warden config check`,
    /// not to every start (where each plugin that fails to load is reported on its own).
    fn pin_problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        for (name, plugin) in &self.plugins {
            let path = self.resolve(&plugin.path);
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

    /// What `warden config check` warns about in a config that loads: directory sources that
    /// contain what a plugin must not reach (the config file itself too, when `config_file` is
    /// given), secrets written inline, and an audit key file others can read. See `warnings.rs`.
    pub fn warnings(&self, config_file: Option<&Path>) -> Vec<ConfigProblem> {
        warnings::warnings(self, config_file)
    }

    /// A path from the config, resolved against the config's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

fn entry<T: DeserializeOwned>(
    key: &str,
    value: toml::Value,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    match value.try_into::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(ConfigProblem {
                key: key.to_string(),
                message: e.to_string().trim().to_string(),
            });
            None
        }
    }
}

fn named_entries<T: DeserializeOwned>(
    section: &str,
    value: &toml::Value,
    problems: &mut Vec<ConfigProblem>,
) -> BTreeMap<String, T> {
    let Some(table) = value.as_table() else {
        problems.push(ConfigProblem {
            key: section.to_string(),
            message: format!("must be a table of named entries, e.g. [{section}.NAME]"),
        });
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (name, value) in table {
        let key = format!("{section}.{name}");
        if !valid_name(name) {
            problems.push(ConfigProblem {
                key: key.clone(),
                message:
                    "names use lowercase letters, digits, `-` and `_`, and start with a letter"
                        .into(),
            });
        }
        if let Some(v) = entry::<T>(&key, value.clone(), problems) {
            out.insert(name.clone(), v);
        }
    }
    out
}

/// Parses and checks `warden.toml` text as `warden config check` would, and returns its
/// warnings, or every problem. Relative paths resolve against a folder that does not exist, so
/// it reads no more of the file system than the absolute paths in the text name (and the audit
/// key file, at most a few KiB). For fuzzing: whatever the text, this returns, never panics.
pub fn check_text(text: &str) -> Result<Vec<ConfigProblem>, ConfigProblems> {
    let config = WardenConfig::parse(text, Path::new("/nonexistent/warden-config-check"))?;
    Ok(config.warnings(None))
}

/// Is `name` usable as an environment variable name (`[A-Za-z_][A-Za-z0-9_]*`)? What is not is
/// likely the value itself (a URL, a key) pasted in by mistake, and is never echoed back.
pub fn is_env_var_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Names of plugins, sources, models, agents and tenants.
pub fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_configs_are_refused_without_a_panic() {
        for text in [
            "[state]\naudit_key_file = \"/dev/zero\"\n",
            "[state]\naudit_key_file = \"/proc/self/mem\"\n",
            "[state]\naudit_key_env = \"\"\n",
            "[sources.s]\nkind = \"postgres\"\nurl_env = \"\"\n",
            "[sources.s]\nkind = \"http\"\nallow = [\"\"]\nheaders = { \"\" = \"env:\" }\n",
            "[agents.a]\ntools = [\"*\", \"/\", \"a/\", \"/b\"]\ngrants = [\":\", \"::\", \"memory:\"]\n",
            "[sources.d]\nkind = \"dir\"\npath = \"/\"\n[state]\nurl = \"sqlite:///\"\n",
            "[plugins.\u{e9}]\npath = \"\"\n",
        ] {
            let _ = check_text(text);
        }
        let err = check_text("[state]\naudit_key_file = \"/dev/zero\"\n").unwrap_err();
        assert!(err.to_string().contains("state.audit_key_file"), "{err}");
    }

    proptest! {
        #[test]
        fn check_text_never_panics(text in any::<String>()) {
            let _ = check_text(&text);
        }

        #[test]
        fn check_text_never_panics_on_config_shaped_text(
            section in prop::sample::select(vec!["state", "sources.s", "agents.a", "models.m", "plugins.p"]),
            key in prop::sample::select(vec!["url", "path", "kind", "url_env", "tools", "grants", "headers", "audit_key_env", "backend", "max"]),
            value in prop_oneof![
                "\"[ -~]{0,24}\"",
                Just("[\"*\"]".to_string()),
                Just("{ Authorization = \"Bearer x\" }".to_string()),
                Just("\"dir\"".to_string()),
                Just("1".to_string()),
            ],
        ) {
            let _ = check_text(&format!("[{section}]\n{key} = {value}\n"));
        }
    }
}
