//! The grammar of grants. An agent's `grants` name what its tools may use; a plugin's `max`
//! names the most the plugin may ever use. Both parse here, with errors that show the forms.
//!
//! Agent grants: `SOURCE` or `SOURCE:ro` / `SOURCE:rw` (read-only is the default),
//! `model:ALIAS`, `memory:NAMESPACE[:ro|:rw]`.
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

/// What a plugin's `max` entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    fn has_access(self) -> bool {
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
    fn plugin_max_without_a_mode_says_how_to_write_it() {
        let err = parse_max_grant("dir:*").unwrap_err();
        assert!(err.0.contains("dir:*:ro"), "{err}");
        assert!(parse_max_grant("files:*:ro").is_err());
    }
}
