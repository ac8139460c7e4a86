//! The effective rights of one call: what the plugin's `max` allows, intersected with what the
//! calling agent was granted. Everything else is denied, and a denial names the source or
//! capability and the grant that would allow it, in words an operator can act on.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::grants::{Access, AgentGrant, MaxClass, MaxGrant, parse_agent_grant, parse_max_grant};
use crate::config::{SourceKind, WardenConfig};

/// What one call of one plugin, on behalf of one agent, may use.
#[derive(Debug, Clone, Default)]
pub struct CallRights {
    plugin: String,
    agent: Option<String>,
    config: Option<Arc<WardenConfig>>,
    granted: BTreeMap<(MaxClassKey, String), Access>,
}

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

    /// The rights of `plugin` called for `agent` under `config`. The names must exist in the
    /// config (the config check guarantees grants and max entries parse).
    pub fn for_call(config: &Arc<WardenConfig>, plugin: &str, agent: &str) -> Self {
        let max: Vec<MaxGrant> = config
            .plugins
            .get(plugin)
            .map(|p| {
                p.max
                    .iter()
                    .filter_map(|m| parse_max_grant(m).ok())
                    .collect()
            })
            .unwrap_or_default();
        let grants: Vec<AgentGrant> = config
            .agents
            .get(agent)
            .map(|a| {
                a.grants
                    .iter()
                    .filter_map(|g| parse_agent_grant(g).ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut granted = BTreeMap::new();
        for grant in grants {
            let (class, name, wanted) = match grant {
                AgentGrant::Source { name, access } => {
                    let Some(source) = config.sources.get(&name) else {
                        continue;
                    };
                    let class = source_class(source.kind);
                    (class, name, access.unwrap_or(Access::ReadOnly))
                }
                AgentGrant::Model(alias) => (MaxClass::Model, alias, Access::ReadWrite),
                AgentGrant::Memory { namespace, access } => (MaxClass::Memory, namespace, access),
            };
            let allowed = max.iter().filter_map(|m| m.covers(class, &name)).max();
            if let Some(allowed) = allowed {
                let effective = wanted.min(allowed);
                let slot = granted.entry((key(class), name)).or_insert(effective);
                *slot = (*slot).max(effective);
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
    pub fn check_sql(&self, source: &str, write: bool) -> Result<Access, String> {
        self.check(MaxClass::Sql, source, write)
    }

    /// May this call use directory source `source` (for writing, if `write`)?
    pub fn check_dir(&self, source: &str, write: bool) -> Result<Access, String> {
        self.check(MaxClass::Dir, source, write)
    }

    /// May this call send requests through HTTP source `source`?
    pub fn check_http(&self, source: &str) -> Result<(), String> {
        self.check(MaxClass::Http, source, false).map(|_| ())
    }

    /// May this call use model alias `alias`?
    pub fn check_model(&self, alias: &str) -> Result<(), String> {
        self.check(MaxClass::Model, alias, false).map(|_| ())
    }

    /// May this call use memory namespace `namespace` (for writing, if `write`)?
    pub fn check_memory(&self, namespace: &str, write: bool) -> Result<Access, String> {
        self.check(MaxClass::Memory, namespace, write)
    }

    fn check(&self, class: MaxClass, name: &str, write: bool) -> Result<Access, String> {
        match self.granted.get(&(key(class), name.to_string())) {
            Some(&access) if !write || access == Access::ReadWrite => Ok(access),
            _ => Err(self.explain(class, name, write)),
        }
    }

    /// Says why `name` of `class` is not allowed, and what grant would allow it.
    fn explain(&self, class: MaxClass, name: &str, write: bool) -> String {
        let what = describe(class, name);
        let mode = if write { "rw" } else { "ro" };
        let (Some(config), Some(agent)) = (&self.config, &self.agent) else {
            let grant = agent_grant_text(class, name, mode);
            return format!(
                "{what} is not granted: this call runs without a config, which grants nothing; run it \
                 with `--config warden.toml --agent NAME` for an agent whose grants include `{grant}`"
            );
        };
        if matches!(class, MaxClass::Dir | MaxClass::Sql | MaxClass::Http) {
            match config.sources.get(name) {
                None => {
                    let known: Vec<&str> = config
                        .sources
                        .iter()
                        .filter(|(_, s)| source_class(s.kind) == class)
                        .map(|(n, _)| n.as_str())
                        .collect();
                    return format!(
                        "{what} is not configured; the {} sources in the config are: {}",
                        class.prefix(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    );
                }
                Some(source) if source_class(source.kind) != class => {
                    return format!(
                        "source `{name}` is a {:?} source, not a {} source",
                        source.kind,
                        class.prefix()
                    );
                }
                Some(_) => {}
            }
        }
        if class == MaxClass::Model && !config.models.contains_key(name) {
            let known: Vec<&str> = config.models.keys().map(String::as_str).collect();
            return format!(
                "model alias `{name}` is not configured; the aliases are: {}",
                known.join(", ")
            );
        }
        let agent_grant = config
            .agents
            .get(agent)
            .into_iter()
            .flat_map(|a| a.grants.iter())
            .filter_map(|g| parse_agent_grant(g).ok())
            .filter_map(|g| agent_grant_access(&g, class, name))
            .max();
        let wanted = agent_grant_text(class, name, mode);
        match agent_grant {
            None => {
                return format!(
                    "{what} is not granted to agent `{agent}`; an operator allows it by adding \"{wanted}\" \
                     to agents.{agent}.grants"
                );
            }
            Some(Access::ReadOnly) if write => {
                return format!(
                    "{what} is granted read-only to agent `{agent}`; writing needs \"{wanted}\" in agents.{agent}.grants"
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
        format!(
            "plugin `{plugin}` may not use {what}{}: its most allowed uses (plugins.{plugin}.max) do not \
             include it; an operator allows it by adding \"{max_wanted}\" to plugins.{plugin}.max",
            if write { " for writing" } else { "" }
        )
    }
}

/// May `agent` call `plugin/tool`? Its `tools` list names what it may call, with a `*` wildcard
/// for a whole plugin (`files/*`). A bare `*` (every tool of every plugin, later ones included)
/// is refused here as in the config check: an agent's tools are named, plugin by plugin.
pub fn check_tool(
    config: &WardenConfig,
    agent: &str,
    plugin: &str,
    tool: &str,
) -> Result<(), String> {
    let Some(agent_config) = config.agents.get(agent) else {
        let known: Vec<&str> = config.agents.keys().map(String::as_str).collect();
        return Err(format!(
            "there is no agent `{agent}` in the config; the agents are: {}",
            known.join(", ")
        ));
    };
    let allowed = agent_config
        .tools
        .iter()
        .any(|pattern| match pattern.split_once('/') {
            Some((p, t)) => p == plugin && (t == "*" || t == tool),
            None => false,
        });
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "agent `{agent}` may not call `{plugin}/{tool}`; an operator allows it by adding \"{plugin}/{tool}\" \
             (or \"{plugin}/*\") to agents.{agent}.tools"
        ))
    }
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
                .contains("plugins.files.max")
        );
    }

    #[test]
    fn not_granted_names_the_agent_grant() {
        let rights = CallRights::for_call(&config(), "files", "support");
        let err = rights.check_dir("other", false).unwrap_err();
        assert!(
            err.contains("\"other:ro\"") && err.contains("agents.support.grants"),
            "{err}"
        );
    }

    #[test]
    fn not_configured_lists_the_sources() {
        let rights = CallRights::for_call(&config(), "sql", "support");
        let err = rights.check_sql("nope", false).unwrap_err();
        assert!(
            err.contains("not configured") && err.contains("crm"),
            "{err}"
        );
    }

    #[test]
    fn read_only_grant_refuses_writes() {
        let rights = CallRights::for_call(&config(), "sql", "support");
        assert_eq!(rights.check_sql("crm", false), Ok(Access::ReadOnly));
        let err = rights.check_sql("crm", true).unwrap_err();
        assert!(
            err.contains("read-only") && err.contains("\"crm:rw\""),
            "{err}"
        );
    }

    #[test]
    fn out_of_the_plugins_scope_names_the_max() {
        let rights = CallRights::for_call(&config(), "files", "support");
        let err = rights.check_sql("crm", false).unwrap_err();
        assert!(
            err.contains("plugins.files.max") && err.contains("sql:crm:ro"),
            "{err}"
        );
    }

    #[test]
    fn agents_call_only_their_tools() {
        let mut config = (*config()).clone();
        config.agents.get_mut("support").unwrap().tools =
            vec!["files/*".into(), "sql/query".into()];
        assert!(check_tool(&config, "support", "files", "read").is_ok());
        assert!(check_tool(&config, "support", "sql", "query").is_ok());
        let err = check_tool(&config, "support", "sql", "tables").unwrap_err();
        assert!(err.contains("agents.support.tools"), "{err}");
        assert!(
            check_tool(&config, "nobody", "sql", "query")
                .unwrap_err()
                .contains("support")
        );
    }

    #[test]
    fn no_config_grants_nothing() {
        let err = CallRights::none("files")
            .check_dir("handbook", false)
            .unwrap_err();
        assert!(err.contains("--config"), "{err}");
    }

    #[test]
    fn a_bare_star_allows_no_tool() {
        let mut config = (*config()).clone();
        config.agents.get_mut("support").unwrap().tools = vec!["*".into()];
        let err = check_tool(&config, "support", "files", "read").unwrap_err();
        assert!(err.contains("\"files/*\""), "{err}");
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
        let err = rights.check_memory("shared", true).unwrap_err();
        assert!(err.contains("plugins.notes.max"), "{err}");
        // Granted to the agent, but outside the plugin's max.
        let err = rights.check_memory("drafts", false).unwrap_err();
        assert!(err.contains("plugins.notes.max"), "{err}");
        // In neither.
        let err = rights.check_memory("payroll", false).unwrap_err();
        assert!(err.contains("\"memory:payroll:ro\""), "{err}");
        // Another plugin with the same agent gets none of it.
        let other = CallRights::for_call(&config, "other", "support");
        assert!(other.check_memory("notes", false).is_err());
    }
}
