//! The host side of every interface a plugin may import. Each capability lives in its own
//! module, which implements the generated host trait and decides, per call, what is allowed.
//!
//! Like Spin's factors, each capability has three steps: it is linked once per engine
//! ([`linker`]), configured once from the operator's config ([`Capabilities::configure`]), and
//! given per-call state from the call's effective rights ([`CallGrants`]). Each capability
//! validates its own sections of the config as it configures, and [`check`] runs those same
//! steps for `warden config check`.
//!
//! - [`log`]: the plugin's log lines, tagged and capped.
//! - [`files`]: granted `dir` sources become WASI preopens, read-only or read-write.
//! - [`sql`]: the `data` interface's SQL sources (SQLite, PostgreSQL).
//! - [`http`]: outbound `wasi:http` to `http` sources, checked against their allowlists.
//! - `model`: completions through the [`crate::models::ModelRouter`], for granted aliases.
//! - [`memory`]: durable, versioned key-value memory in the state store: the session's, the
//!   agent's, and granted shared namespaces, within the `[memory]` size limits.
//!
//! WASI is linked too, but its context grants nothing beyond the preopens (see
//! [`crate::sandbox`]).

pub mod check;
pub mod files;
pub mod http;
pub mod log;
pub mod memory;
mod model;
pub mod sql;

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::{ToolPlugin, types};
use crate::config::WardenConfig;
use crate::policy::audit::NewRecord;
use crate::policy::{AuditLog, CallRights, Outcome};
use crate::sandbox::{CallIdentity, CallState};
use crate::state::{StateStore, StateUrl};

/// Every capability, configured once from the operator's config and shared by all calls.
pub struct Capabilities {
    /// The config the capabilities were built from.
    pub config: Arc<WardenConfig>,
    /// The state store: audit, quotas, sessions, journals, memory and leases.
    pub store: StateStore,
    /// The audit log in the state store.
    pub audit: AuditLog,
    /// SQL sources and their connection pools.
    pub sql: sql::SqlSources,
    /// HTTP sources: allowlists and the headers the host adds.
    pub http: http::HttpSources,
    /// The model router: aliases, backends, quotas (see [`crate::models`]).
    pub models: crate::models::ModelRouter,
}

impl Capabilities {
    /// Opens the state store and prepares every configured source.
    pub fn configure(config: Arc<WardenConfig>) -> Result<Capabilities, ConfigureError> {
        let url = StateUrl::from_config(&config)?;
        let store = StateStore::open_blocking(&url)?;
        // With the audit key, before any record is written: every clone of the log (the model
        // router's too) shares it, so every record this host writes is signed.
        let audit = AuditLog::open_configured(&store, &config).map_err(ConfigureError::Section)?;
        let sql = sql::SqlSources::configure(&config)?;
        let http = http::HttpSources::configure(&config)?;
        let models = crate::models::ModelRouter::configure(&config, store.clone(), audit.clone())
            .map_err(ConfigureError::Section)?;
        Ok(Capabilities {
            config,
            store,
            audit,
            sql,
            http,
            models,
        })
    }
}

/// Why the capabilities could not be configured: the state store could not be opened (a caller
/// may wait and try again, as a server's readiness check does), or a section of the config is
/// unusable (fixed only by changing the config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigureError {
    /// The state store could not be opened or migrated.
    #[error("{0}")]
    Store(#[from] crate::state::StoreError),
    /// A section of the config, each problem at its key.
    #[error("{0}")]
    Section(String),
}

impl From<crate::config::ConfigProblems> for ConfigureError {
    fn from(problems: crate::config::ConfigProblems) -> Self {
        ConfigureError::Section(problems.into())
    }
}

/// Who used a capability: the call and the plugin tool it runs.
#[derive(Debug, Clone, Copy)]
pub struct CallSite<'a> {
    /// The caller.
    pub identity: &'a CallIdentity,
    /// The plugin.
    pub plugin: &'a str,
    /// The tool.
    pub tool: &'a str,
}

impl CallSite<'_> {
    /// The audit record of one use of `capability` on `target` by this site.
    fn record<'r>(
        &'r self,
        capability: &'r str,
        target: &'r str,
        detail: &'r str,
    ) -> NewRecord<'r> {
        NewRecord {
            tenant: &self.identity.tenant,
            agent: &self.identity.agent,
            session: &self.identity.session,
            plugin: self.plugin,
            tool: self.tool,
            call_id: &self.identity.call_id,
            capability,
            target,
            detail,
        }
    }
}

/// What one call may use: its effective rights, and the configured capabilities behind them.
#[derive(Clone)]
pub struct CallGrants {
    /// The effective rights (plugin max ∩ agent grants).
    pub rights: CallRights,
    /// The configured capabilities; `None` for a call without a config, which may use nothing.
    pub capabilities: Option<Arc<Capabilities>>,
}

impl CallGrants {
    /// Nothing granted: a call without a config.
    pub fn none(plugin: &str) -> Self {
        CallGrants {
            rights: CallRights::none(plugin),
            capabilities: None,
        }
    }

    /// The grants of `plugin` called for `agent`.
    pub fn for_agent(capabilities: &Arc<Capabilities>, plugin: &str, agent: &str) -> Self {
        CallGrants {
            rights: CallRights::for_call(&capabilities.config, plugin, agent),
            capabilities: Some(capabilities.clone()),
        }
    }

    /// Records one capability use or denial by `site` in the audit log, if the call has one.
    ///
    /// Warden fails closed: a caller that gets an [`AuditFailure`] back must not go on with the
    /// use it was recording (or, once done, must not hand its result to the plugin).
    #[must_use = "a capability use whose audit record was not committed must be refused"]
    pub async fn audit(
        &self,
        site: &CallSite<'_>,
        capability: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<(), AuditFailure> {
        let Some(caps) = &self.capabilities else {
            return Ok(());
        };
        let record = site.record(capability, target, detail);
        caps.audit
            .append(&record, outcome)
            .await
            .map(|_| ())
            .map_err(|e| {
                let failure = AuditFailure::new(caps.audit.store_location(), &e.to_string());
                tracing::error!("{failure}");
                failure
            })
    }
}

impl CallGrants {
    /// Queues one record like [`CallGrants::audit`] without waiting for its commit, for paths
    /// that cannot wait (a body's poll, a Drop); a failure is logged.
    pub fn audit_detached(
        &self,
        site: &CallSite<'_>,
        capability: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) {
        let Some(caps) = &self.capabilities else {
            return;
        };
        let record = site.record(capability, target, detail);
        caps.audit.append_detached(&record, outcome);
    }
}

/// An audit record that could not be committed. Every use it was meant to record is refused,
/// and the message names the audit store so an operator can see what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFailure {
    message: String,
}

impl AuditFailure {
    /// A failure to write to the audit store at `store` (a file, or a URL without password),
    /// for `cause`.
    pub fn new(store: &str, cause: &str) -> Self {
        AuditFailure {
            message: format!(
                "refused: its audit record could not be committed to the audit store {} ({cause}); \
                 Warden refuses what it cannot audit. Check that the state store is writable and \
                 that no other process holds a lock on it",
                store
            ),
        }
    }

    /// A failure another part of the host already explained in `message`.
    pub fn from_message(message: &str) -> Self {
        AuditFailure {
            message: message.to_string(),
        }
    }

    /// What the caller reads.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for AuditFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AuditFailure {}

/// Interfaces a component may import from this host, by `namespace:package/interface`, with
/// what each one gives a plugin here. Anything else is refused at load.
pub const PROVIDED_INTERFACES: &[(&str, &str)] = &[
    ("warden:plugin/types", "shared types"),
    ("warden:plugin/log", "writes to the host log"),
    (
        "warden:plugin/memory",
        "durable memory: the session's and the agent's own, and granted shared namespaces",
    ),
    (
        "warden:plugin/data",
        "SQL sources; denied unless a source is granted",
    ),
    (
        "warden:plugin/model",
        "model completions; denied unless an alias is granted",
    ),
    (
        "wasi:cli/environment",
        "environment and arguments: always empty",
    ),
    ("wasi:cli/exit", "exits the call"),
    ("wasi:cli/stdin", "standard input: always empty"),
    ("wasi:cli/stdout", "standard output: captured to the log"),
    ("wasi:cli/stderr", "standard error: captured to the log"),
    (
        "wasi:cli/terminal-input",
        "terminal detection: never a terminal",
    ),
    (
        "wasi:cli/terminal-output",
        "terminal detection: never a terminal",
    ),
    (
        "wasi:cli/terminal-stdin",
        "terminal detection: never a terminal",
    ),
    (
        "wasi:cli/terminal-stdout",
        "terminal detection: never a terminal",
    ),
    (
        "wasi:cli/terminal-stderr",
        "terminal detection: never a terminal",
    ),
    ("wasi:clocks/monotonic-clock", "a monotonic clock"),
    ("wasi:clocks/wall-clock", "the wall clock"),
    (
        "wasi:filesystem/types",
        "files: only directories granted as preopens",
    ),
    (
        "wasi:filesystem/preopens",
        "files: only directories granted as preopens",
    ),
    ("wasi:io/error", "stream errors"),
    ("wasi:io/poll", "waiting on streams"),
    ("wasi:io/streams", "byte streams"),
    ("wasi:random/random", "random bytes"),
    ("wasi:random/insecure", "random bytes"),
    ("wasi:random/insecure-seed", "random bytes"),
    ("wasi:sockets/network", "network: no address is granted"),
    (
        "wasi:sockets/instance-network",
        "network: no address is granted",
    ),
    ("wasi:sockets/tcp", "network: no address is granted"),
    (
        "wasi:sockets/tcp-create-socket",
        "network: no address is granted",
    ),
    ("wasi:sockets/udp", "network: no address is granted"),
    (
        "wasi:sockets/udp-create-socket",
        "network: no address is granted",
    ),
    ("wasi:sockets/ip-name-lookup", "name lookups: denied"),
    (
        "wasi:http/types",
        "outbound HTTP: only to granted http sources",
    ),
    (
        "wasi:http/outgoing-handler",
        "outbound HTTP: only to granted http sources",
    ),
];

/// Looks up an import by its full name (`wasi:cli/stdout@0.2.6`): what the host gives for it,
/// or `None` when this host does not provide it.
pub fn provided(import: &str) -> Option<&'static str> {
    let (unversioned, version) = import.split_once('@').unwrap_or((import, ""));
    let (_, what) = PROVIDED_INTERFACES
        .iter()
        .find(|(name, _)| *name == unversioned)?;
    let compatible = if unversioned.starts_with("wasi:") {
        version.is_empty() || version.starts_with("0.2.")
    } else {
        version.is_empty() || version.starts_with("0.1.")
    };
    compatible.then_some(*what)
}

/// The linker every plugin is instantiated against: WASI plus the Warden interfaces.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    files::guard_symlinks(&mut linker)?;
    http::link(&mut linker)?;
    ToolPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    Ok(linker)
}

impl types::Host for CallState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_02_minor_versions_are_provided() {
        assert!(provided("wasi:cli/stdout@0.2.6").is_some());
        assert!(provided("wasi:io/streams@0.2.0").is_some());
    }

    #[test]
    fn other_interfaces_and_versions_are_not() {
        assert!(provided("wasi:http/incoming-handler@0.2.6").is_none());
        assert!(provided("wasi:cli/stdout@0.3.0").is_none());
        assert!(provided("warden:plugin/log@0.2.0").is_none());
        assert!(provided("warden:plugin/log@0.1.0").is_some());
    }
}
