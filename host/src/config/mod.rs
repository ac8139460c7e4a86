//! The operator's `warden.toml`: its shape, and a check that reports every problem with its key
//! and what to write instead. Unknown keys are errors. Relative paths are relative to the
//! folder of the config file. Secrets never sit in the file: it names environment variables.
//!
//! The config is plain data and imports nothing from the rest of the host. Grants parse into
//! their types as the file loads ([`grants`]), and each source kind is its own type. What only a
//! capability can judge (a pattern of an allowlist, a PostgreSQL URL, a directory that must
//! exist) is checked by that capability (see `crate::capabilities::check`), for
//! `warden config check` and at start-up alike; this module checks the file's shape and its
//! cross-references (a grant naming a source, a fallback naming an alias).

mod check;
pub mod fingerprint;
pub mod grants;
pub mod memory;
mod model;
pub mod serve;
mod source;
mod warnings;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use model::{
    AgentConfig, AgentLimits, DirSourceConfig, HttpSourceConfig, ModelConfig, ModelQuota,
    PluginConfig, PostgresSourceConfig, SourceConfig, SourceKind, SqliteSourceConfig, StateConfig,
    StateUrl, TenantConfig, TokenDigests, redact_url,
};
pub use model::{DEFAULT_CONTEXT_TOKENS, DEFAULT_SESSION_LEASE_MS, SESSION_LEASE_MS_RANGE};

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

/// For the callers that report a config's problems as text (start-up's errors are strings).
impl From<ConfigProblems> for String {
    fn from(problems: ConfigProblems) -> String {
        problems.to_string().trim_end().to_string()
    }
}

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
    /// The `memory` capability's size limits.
    pub memory: memory::MemoryConfig,
    /// How `warden serve` listens.
    pub serve: serve::ServeConfig,
}

const SECTIONS: &[&str] = &[
    "state", "plugins", "sources", "models", "agents", "tenants", "memory", "serve",
];

impl WardenConfig {
    /// The agents tenant `tenant` may use that the config defines, in its listed order;
    /// `None` when there is no `[tenants.NAME]` of that name.
    pub fn tenant_agents(&self, tenant: &str) -> Option<Vec<&String>> {
        self.tenants.get(tenant).map(|t| {
            t.agents
                .iter()
                .filter(|a| self.agents.contains_key(*a))
                .collect()
        })
    }

    /// Reads, parses and checks the shape of the config at `path`; every problem is reported at
    /// once. What the capabilities check (a directory that must exist, an allowlist, an
    /// environment variable that must be set) is not checked here: load with
    /// `crate::capabilities::check::load` for that, as every command does.
    pub fn load(path: &Path) -> Result<WardenConfig, ConfigProblems> {
        let (config, problems) = Self::load_unchecked(path)?;
        config.checked(problems)
    }

    /// Parses and checks the shape of config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<WardenConfig, ConfigProblems> {
        let (config, problems) = Self::parse_unchecked(text, base_dir)?;
        config.checked(problems)
    }

    /// As [`WardenConfig::load`], but returns the config as far as it loaded together with its
    /// problems, so that others (the capabilities, the pins) can add theirs before
    /// [`WardenConfig::checked`] decides. Fails only when the file cannot be read or is not TOML.
    pub fn load_unchecked(
        path: &Path,
    ) -> Result<(WardenConfig, Vec<ConfigProblem>), ConfigProblems> {
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
        Self::parse_unchecked(&text, &base_dir)
    }

    /// As [`WardenConfig::parse`], returning the config as far as it parsed and its problems;
    /// see [`WardenConfig::load_unchecked`].
    pub fn parse_unchecked(
        text: &str,
        base_dir: &Path,
    ) -> Result<(WardenConfig, Vec<ConfigProblem>), ConfigProblems> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigProblems(vec![ConfigProblem {
                key: "warden.toml".into(),
                message: format!("not valid TOML: {}", e.to_string().trim()),
            }])
        })?;
        let mut problems = Vec::new();
        let mut agents = BTreeMap::new();
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
                "plugins" => {
                    config.plugins = named_entries("plugins", value, &mut problems, |k, v, p| {
                        entry::<model::PluginEntry>(k, v.clone(), p).map(|e| e.typed(k, p))
                    })
                }
                "sources" => {
                    config.sources = named_entries("sources", value, &mut problems, source::source)
                }
                "models" => {
                    config.models = named_entries("models", value, &mut problems, |k, v, p| {
                        entry(k, v.clone(), p)
                    })
                }
                // Typed once the rest is read: an agent's grants name sources, models and
                // plugins, which are checked as each grant parses.
                "agents" => {
                    agents = named_entries("agents", value, &mut problems, |k, v, p| {
                        entry::<model::AgentEntry>(k, v.clone(), p)
                    })
                }
                "tenants" => {
                    config.tenants = named_entries("tenants", value, &mut problems, |k, v, p| {
                        entry(k, v.clone(), p)
                    })
                }
                "memory" => {
                    if let Some(memory) =
                        entry::<memory::MemoryConfig>("memory", value.clone(), &mut problems)
                    {
                        memory.check(&mut problems);
                        config.memory = memory;
                    }
                }
                "serve" => {
                    if let Some(serve) =
                        entry::<serve::ServeConfig>("serve", value.clone(), &mut problems)
                    {
                        serve.check(&mut problems);
                        config.serve = serve;
                    }
                }
                other => problems.push(ConfigProblem {
                    key: other.to_string(),
                    message: format!("unknown section; the sections are {}", SECTIONS.join(", ")),
                }),
            }
        }
        // Entries written but not loaded (their problem is reported): a grant naming one is not
        // told that it names nothing, which would send the operator the wrong way.
        let unloaded: BTreeSet<String> = ["plugins", "sources", "models"]
            .into_iter()
            .filter_map(|section| Some((section, table.get(section)?.as_table()?)))
            .flat_map(|(section, entries)| {
                entries
                    .keys()
                    .map(move |name| (section, name))
                    .filter(|(section, name)| match *section {
                        "plugins" => !config.plugins.contains_key(*name),
                        "sources" => !config.sources.contains_key(*name),
                        _ => !config.models.contains_key(*name),
                    })
            })
            .map(|(section, name)| format!("{section}.{name}"))
            .collect();
        for (name, agent) in agents {
            let key = format!("agents.{name}");
            let typed = agent.typed(&key, &config, &unloaded, &mut problems);
            config.agents.insert(name, typed);
        }
        check::check(&config, &mut problems);
        Ok((config, problems))
    }

    /// The config, if `problems` (its own and any others found in it) is empty; otherwise every
    /// problem. A problem that would quote a secret written where a variable's name belongs is
    /// replaced first, by one that says what is wrong without it, so this comes last.
    pub fn checked(self, mut problems: Vec<ConfigProblem>) -> Result<WardenConfig, ConfigProblems> {
        check::values_in_place_of_names(&self, &mut problems);
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigProblems(problems))
        }
    }

    /// What `warden config check` warns about in a config that loads: directory sources that
    /// contain what a plugin must not reach (the config file itself too, when `config_file` is
    /// given, and the compile cache, when `compile_cache` is), secrets written inline, and an
    /// audit key file others can read. See `warnings.rs`.
    pub fn warnings(
        &self,
        config_file: Option<&Path>,
        compile_cache: Option<&Path>,
    ) -> Vec<ConfigProblem> {
        warnings::warnings(self, config_file, compile_cache)
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

fn named_entries<T>(
    section: &str,
    value: &toml::Value,
    problems: &mut Vec<ConfigProblem>,
    read: impl Fn(&str, &toml::Value, &mut Vec<ConfigProblem>) -> Option<T>,
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
        if let Some(v) = read(&key, value, problems) {
            out.insert(name.clone(), v);
        }
    }
    out
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
