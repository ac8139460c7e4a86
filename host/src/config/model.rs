//! The sections of `warden.toml`, as types. Every serde struct denies unknown keys; grants are
//! parsed into their types as they load (see `grants.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::grants::{
    AgentGrant, GrantError, MaxGrant, ToolGrant, parse_agent_grant, parse_max_grant,
    parse_tool_grant,
};
use super::{ConfigProblem, WardenConfig, check};

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
    /// How long a session's lease lasts without a heartbeat, in milliseconds: how soon a task
    /// whose host died can be resumed elsewhere.
    pub session_lease_ms: Option<u64>,
    /// How often `warden serve` looks for tasks that no host is running (their host died, or
    /// drained) to resume them, in milliseconds.
    pub rescue_interval_ms: Option<u64>,
}

/// A session's lease lasts this long without a heartbeat unless `[state] session_lease_ms`
/// says otherwise: long enough to ride out a stalled disk, short enough to resume soon.
pub const DEFAULT_SESSION_LEASE_MS: u64 = 15_000;

/// The range `[state] session_lease_ms` may take: a heartbeat runs a third of the way in, so a
/// shorter lease would lapse under ordinary scheduling delays.
pub const SESSION_LEASE_MS_RANGE: std::ops::RangeInclusive<u64> = 500..=600_000;

/// `warden serve` looks for abandoned tasks this often unless `[state] rescue_interval_ms`
/// says otherwise; a task whose host died resumes within a lease plus this.
pub const DEFAULT_RESCUE_INTERVAL_MS: u64 = 2_000;

/// The range `[state] rescue_interval_ms` may take: each scan is one indexed query per host.
pub const RESCUE_INTERVAL_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=60_000;

impl StateConfig {
    /// How often abandoned tasks are looked for.
    pub fn rescue_interval(&self) -> std::time::Duration {
        bounded_ms(
            self.rescue_interval_ms,
            DEFAULT_RESCUE_INTERVAL_MS,
            &RESCUE_INTERVAL_MS_RANGE,
        )
    }

    /// The session lease's length.
    pub fn session_lease(&self) -> std::time::Duration {
        bounded_ms(
            self.session_lease_ms,
            DEFAULT_SESSION_LEASE_MS,
            &SESSION_LEASE_MS_RANGE,
        )
    }
}

/// A setting in milliseconds, or its default, held to its range (`config check` reports a value
/// outside it; a host that starts anyway uses the nearest end).
fn bounded_ms(
    value: Option<u64>,
    default: u64,
    range: &std::ops::RangeInclusive<u64>,
) -> std::time::Duration {
    std::time::Duration::from_millis(value.unwrap_or(default).clamp(*range.start(), *range.end()))
}

/// Where state is kept, parsed from `[state] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateUrl {
    /// `sqlite://PATH`, relative to the config's folder.
    Sqlite(PathBuf),
    /// `postgres://…`.
    Postgres(String),
}

impl StateUrl {
    /// Parses a state URL; relative SQLite paths resolve against `base_dir`. Only the scheme and
    /// the SQLite path are read here: a PostgreSQL URL's own syntax is checked by the host,
    /// which speaks PostgreSQL.
    pub fn parse(url: &str, base_dir: &Path) -> Result<StateUrl, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("`sqlite://` needs a path, e.g. sqlite://.warden/state.db".into());
            }
            let path = Path::new(path);
            return Ok(StateUrl::Sqlite(if path.is_absolute() {
                path.to_path_buf()
            } else {
                base_dir.join(path)
            }));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StateUrl::Postgres(url.to_string()));
        }
        Err(format!(
            "`{}` is not a state URL; write sqlite://PATH (the default) or postgres://…",
            redact_url(url)
        ))
    }
}

/// `url` with any password replaced by `***` (in the authority and in a `password=` parameter).
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            let start = scheme_end + 3 + colon + 1;
            let end = scheme_end + 3 + at;
            out.replace_range(start..end, "***");
        }
    }
    if let Some(pos) = out.find("password=") {
        let start = pos + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
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
            session_lease_ms: None,
            rescue_interval_ms: None,
        }
    }
}

/// `[plugins.NAME]`.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The component file.
    pub path: PathBuf,
    /// An optional pin: a file with another sha256 is refused.
    pub sha256: Option<String>,
    /// The most this plugin may ever use, e.g. `["dir:*:ro", "sql:crm:ro", "http:*"]`, parsed.
    pub max: Vec<MaxGrant>,
    /// Model calls and tokens this plugin may use in all, across every agent.
    pub quota: Option<ModelQuota>,
}

/// `[plugins.NAME]` as written, before its `max` is parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PluginEntry {
    path: PathBuf,
    sha256: Option<String>,
    #[serde(default)]
    max: Vec<String>,
    quota: Option<ModelQuota>,
}

impl PluginEntry {
    /// Parses `max`; an entry that does not parse is reported at its index and left out.
    pub(super) fn typed(self, key: &str, problems: &mut Vec<ConfigProblem>) -> PluginConfig {
        PluginConfig {
            path: self.path,
            sha256: self.sha256,
            max: parsed(
                &self.max,
                &format!("{key}.max"),
                parse_max_grant,
                problems,
                |_, _, _| {},
            ),
            quota: self.quota,
        }
    }
}

/// Parses each text of a list, reporting each one that does not parse at `key[i]`, and
/// handing each one that does to `check` with its key (the index as written, so a problem found
/// later still points at the right line).
fn parsed<T>(
    texts: &[String],
    key: &str,
    parse: impl Fn(&str) -> Result<T, GrantError>,
    problems: &mut Vec<ConfigProblem>,
    check: impl Fn(&str, &T, &mut Vec<ConfigProblem>),
) -> Vec<T> {
    let mut out = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let at = format!("{key}[{i}]");
        match parse(text) {
            Ok(v) => {
                check(&at, &v, problems);
                out.push(v);
            }
            Err(e) => problems.push(ConfigProblem {
                key: at,
                message: e.0,
            }),
        }
    }
    out
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// The name written in `kind = "…"`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Dir => "dir",
            SourceKind::Sqlite => "sqlite",
            SourceKind::Postgres => "postgres",
            SourceKind::Http => "http",
        }
    }
}

/// `[sources.NAME]`: one company data source. `kind` says which it is, and each kind takes only
/// its own keys; a key of another kind is reported with the fix (see `source.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// `kind = "dir"`.
    Dir(DirSourceConfig),
    /// `kind = "sqlite"`.
    Sqlite(SqliteSourceConfig),
    /// `kind = "postgres"`.
    Postgres(PostgresSourceConfig),
    /// `kind = "http"`.
    Http(HttpSourceConfig),
}

impl SourceConfig {
    /// Which kind of source this is.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceConfig::Dir(_) => SourceKind::Dir,
            SourceConfig::Sqlite(_) => SourceKind::Sqlite,
            SourceConfig::Postgres(_) => SourceKind::Postgres,
            SourceConfig::Http(_) => SourceKind::Http,
        }
    }

    /// The file or folder of a `dir` or `sqlite` source, as written (unresolved).
    pub fn path(&self) -> Option<&Path> {
        match self {
            SourceConfig::Dir(d) => Some(&d.path),
            SourceConfig::Sqlite(s) => Some(&s.path),
            SourceConfig::Postgres(_) | SourceConfig::Http(_) => None,
        }
    }
}

/// `kind = "dir"`: a directory, given to plugins as a WASI preopen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSourceConfig {
    /// The directory to share.
    pub path: PathBuf,
}

/// `kind = "sqlite"`: a SQLite database file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceConfig {
    /// The database file.
    pub path: PathBuf,
    /// The most rows one query returns (default 1000).
    pub max_rows: Option<u64>,
    /// The most bytes of row data one query returns (default 1 MiB).
    pub max_bytes: Option<u64>,
    /// Statement timeout in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
}

/// `kind = "postgres"`: a PostgreSQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// The environment variable that holds the connection URL.
    pub url_env: String,
    /// The most rows one query returns (default 1000).
    pub max_rows: Option<u64>,
    /// The most bytes of row data one query returns (default 1 MiB).
    pub max_bytes: Option<u64>,
    /// Statement timeout in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
    /// Connections in the pool (default 4).
    pub pool_size: Option<u32>,
}

/// `kind = "http"`: an HTTP API, reached through `wasi:http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Allowed URL patterns, e.g. `https://api.example.com/v2/*`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Headers the host adds; values are `env:NAME` (or a literal without secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Allow names that resolve to loopback, private or link-local addresses.
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// The largest response body (default 4 MiB).
    pub max_bytes: Option<u64>,
    /// Request timeout in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
    /// The methods the source sends (default GET and HEAD).
    pub methods: Option<Vec<String>>,
    /// The most requests one call sends through the source (default 100).
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
    /// The context budget of the agent loop, in (estimated) tokens: a session whose history
    /// grows past it has its older tasks compacted into a summary.
    pub context_tokens: Option<u64>,
}

/// The context budget when an alias sets no `context_tokens`: well inside every current
/// model's window, so a long session is compacted before a provider refuses it.
pub const DEFAULT_CONTEXT_TOKENS: u64 = 64_000;

impl ModelConfig {
    /// The alias's context budget, in tokens.
    pub fn context_budget(&self) -> u64 {
        self.context_tokens.unwrap_or(DEFAULT_CONTEXT_TOKENS)
    }
}

/// `[agents.NAME]`.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    /// The model alias the agent loop uses.
    pub model: Option<String>,
    /// The agent's instructions.
    pub instructions: String,
    /// Tools by `plugin/tool`, with `*` wildcards (`files/*`), parsed.
    pub tools: Vec<ToolGrant>,
    /// What the agent's tools may use: `SOURCE[:ro|:rw]`, `model:ALIAS`, `memory:NS[:ro|:rw]`,
    /// parsed.
    pub grants: Vec<AgentGrant>,
    /// Per-agent limits.
    pub limits: AgentLimits,
}

/// `[agents.NAME]` as written, before its `tools` and `grants` are parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentEntry {
    model: Option<String>,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    limits: AgentLimits,
}

impl AgentEntry {
    /// Parses `tools` and `grants`, and checks that each names something in `config` (whose
    /// plugins, sources and models are read already); an entry that does not parse is reported
    /// at its index and left out.
    pub(super) fn typed(
        self,
        key: &str,
        config: &WardenConfig,
        unloaded: &BTreeSet<String>,
        problems: &mut Vec<ConfigProblem>,
    ) -> AgentConfig {
        AgentConfig {
            model: self.model,
            instructions: self.instructions,
            tools: parsed(
                &self.tools,
                &format!("{key}.tools"),
                parse_tool_grant,
                problems,
                |at, tool, p| check::tool_refers(config, unloaded, at, tool, p),
            ),
            grants: parsed(
                &self.grants,
                &format!("{key}.grants"),
                parse_agent_grant,
                problems,
                |at, grant, p| check::grant_refers(config, unloaded, at, grant, p),
            ),
            limits: self.limits,
        }
    }
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
    /// sha256 (hex) of each of the tenant's bearer tokens: one, or a list while a token is
    /// rotated.
    pub token_sha256: TokenDigests,
    /// The agents this tenant may use.
    #[serde(default)]
    pub agents: Vec<String>,
}

/// `token_sha256`: one digest, or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDigests(pub Vec<String>);

impl<'de> Deserialize<'de> for TokenDigests {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        match OneOrMany::deserialize(d) {
            Ok(OneOrMany::One(one)) => Ok(TokenDigests(vec![one])),
            Ok(OneOrMany::Many(many)) => Ok(TokenDigests(many)),
            Err(_) => Err(serde::de::Error::custom(
                "write the token's sha256 as a string of 64 hex digits, or a list of them",
            )),
        }
    }
}
