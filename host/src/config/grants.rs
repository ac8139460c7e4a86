//! The grammar of grants. An agent's `grants` name what its tools may use, its `tools` which
//! tools it may call, and a plugin's `max` the most the plugin may ever use. All three parse
//! here, once, when the config loads, with errors that show the forms; the rest of the host
//! reads the types, never the text.
//!
//! Agent grants: `SOURCE` or `SOURCE:ro` / `SOURCE:rw` (read-only is the default),
//! `model:ALIAS`, `memory:NAMESPACE[:ro|:rw]`.
//! Agent tools: `PLUGIN/TOOL` or `PLUGIN/*`.
//! Plugin max: `dir:NAME:ro|rw`, `sql:NAME:ro|rw`, `http:NAME`, `model:ALIAS`,
//! `memory:NAMESPACE:ro|rw`, where NAME may be `*`.

use std::fmt;

/// Read-only or read-write. Ordered: `ReadOnly < ReadWrite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Reads only.
    ReadOnly,
    /// Reads and writes.
    ReadWrite,
}

impl Access {
    fn parse(s: &str) -> Option<Access> {
        match s {
            "ro" => Some(Access::ReadOnly),
            "rw" => Some(Access::ReadWrite),
            _ => None,
        }
    }

    /// `ro` or `rw`.
    pub fn suffix(self) -> &'static str {
        match self {
            Access::ReadOnly => "ro",
            Access::ReadWrite => "rw",
        }
    }
}

/// One entry of an agent's `grants`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentGrant {
    /// A data source by name.
    Source {
        /// The source's name.
        name: String,
        /// The access, when written; the default is read-only.
        access: Option<Access>,
    },
    /// A model alias.
    Model(String),
    /// A memory namespace.
    Memory {
        /// The namespace.
        namespace: String,
        /// The access (default read-write for memory).
        access: Access,
    },
}

impl fmt::Display for AgentGrant {
    /// The grant as an operator writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentGrant::Source { name, access: None } => f.write_str(name),
            AgentGrant::Source {
                name,
                access: Some(access),
            } => write!(f, "{name}:{}", access.suffix()),
            AgentGrant::Model(alias) => write!(f, "model:{alias}"),
            AgentGrant::Memory { namespace, access } => {
                write!(f, "memory:{namespace}:{}", access.suffix())
            }
        }
    }
}

/// What a plugin's `max` entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MaxClass {
    /// `dir:` directory sources.
    Dir,
    /// `sql:` SQLite and PostgreSQL sources.
    Sql,
    /// `http:` HTTP sources.
    Http,
    /// `model:` aliases.
    Model,
    /// `memory:` namespaces.
    Memory,
}

impl MaxClass {
    fn parse(s: &str) -> Option<MaxClass> {
        Some(match s {
            "dir" => MaxClass::Dir,
            "sql" => MaxClass::Sql,
            "http" => MaxClass::Http,
            "model" => MaxClass::Model,
            "memory" => MaxClass::Memory,
            _ => return None,
        })
    }

    /// The prefix written in `max`.
    pub fn prefix(self) -> &'static str {
        match self {
            MaxClass::Dir => "dir",
            MaxClass::Sql => "sql",
            MaxClass::Http => "http",
            MaxClass::Model => "model",
            MaxClass::Memory => "memory",
        }
    }

    /// Whether entries of this class carry `:ro` / `:rw`.
    pub fn has_access(self) -> bool {
        matches!(self, MaxClass::Dir | MaxClass::Sql | MaxClass::Memory)
    }
}

/// One entry of a plugin's `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxGrant {
    /// What it covers.
    pub class: MaxClass,
    /// A name, or `*` for every name of the class.
    pub name: String,
    /// The most access (read-write for classes without modes).
    pub access: Access,
}

impl MaxGrant {
    /// Whether this entry covers `name` of `class`, and with what access.
    pub fn covers(&self, class: MaxClass, name: &str) -> Option<Access> {
        (self.class == class && (self.name == "*" || self.name == name)).then_some(self.access)
    }
}

impl fmt::Display for MaxGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.class.has_access() {
            write!(
                f,
                "{}:{}:{}",
                self.class.prefix(),
                self.name,
                self.access.suffix()
            )
        } else {
            write!(f, "{}:{}", self.class.prefix(), self.name)
        }
    }
}

/// Why a grant did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantError(pub String);

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Parses one agent grant.
pub fn parse_agent_grant(text: &str) -> Result<AgentGrant, GrantError> {
    const FORMS: &str =
        "write `SOURCE`, `SOURCE:ro`, `SOURCE:rw`, `model:ALIAS` or `memory:NAMESPACE[:ro|:rw]`";
    let parts: Vec<&str> = text.split(':').collect();
    let bad = || GrantError(format!("`{text}` is not a grant; {FORMS}"));
    if let ["memory", ns @ ("session" | "agent"), ..] = parts.as_slice() {
        return Err(GrantError(format!(
            "`{text}`: `{ns}` is the agent's own memory namespace ({}), which every agent may \
             read and write without a grant; remove this entry (the plugin's `max` still needs \
             \"memory:{ns}:rw\"). A shared namespace cannot be named `session` or `agent`",
            if *ns == "session" {
                "the calling session's private memory"
            } else {
                "its memory across its sessions"
            }
        )));
    }
    match parts.as_slice() {
        ["model", alias] if valid_part(alias) => Ok(AgentGrant::Model(alias.to_string())),
        ["memory", ns] if valid_part(ns) => Ok(AgentGrant::Memory {
            namespace: ns.to_string(),
            access: Access::ReadWrite,
        }),
        ["memory", ns, mode] if valid_part(ns) => {
            let access = Access::parse(mode).ok_or_else(|| {
                GrantError(format!("`{text}`: the mode is `ro` or `rw`, not `{mode}`"))
            })?;
            Ok(AgentGrant::Memory {
                namespace: ns.to_string(),
                access,
            })
        }
        [name] if valid_part(name) && *name != "model" && *name != "memory" => {
            Ok(AgentGrant::Source {
                name: name.to_string(),
                access: None,
            })
        }
        [name, mode] if valid_part(name) && *name != "model" && *name != "memory" => {
            let access = Access::parse(mode).ok_or_else(|| {
                GrantError(format!("`{text}`: the mode is `ro` or `rw`, not `{mode}`"))
            })?;
            Ok(AgentGrant::Source {
                name: name.to_string(),
                access: Some(access),
            })
        }
        _ => Err(bad()),
    }
}

/// Parses one entry of a plugin's `max`.
pub fn parse_max_grant(text: &str) -> Result<MaxGrant, GrantError> {
    const FORMS: &str = "write `dir:NAME:ro|rw`, `sql:NAME:ro|rw`, `http:NAME`, `model:ALIAS` or `memory:NAMESPACE:ro|rw` (NAME may be `*`)";
    let parts: Vec<&str> = text.split(':').collect();
    let bad = || GrantError(format!("`{text}` is not a plugin max; {FORMS}"));
    let name_ok = |n: &str| n == "*" || valid_part(n);
    match parts.as_slice() {
        [class, name] => {
            let class = MaxClass::parse(class).ok_or_else(bad)?;
            if !name_ok(name) {
                return Err(bad());
            }
            if class.has_access() {
                return Err(GrantError(format!(
                    "`{text}` needs a mode: `{text}:ro` or `{text}:rw`"
                )));
            }
            Ok(MaxGrant {
                class,
                name: name.to_string(),
                access: Access::ReadWrite,
            })
        }
        [class, name, mode] => {
            let class = MaxClass::parse(class).ok_or_else(bad)?;
            if !name_ok(name) || !class.has_access() {
                return Err(bad());
            }
            let access = Access::parse(mode).ok_or_else(|| {
                GrantError(format!("`{text}`: the mode is `ro` or `rw`, not `{mode}`"))
            })?;
            Ok(MaxGrant {
                class,
                name: name.to_string(),
                access,
            })
        }
        _ => Err(bad()),
    }
}

/// Which tools of a plugin an agent's `tools` entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolName {
    /// `PLUGIN/*`: every tool of the plugin.
    Any,
    /// `PLUGIN/TOOL`: that one tool.
    Named(String),
}

/// One entry of an agent's `tools`: `PLUGIN/TOOL` or `PLUGIN/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolGrant {
    /// The plugin's name in `[plugins]`.
    pub plugin: String,
    /// Its tools this entry names.
    pub tool: ToolName,
}

impl ToolGrant {
    /// Whether this entry lets an agent call `tool` of `plugin`.
    pub fn allows(&self, plugin: &str, tool: &str) -> bool {
        self.plugin == plugin
            && match &self.tool {
                ToolName::Any => true,
                ToolName::Named(name) => name == tool,
            }
    }
}

impl fmt::Display for ToolGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tool {
            ToolName::Any => write!(f, "{}/*", self.plugin),
            ToolName::Named(tool) => write!(f, "{}/{tool}", self.plugin),
        }
    }
}

/// Parses one entry of an agent's `tools`. A bare `*` is refused: it would allow every tool of
/// every plugin, plugins added later included, so an agent's tools are named plugin by plugin.
pub fn parse_tool_grant(text: &str) -> Result<ToolGrant, GrantError> {
    if text == "*" {
        return Err(GrantError(
            "`*` would allow every tool of every plugin, plugins added later included; \
             name each plugin instead, as \"PLUGIN/*\" or \"PLUGIN/TOOL\""
                .into(),
        ));
    }
    match text.split_once('/') {
        Some((plugin, tool)) if !plugin.is_empty() && !tool.is_empty() => Ok(ToolGrant {
            plugin: plugin.to_string(),
            tool: if tool == "*" {
                ToolName::Any
            } else {
                ToolName::Named(tool.to_string())
            },
        }),
        _ => Err(GrantError(format!(
            "`{text}` is not a tool; write PLUGIN/TOOL or PLUGIN/*"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_grants_parse() {
        assert_eq!(
            parse_agent_grant("handbook:ro").unwrap(),
            AgentGrant::Source {
                name: "handbook".into(),
                access: Some(Access::ReadOnly)
            }
        );
        assert_eq!(
            parse_agent_grant("tickets-api").unwrap(),
            AgentGrant::Source {
                name: "tickets-api".into(),
                access: None
            }
        );
        assert_eq!(
            parse_agent_grant("model:fast").unwrap(),
            AgentGrant::Model("fast".into())
        );
        assert_eq!(
            parse_agent_grant("memory:support-team:rw").unwrap(),
            AgentGrant::Memory {
                namespace: "support-team".into(),
                access: Access::ReadWrite
            }
        );
    }

    #[test]
    fn malformed_agent_grants_are_refused_with_the_forms() {
        for own in ["memory:session", "memory:agent:ro", "memory:session:rw"] {
            let err = parse_agent_grant(own).unwrap_err().0;
            assert!(
                err.contains("own memory namespace") && err.contains("remove this entry"),
                "{err}"
            );
        }
        for bad in ["", "crm:write", "model:", "a:b:c", "memory:x:rwx"] {
            let err = parse_agent_grant(bad).unwrap_err();
            assert!(err.0.contains('`'), "{bad}: {err}");
        }
    }

    #[test]
    fn plugin_max_parses_and_covers() {
        let g = parse_max_grant("dir:*:ro").unwrap();
        assert_eq!(g.covers(MaxClass::Dir, "handbook"), Some(Access::ReadOnly));
        assert_eq!(g.covers(MaxClass::Sql, "handbook"), None);
        let g = parse_max_grant("sql:crm:rw").unwrap();
        assert_eq!(g.covers(MaxClass::Sql, "crm"), Some(Access::ReadWrite));
        assert_eq!(g.covers(MaxClass::Sql, "other"), None);
        assert_eq!(
            parse_max_grant("http:*")
                .unwrap()
                .covers(MaxClass::Http, "api"),
            Some(Access::ReadWrite)
        );
    }

    #[test]
    fn agent_grants_print_as_written() {
        for text in ["handbook", "crm:rw", "model:fast", "memory:team:ro"] {
            assert_eq!(parse_agent_grant(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn tool_grants_parse_and_allow() {
        let all = parse_tool_grant("files/*").unwrap();
        assert!(all.allows("files", "read") && !all.allows("sql", "read"));
        let one = parse_tool_grant("sql/query").unwrap();
        assert!(one.allows("sql", "query") && !one.allows("sql", "tables"));
        assert_eq!(one.to_string(), "sql/query");
        assert!(
            parse_tool_grant("*")
                .unwrap_err()
                .0
                .contains("\"PLUGIN/*\"")
        );
        for bad in ["", "files", "/read", "files/"] {
            let err = parse_tool_grant(bad).unwrap_err();
            assert!(err.0.contains("PLUGIN/TOOL"), "{bad}: {err}");
        }
    }

    #[test]
    fn plugin_max_without_a_mode_says_how_to_write_it() {
        let err = parse_max_grant("dir:*").unwrap_err();
        assert!(err.0.contains("dir:*:ro"), "{err}");
        assert!(parse_max_grant("files:*:ro").is_err());
    }
}
