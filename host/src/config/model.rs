//! The sections of `warden.toml`, as serde types. Every struct denies unknown keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[state]`: where the audit log, memory and sessions live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `sqlite://PATH` (the embedded default) or `postgres://…`.
    #[serde(default = "default_state_url")]
    pub url: String,
    /// The environment variable holding the state URL instead of `url` (for a PostgreSQL URL
    /// with a password, which does not belong in the file).
    pub url_env: Option<String>,
    /// The environment variable holding the audit key, which signs every audit record
    /// (HMAC-SHA256) so a rewrite without the key is caught. At least 32 bytes.
    pub audit_key_env: Option<String>,
    /// A file holding the audit key, instead of `audit_key_env`; relative to the config.
    pub audit_key_file: Option<PathBuf>,
}

/// The embedded default state store.
pub fn default_state_url() -> String {
    "sqlite://.warden/state.db".into()
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            url: default_state_url(),
            url_env: None,
            audit_key_env: None,
            audit_key_file: None,
        }
    }
}

/// `[plugins.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file.
    pub path: PathBuf,
    /// An optional pin: a file with another sha256 is refused.
    pub sha256: Option<String>,
    /// The most this plugin may ever use, e.g. `["dir:*:ro", "sql:crm:ro", "http:*"]`.
    #[serde(default)]
    pub max: Vec<String>,
    /// Model calls and tokens this plugin may use in all, across every agent.
    pub quota: Option<ModelQuota>,
}

/// `quota = { … }`: model calls and tokens per window. A key left out is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelQuota {
    /// Model calls per minute.
    pub calls_per_minute: Option<u64>,
    /// Model tokens (input and output) per minute.
    pub tokens_per_minute: Option<u64>,
    /// Model calls per day (UTC).
    pub calls_per_day: Option<u64>,
    /// Model tokens (input and output) per day (UTC).
    pub tokens_per_day: Option<u64>,
}

/// The kind of a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A directory, given to plugins as a WASI preopen.
    Dir,
    /// A SQLite database file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
    /// An HTTP API, reached through `wasi:http`.
    Http,
}

impl SourceKind {
    /// The class used in a plugin's `max`: `dir`, `sql` or `http`.
    pub fn class(self) -> &'static str {
        match self {
            SourceKind::Dir => "dir",
            SourceKind::Sqlite | SourceKind::Postgres => "sql",
            SourceKind::Http => "http",
        }
    }

    /// Whether grants of this kind carry `:ro` / `:rw`.
    pub fn has_access_mode(self) -> bool {
        !matches!(self, SourceKind::Http)
    }
}

/// `[sources.NAME]`. Which keys apply depends on `kind`; the check says which are missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `dir`, `sqlite`, `postgres` or `http`.
    pub kind: SourceKind,
    /// `dir` and `sqlite`: the path.
    pub path: Option<PathBuf>,
    /// `postgres`: the environment variable that holds the connection URL.
    pub url_env: Option<String>,
    /// `http`: allowed URL patterns, e.g. `https://api.example.com/v2/*`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// `http`: headers the host adds; values are `env:NAME` (or a literal without secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `http`: allow names that resolve to loopback, private or link-local addresses.
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// `sqlite` and `postgres`: the most rows one query returns (default 1000).
    pub max_rows: Option<u64>,
    /// `sqlite` and `postgres`: the most bytes of row data one query returns (default 1 MiB);
    /// `http`: the largest response body (default 4 MiB).
    pub max_bytes: Option<u64>,
    /// Statement or request timeout in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
    /// `postgres`: connections in the pool (default 4).
    pub pool_size: Option<u32>,
    /// `http`: the methods the source sends (default GET and HEAD).
    pub methods: Option<Vec<String>>,
    /// `http`: the most requests one call sends through the source (default 100).
    pub max_requests: Option<u32>,
}

/// `[models.ALIAS]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `openai` (any compatible endpoint) or `anthropic`.
    pub backend: String,
    /// The endpoint's base URL.
    pub base_url: Option<String>,
    /// The environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// The provider's model name.
    pub model: String,
    /// Aliases tried, in order, on 429, 5xx and timeouts.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Extra headers; values are `env:NAME` or literals.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request timeout in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// `[agents.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The model alias the agent loop uses.
    pub model: Option<String>,
    /// The agent's instructions.
    #[serde(default)]
    pub instructions: String,
    /// Tools by `plugin/tool`, with `*` wildcards (`files/*`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// What the agent's tools may use: `SOURCE[:ro|:rw]`, `model:ALIAS`, `memory:NS[:ro|:rw]`.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Per-agent limits.
    #[serde(default)]
    pub limits: AgentLimits,
}

/// `limits = { … }` of an agent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentLimits {
    /// The most model steps in one task.
    pub max_steps: Option<u32>,
    /// Wall-clock limit of one tool call, in milliseconds.
    pub call_timeout_ms: Option<u64>,
    /// Linear memory of one tool call, in MiB.
    pub memory_mb: Option<u64>,
    /// Output of one tool call, in KiB.
    pub max_output_kb: Option<u64>,
    /// Model tokens per day; the same as `quota.tokens_per_day`.
    pub tokens_per_day: Option<u64>,
    /// Model calls and tokens per minute and per day, for every model call of this agent.
    pub quota: Option<ModelQuota>,
}

/// `[tenants.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// sha256 (hex) of the tenant's bearer token.
    pub token_sha256: String,
    /// The agents this tenant may use.
    #[serde(default)]
    pub agents: Vec<String>,
}
