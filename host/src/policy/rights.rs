//! The effective rights of one call: what the plugin's `max` allows, intersected with what the
//! calling agent was granted. Everything else is denied, and a denial names the source or
//! capability and the grant that would allow it, in words an operator can act on.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::grants::{Access, AgentGrant, MaxClass, MaxGrant};
use crate::config::{SourceKind, WardenConfig};

/// What a denial refused: the use of a capability, or a call of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// A source, model alias or memory namespace of this class.
    Capability(MaxClass),
    /// A tool the agent may not call.
    Tool,
}

/// The entry an operator adds to allow what was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldAllow {
    /// The list it goes in, e.g. `agents.support.grants` or `plugins.files.max`.
    pub key: String,
    /// The entry, as written there, e.g. `handbook:ro` or `dir:handbook:ro`.
    pub entry: String,
}

/// A refusal: what was refused, of which target, the grant that would allow it when one would,
/// and the words an operator reads (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// What was refused.
    pub what: Denied,
    /// The source, alias or namespace, or `PLUGIN/TOOL`.
    pub target: String,
    /// The grant that would allow it; `None` when no grant would (an unconfigured source, an
    /// unknown agent), or when it is not one entry (a call without a config).
    pub would_allow: Option<WouldAllow>,
    message: String,
}

impl Denial {
    fn new(what: Denied, target: &str, would_allow: Option<WouldAllow>, message: String) -> Self {
        Denial {
            what,
            target: target.to_string(),
            would_allow,
            message,
        }
    }

    /// What the operator reads.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Denial {}

/// What one call of one plugin, on behalf of one agent, may use.
#[derive(Debug, Clone, Default)]
pub struct CallRights {
    plugin: String,
    agent: Option<String>,
    config: Option<Arc<WardenConfig>>,
    granted: BTreeMap<(MaxClassKey, String), Access>,
}

/// The memory namespaces every agent has without a grant: the calling session's (`session`)
/// and its own across sessions (`agent`).
pub const OWN_NAMESPACES: [&str; 2] = ["session", "agent"];

/// `MaxClass` as an ordered map key.
type MaxClassKey = u8;

fn key(class: MaxClass) -> MaxClassKey {
    class as u8
}

impl CallRights {
    /// No rights at all: a call without a config.
    pub fn none(plugin: &str) -> Self {
        CallRights {
            plugin: plugin.to_string(),
            ..CallRights::default()
        }
    }

    /// The rights of `plugin` called for `agent` under `config`. A name the config does not
    /// have grants nothing. Grants and max entries were parsed when the config loaded.
    pub fn for_call(config: &Arc<WardenConfig>, plugin: &str, agent: &str) -> Self {
        let max: &[MaxGrant] = config
            .plugins
            .get(plugin)
            .map(|p| p.max.as_slice())
            .unwrap_or_default();
        let grants: &[AgentGrant] = config
            .agents
            .get(agent)
            .map(|a| a.grants.as_slice())
            .unwrap_or_default();
        let mut granted = BTreeMap::new();
        for grant in grants {
            let (class, name, wanted) = match grant {
                AgentGrant::Source { name, access } => {
                    let Some(source) = config.sources.get(name) else {
                        continue;
                    };
                    let class = source_class(source.kind());
                    (class, name.clone(), access.unwrap_or(Access::ReadOnly))
                }
                AgentGrant::Model(alias) => (MaxClass::Model, alias.clone(), Access::ReadWrite),
                AgentGrant::Memory { namespace, access } => {
                    (MaxClass::Memory, namespace.clone(), *access)
                }
            };
            let allowed = max.iter().filter_map(|m| m.covers(class, &name)).max();
            if let Some(allowed) = allowed {
                let effective = wanted.min(allowed);
                let slot = granted.entry((key(class), name)).or_insert(effective);
                *slot = (*slot).max(effective);
            }
        }
        // The agent's own namespaces need no grant (config loading refuses one), only the
        // plugin's max: an operator still decides which plugins may keep memory at all.
        if config.agents.contains_key(agent) {
            for own in OWN_NAMESPACES {
                let allowed = max
                    .iter()
                    .filter_map(|m| m.covers(MaxClass::Memory, own))
                    .max();
                if let Some(allowed) = allowed {
                    granted.insert((key(MaxClass::Memory), own.to_string()), allowed);
                }
            }
        }
        CallRights {
            plugin: plugin.to_string(),
            agent: Some(agent.to_string()),
            config: Some(config.clone()),
            granted,
        }
    }

    /// The agent the call runs for, if it runs under a config.
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// The configuration behind these rights, if any.
    pub fn config(&self) -> Option<&Arc<WardenConfig>> {
        self.config.as_ref()
    }

    /// Directory sources granted to this call, with their access.
    pub fn dirs(&self) -> impl Iterator<Item = (&str, Access)> {
        self.granted
            .iter()
            .filter(|((c, _), _)| *c == key(MaxClass::Dir))
            .map(|((_, n), a)| (n.as_str(), *a))
    }

    /// Every right of this call, as `class:name:mode` text, for the audit log.
    pub fn describe(&self) -> Vec<String> {
        self.granted
            .iter()
            .map(|((c, n), a)| format!("{}:{n}:{}", class_of(*c).prefix(), a.suffix()))
            .collect()
    }

    /// May this call use SQL source `source` (for writing, if `write`)?
    pub fn check_sql(&self, source: &str, write: bool) -> Result<Access, Denial> {
        self.check(MaxClass::Sql, source, write)
    }

    /// May this call use directory source `source` (for writing, if `write`)?
    pub fn check_dir(&self, source: &str, write: bool) -> Result<Access, Denial> {
        self.check(MaxClass::Dir, source, write)
    }

    /// May this call send requests through HTTP source `source`?
    pub fn check_http(&self, source: &str) -> Result<(), Denial> {
        self.check(MaxClass::Http, source, false).map(|_| ())
    }

    /// May this call use model alias `alias`?
    pub fn check_model(&self, alias: &str) -> Result<(), Denial> {
        self.check(MaxClass::Model, alias, false).map(|_| ())
    }

    /// May this call use memory namespace `namespace` (for writing, if `write`)?
    pub fn check_memory(&self, namespace: &str, write: bool) -> Result<Access, Denial> {
        self.check(MaxClass::Memory, namespace, write)
    }

    fn check(&self, class: MaxClass, name: &str, write: bool) -> Result<Access, Denial> {
        match self.granted.get(&(key(class), name.to_string())) {
            Some(&access) if !write || access == Access::ReadWrite => Ok(access),
            _ => Err(self.explain(class, name, write)),
        }
    }

    /// Says why `name` of `class` is not allowed, and what grant would allow it.
    fn explain(&self, class: MaxClass, name: &str, write: bool) -> Denial {
        let what = describe(class, name);
        let mode = if write { "rw" } else { "ro" };
        let denial = |would_allow: Option<WouldAllow>, message: String| {
            Denial::new(Denied::Capability(class), name, would_allow, message)
        };
        let own = class == MaxClass::Memory && OWN_NAMESPACES.contains(&name);
        let (Some(config), Some(agent)) = (&self.config, &self.agent) else {
            if own {
                return denial(
                    None,
                    format!(
                        "{what} is not available: this call runs without a config, so it has no \
                         agent and no session; run it with `--config warden.toml --agent NAME` \
                         (and `--session ID` for `session`), with \"memory:{name}:rw\" in the \
                         plugin's max"
                    ),
                );
            }
            let grant = agent_grant_text(class, name, mode);
            return denial(
                None,
                format!(
                    "{what} is not granted: this call runs without a config, which grants nothing; run it \
                     with `--config warden.toml --agent NAME` for an agent whose grants include `{grant}`"
                ),
            );
        };
        if matches!(class, MaxClass::Dir | MaxClass::Sql | MaxClass::Http) {
            match config.sources.get(name) {
                None => {
                    let known: Vec<&str> = config
                        .sources
                        .iter()
                        .filter(|(_, s)| source_class(s.kind()) == class)
                        .map(|(n, _)| n.as_str())
                        .collect();
                    return denial(
                        None,
                        format!(
                            "{what} is not configured; the {} sources in the config are: {}",
                            class.prefix(),
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
                Some(source) if source_class(source.kind()) != class => {
                    return denial(
                        None,
                        format!(
                            "source `{name}` is a {:?} source, not a {} source",
                            source.kind(),
                            class.prefix()
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        if class == MaxClass::Model && !config.models.contains_key(name) {
            let known: Vec<&str> = config.models.keys().map(String::as_str).collect();
            return denial(
                None,
                format!(
                    "model alias `{name}` is not configured; the aliases are: {}",
                    known.join(", ")
                ),
            );
        }
        let agent_grant = if own && config.agents.contains_key(agent) {
            // Implicitly read-write (see `for_call`): only the plugin's max can be missing.
            Some(Access::ReadWrite)
        } else {
            config
                .agents
                .get(agent)
                .into_iter()
                .flat_map(|a| a.grants.iter())
                .filter_map(|g| agent_grant_access(g, class, name))
                .max()
        };
        let wanted = agent_grant_text(class, name, mode);
        let in_grants = || {
            Some(WouldAllow {
                key: format!("agents.{agent}.grants"),
                entry: wanted.clone(),
            })
        };
        match agent_grant {
            None => {
                return denial(
                    in_grants(),
                    format!(
                        "{what} is not granted to agent `{agent}`; an operator allows it by adding \"{wanted}\" \
                         to agents.{agent}.grants"
                    ),
                );
            }
            Some(Access::ReadOnly) if write => {
                return denial(
                    in_grants(),
                    format!(
                        "{what} is granted read-only to agent `{agent}`; writing needs \"{wanted}\" in agents.{agent}.grants"
                    ),
                );
            }
            Some(_) => {}
        }
        let plugin = &self.plugin;
        let max_wanted = MaxGrant {
            class,
            name: name.to_string(),
            access: if write {
                Access::ReadWrite
            } else {
                Access::ReadOnly
            },
        };
        denial(
            Some(WouldAllow {
                key: format!("plugins.{plugin}.max"),
                entry: max_wanted.to_string(),
            }),
            format!(
                "plugin `{plugin}` may not use {what}{}: its most allowed uses (plugins.{plugin}.max) do not \
                 include it; an operator allows it by adding \"{max_wanted}\" to plugins.{plugin}.max",
                if write { " for writing" } else { "" }
            ),
        )
    }
}

/// May `agent` call `plugin/tool`? Its `tools` list names what it may call, with a `*` wildcard
/// for a whole plugin (`files/*`). A bare `*` (every tool of every plugin, later ones included)
/// never loads (see [`crate::config::grants::parse_tool_grant`]): an agent's tools are named,
/// plugin by plugin.
pub fn check_tool(
    config: &WardenConfig,
    agent: &str,
    plugin: &str,
    tool: &str,
) -> Result<(), Denial> {
    let target = format!("{plugin}/{tool}");
    let Some(agent_config) = config.agents.get(agent) else {
        let known: Vec<&str> = config.agents.keys().map(String::as_str).collect();
        return Err(Denial::new(
            Denied::Tool,
            &target,
            None,
            format!(
                "there is no agent `{agent}` in the config; the agents are: {}",
                known.join(", ")
            ),
        ));
    };
    if agent_config.tools.iter().any(|t| t.allows(plugin, tool)) {
        return Ok(());
    }
    let would_allow = WouldAllow {
        key: format!("agents.{agent}.tools"),
        entry: target.clone(),
    };
    Err(Denial::new(
        Denied::Tool,
        &target,
        Some(would_allow),
        format!(
            "agent `{agent}` may not call `{plugin}/{tool}`; an operator allows it by adding \"{plugin}/{tool}\" \
             (or \"{plugin}/*\") to agents.{agent}.tools"
        ),
    ))
}

fn class_of(k: MaxClassKey) -> MaxClass {
    [
        MaxClass::Dir,
        MaxClass::Sql,
        MaxClass::Http,
        MaxClass::Model,
        MaxClass::Memory,
    ]
    .into_iter()
    .find(|c| key(*c) == k)
    .unwrap_or(MaxClass::Dir)
}

fn source_class(kind: SourceKind) -> MaxClass {
    match kind {
        SourceKind::Dir => MaxClass::Dir,
        SourceKind::Sqlite | SourceKind::Postgres => MaxClass::Sql,
        SourceKind::Http => MaxClass::Http,
    }
}

fn describe(class: MaxClass, name: &str) -> String {
    match class {
        MaxClass::Dir => format!("directory source `{name}`"),
        MaxClass::Sql => format!("SQL source `{name}`"),
        MaxClass::Http => format!("HTTP source `{name}`"),
        MaxClass::Model => format!("model alias `{name}`"),
        MaxClass::Memory => format!("memory namespace `{name}`"),
    }
}

fn agent_grant_text(class: MaxClass, name: &str, mode: &str) -> String {
    match class {
        MaxClass::Dir | MaxClass::Sql => format!("{name}:{mode}"),
        MaxClass::Http => name.to_string(),
        MaxClass::Model => format!("model:{name}"),
        MaxClass::Memory => format!("memory:{name}:{mode}"),
    }
}

fn agent_grant_access(grant: &AgentGrant, class: MaxClass, name: &str) -> Option<Access> {
    match (grant, class) {
        (
            AgentGrant::Source { name: n, access },
            MaxClass::Dir | MaxClass::Sql | MaxClass::Http,
        ) if n == name => Some(access.unwrap_or(Access::ReadOnly)),
        (AgentGrant::Model(a), MaxClass::Model) if a == name => Some(Access::ReadWrite),
        (AgentGrant::Memory { namespace, access }, MaxClass::Memory) if namespace == name => {
            Some(*access)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Arc<WardenConfig> {
        let text = r#"
            [plugins.files]
            path = "Cargo.toml"
            max = ["dir:*:ro"]
            [plugins.sql]
            path = "Cargo.toml"
            max = ["sql:crm:rw"]
            [sources.handbook]
            kind = "dir"
            path = "."
            [sources.crm]
            kind = "sqlite"
            path = "Cargo.toml"
            [sources.other]
            kind = "dir"
            path = "."
            [agents.support]
            grants = ["handbook:rw", "crm:ro"]
        "#;
        Arc::new(WardenConfig::parse(text, Path::new(env!("CARGO_MANIFEST_DIR"))).expect("config"))
    }

    #[test]
    fn allowed_is_the_intersection_of_max_and_grants() {
        let rights = CallRights::for_call(&config(), "files", "support");
        assert_eq!(rights.check_dir("handbook", false), Ok(Access::ReadOnly));
        assert!(
            rights
                .check_dir("handbook", true)
                .unwrap_err()
                .to_string()
                .contains("plugins.files.max")
        );
    }

    #[test]
    fn not_granted_names_the_agent_grant() {
        let rights = CallRights::for_call(&config(), "files", "support");
        let err = rights.check_dir("other", false).unwrap_err().to_string();
        assert!(
            err.contains("\"other:ro\"") && err.contains("agents.support.grants"),
            "{err}"
        );
    }

    #[test]
    fn not_configured_lists_the_sources() {
        let rights = CallRights::for_call(&config(), "sql", "support");
        let err = rights.check_sql("nope", false).unwrap_err().to_string();
        assert!(
            err.contains("not configured") && err.contains("crm"),
            "{err}"
        );
    }

    #[test]
    fn read_only_grant_refuses_writes() {
        let rights = CallRights::for_call(&config(), "sql", "support");
        assert_eq!(rights.check_sql("crm", false), Ok(Access::ReadOnly));
        let err = rights.check_sql("crm", true).unwrap_err().to_string();
        assert!(
            err.contains("read-only") && err.contains("\"crm:rw\""),
            "{err}"
        );
    }

    #[test]
    fn out_of_the_plugins_scope_names_the_max() {
        let rights = CallRights::for_call(&config(), "files", "support");
        let err = rights.check_sql("crm", false).unwrap_err().to_string();
        assert!(
            err.contains("plugins.files.max") && err.contains("sql:crm:ro"),
            "{err}"
        );
    }

    #[test]
    fn agents_call_only_their_tools() {
        let mut config = (*config()).clone();
        config.agents.get_mut("support").unwrap().tools = ["files/*", "sql/query"]
            .map(|t| crate::config::grants::parse_tool_grant(t).unwrap())
            .to_vec();
        assert!(check_tool(&config, "support", "files", "read").is_ok());
        assert!(check_tool(&config, "support", "sql", "query").is_ok());
        let err = check_tool(&config, "support", "sql", "tables")
            .unwrap_err()
            .to_string();
        assert!(err.contains("agents.support.tools"), "{err}");
        assert!(
            check_tool(&config, "nobody", "sql", "query")
                .unwrap_err()
                .to_string()
                .contains("support")
        );
    }

    #[test]
    fn no_config_grants_nothing() {
        let err = CallRights::none("files")
            .check_dir("handbook", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--config"), "{err}");
    }

    #[test]
    fn a_bare_star_allows_no_tool() {
        // A bare `*` does not load at all, so an agent that wrote one has no tools.
        let text = r#"
            [plugins.files]
            path = "Cargo.toml"
            [agents.support]
            tools = ["*"]
        "#;
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (config, problems) = WardenConfig::parse_unchecked(text, base).unwrap();
        assert!(
            problems.len() == 1 && problems[0].key == "agents.support.tools[0]",
            "{problems:?}"
        );
        let err = check_tool(&config, "support", "files", "read").unwrap_err();
        assert!(err.to_string().contains("\"files/*\""), "{err}");
        assert_eq!(err.what, Denied::Tool);
        assert_eq!(
            err.would_allow.map(|w| (w.key, w.entry)),
            Some(("agents.support.tools".into(), "files/read".into()))
        );
    }

    #[test]
    fn a_denial_names_its_target_and_the_grant_that_would_allow_it() {
        let rights = CallRights::for_call(&config(), "files", "support");
        let err = rights.check_dir("other", false).unwrap_err();
        assert_eq!(err.what, Denied::Capability(MaxClass::Dir));
        assert_eq!(err.target, "other");
        let allow = err.would_allow.clone().unwrap();
        assert_eq!(
            (allow.key.as_str(), allow.entry.as_str()),
            ("agents.support.grants", "other:ro")
        );
        let err = rights.check_dir("handbook", true).unwrap_err();
        let allow = err.would_allow.clone().unwrap();
        assert_eq!(
            (allow.key.as_str(), allow.entry.as_str()),
            ("plugins.files.max", "dir:handbook:rw")
        );
        let err = rights.check_sql("nope", false).unwrap_err();
        assert_eq!(
            err.would_allow, None,
            "no grant allows an unconfigured source"
        );
    }

    #[test]
    fn a_bare_source_grant_is_read_only() {
        let text = r#"
            [plugins.sql]
            path = "Cargo.toml"
            max = ["sql:crm:rw", "dir:*:rw"]
            [sources.crm]
            kind = "sqlite"
            path = "Cargo.toml"
            [sources.handbook]
            kind = "dir"
            path = "."
            [agents.support]
            grants = ["crm", "handbook"]
        "#;
        let config =
            Arc::new(WardenConfig::parse(text, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap());
        let rights = CallRights::for_call(&config, "sql", "support");
        assert_eq!(rights.check_sql("crm", false), Ok(Access::ReadOnly));
        assert!(
            rights
                .check_sql("crm", true)
                .unwrap_err()
                .to_string()
                .contains("read-only")
        );
        assert_eq!(rights.check_dir("handbook", false), Ok(Access::ReadOnly));
        assert!(rights.check_dir("handbook", true).is_err());
        assert_eq!(
            rights.dirs().collect::<Vec<_>>(),
            [("handbook", Access::ReadOnly)]
        );
    }

    #[test]
    fn memory_needs_both_the_grant_and_the_plugins_max() {
        let text = r#"
            [plugins.notes]
            path = "Cargo.toml"
            max = ["memory:notes:rw", "memory:shared:ro"]
            [plugins.other]
            path = "Cargo.toml"
            max = ["dir:*:ro"]
            [agents.support]
            grants = ["memory:notes:rw", "memory:shared:rw", "memory:drafts:ro"]
        "#;
        let config =
            Arc::new(WardenConfig::parse(text, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap());
        let rights = CallRights::for_call(&config, "notes", "support");
        assert_eq!(rights.check_memory("notes", true), Ok(Access::ReadWrite));
        // The plugin's max caps the agent's rw grant at ro.
        assert_eq!(rights.check_memory("shared", false), Ok(Access::ReadOnly));
        let err = rights.check_memory("shared", true).unwrap_err().to_string();
        assert!(err.contains("plugins.notes.max"), "{err}");
        // Granted to the agent, but outside the plugin's max.
        let err = rights
            .check_memory("drafts", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugins.notes.max"), "{err}");
        // In neither.
        let err = rights
            .check_memory("payroll", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"memory:payroll:ro\""), "{err}");
        // Another plugin with the same agent gets none of it.
        let other = CallRights::for_call(&config, "other", "support");
        assert!(other.check_memory("notes", false).is_err());
    }

    fn own_memory_config() -> Arc<WardenConfig> {
        let text = r#"
            [plugins.keeper]
            path = "Cargo.toml"
            max = ["memory:session:rw", "memory:agent:ro", "memory:team:rw"]
            [plugins.wild]
            path = "Cargo.toml"
            max = ["memory:*:rw"]
            [plugins.plain]
            path = "Cargo.toml"
            max = ["dir:*:ro"]
            [agents.support]
            grants = ["memory:team:ro"]
        "#;
        Arc::new(WardenConfig::parse(text, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap())
    }

    #[test]
    fn own_namespaces_need_no_agent_grant_only_the_plugins_max() {
        let config = own_memory_config();
        let rights = CallRights::for_call(&config, "keeper", "support");
        assert_eq!(rights.check_memory("session", true), Ok(Access::ReadWrite));
        // The max caps the implicit read-write.
        assert_eq!(rights.check_memory("agent", false), Ok(Access::ReadOnly));
        let err = rights.check_memory("agent", true).unwrap_err();
        assert_eq!(
            err.would_allow,
            Some(WouldAllow {
                key: "plugins.keeper.max".into(),
                entry: "memory:agent:rw".into()
            })
        );
        // A wildcard max covers them too.
        let wild = CallRights::for_call(&config, "wild", "support");
        assert_eq!(wild.check_memory("session", true), Ok(Access::ReadWrite));
        assert_eq!(wild.check_memory("agent", true), Ok(Access::ReadWrite));
    }

    #[test]
    fn own_namespaces_outside_the_plugins_max_are_denied_naming_it() {
        let config = own_memory_config();
        let plain = CallRights::for_call(&config, "plain", "support");
        let err = plain.check_memory("session", false).unwrap_err();
        assert_eq!(
            err.would_allow,
            Some(WouldAllow {
                key: "plugins.plain.max".into(),
                entry: "memory:session:ro".into()
            })
        );
        assert!(err.to_string().contains("plugins.plain.max"), "{err}");
        // An agent the config does not have gets nothing.
        let nobody = CallRights::for_call(&config, "keeper", "nobody");
        assert!(nobody.check_memory("session", false).is_err());
        // Without a config there is no session to keep memory in.
        let none = CallRights::none("keeper").check_memory("session", false);
        assert!(none.unwrap_err().to_string().contains("--session"));
    }

    #[test]
    fn shared_namespaces_need_the_grant_and_the_max_and_ro_cannot_write() {
        let config = own_memory_config();
        let rights = CallRights::for_call(&config, "keeper", "support");
        // Allowed: granted ro, max rw.
        assert_eq!(rights.check_memory("team", false), Ok(Access::ReadOnly));
        // Read-only: the agent's grant is what is missing.
        let err = rights.check_memory("team", true).unwrap_err();
        assert_eq!(
            err.would_allow,
            Some(WouldAllow {
                key: "agents.support.grants".into(),
                entry: "memory:team:rw".into()
            })
        );
        assert!(err.to_string().contains("read-only"), "{err}");
        // Not granted: named with where it goes.
        let err = rights.check_memory("payroll", false).unwrap_err();
        assert_eq!(
            err.would_allow,
            Some(WouldAllow {
                key: "agents.support.grants".into(),
                entry: "memory:payroll:ro".into()
            })
        );
        // Granted, but not in the plugin's max.
        let plain = CallRights::for_call(&config, "plain", "support");
        let err = plain.check_memory("team", false).unwrap_err();
        assert_eq!(
            err.would_allow.map(|w| w.key),
            Some("plugins.plain.max".to_string())
        );
    }
}
