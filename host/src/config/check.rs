//! The checks that need the whole config: files that must exist, pins that must match, grants
//! that must parse and name something configured, keys that do not apply to a source's kind.

use super::{ConfigProblem, SourceConfig, SourceKind, WardenConfig};
use crate::policy::grants::{AgentGrant, parse_agent_grant, parse_max_grant};
use crate::state::StateUrl;

struct Problems<'a>(&'a mut Vec<ConfigProblem>);

impl Problems<'_> {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }
}

pub(super) fn check(config: &WardenConfig, problems: &mut Vec<ConfigProblem>) {
    check_all(config, problems);
    values_in_place_of_names(config, problems);
}

/// Every place the config names an environment variable: (key, the name as written).
fn env_references(config: &WardenConfig) -> Vec<(String, &str)> {
    let mut refs: Vec<(String, &str)> = Vec::new();
    if let Some(var) = &config.state.audit_key_env {
        refs.push(("state.audit_key_env".into(), var));
    }
    for (name, s) in &config.sources {
        if let Some(var) = &s.url_env {
            refs.push((format!("sources.{name}.url_env"), var));
        }
        for (header, value) in &s.headers {
            if let Some(var) = value.strip_prefix("env:") {
                refs.push((format!("sources.{name}.headers.{header}"), var));
            }
        }
    }
    for (name, m) in &config.models {
        if let Some(var) = &m.api_key_env {
            refs.push((format!("models.{name}.api_key_env"), var));
        }
        for (header, value) in &m.headers {
            if let Some(var) = value.strip_prefix("env:") {
                refs.push((format!("models.{name}.headers.{header}"), var));
            }
        }
    }
    refs
}

/// An operator who writes the secret itself where a variable's name belongs (a database URL in
/// `url_env`, a key in `api_key_env`) must not see it echoed by the check, on a terminal or in
/// a CI log. Every problem that would quote such a value is replaced by one that says what is
/// wrong without it.
fn values_in_place_of_names(config: &WardenConfig, problems: &mut Vec<ConfigProblem>) {
    for (key, var) in env_references(config) {
        if super::is_env_var_name(var) {
            continue;
        }
        if !var.is_empty() {
            problems.retain(|p| !p.message.contains(var) && !p.key.contains(var));
        }
        problems.retain(|p| p.key != key);
        problems.push(ConfigProblem {
            key,
            message: if var.is_empty() {
                "name the environment variable, e.g. \"CRM_DATABASE_URL\"".into()
            } else {
                "this looks like a value, not the name of an environment variable (a name is \
                 letters, digits and `_`); put the value in an environment variable and write \
                 its name here, e.g. \"CRM_DATABASE_URL\""
                    .into()
            },
        });
    }
}

fn check_all(config: &WardenConfig, problems: &mut Vec<ConfigProblem>) {
    let mut p = Problems(problems);
    if let Err(e) = StateUrl::parse(&config.state.url, &config.base_dir) {
        p.add("state.url", e.to_string());
    }
    check_audit_key(config, &mut p);
    for (name, plugin) in &config.plugins {
        let key = format!("plugins.{name}");
        let path = config.resolve(&plugin.path);
        // Existence only: hashing every plugin on each start would be work done twice, since
        // a pin is verified where the plugin is loaded (and by `warden config check`).
        if !path.is_file() {
            p.add(
                format!("{key}.path"),
                format!(
                    "`{}` is not a file; paths are relative to the config file's folder",
                    path.display()
                ),
            );
        }
        if let Some(pin) = &plugin.sha256
            && (pin.len() != 64 || !pin.chars().all(|c| c.is_ascii_hexdigit()))
        {
            p.add(format!("{key}.sha256"), "a sha256 pin is 64 hex digits");
        }
        for (i, entry) in plugin.max.iter().enumerate() {
            if let Err(e) = parse_max_grant(entry) {
                p.add(format!("{key}.max[{i}]"), e.0);
            }
        }
    }
    for (name, source) in &config.sources {
        check_source(config, name, source, &mut p);
    }
    for (name, model) in &config.models {
        let key = format!("models.{name}");
        if !matches!(model.backend.as_str(), "openai" | "anthropic") {
            p.add(
                format!("{key}.backend"),
                format!(
                    "`{}` is not a backend; write \"openai\" or \"anthropic\"",
                    model.backend
                ),
            );
        }
        for fallback in &model.fallbacks {
            if !config.models.contains_key(fallback) {
                p.add(
                    format!("{key}.fallbacks"),
                    format!("`{fallback}` is not a model alias in [models]"),
                );
            } else if fallback == name {
                p.add(
                    format!("{key}.fallbacks"),
                    "an alias cannot fall back to itself",
                );
            }
        }
        for (field, problem) in crate::models::check_alias(model) {
            p.add(format!("{key}.{field}"), problem);
        }
    }
    for (name, agent) in &config.agents {
        let key = format!("agents.{name}");
        let limits = &agent.limits;
        if limits.tokens_per_day.is_some()
            && limits.quota.is_some_and(|q| q.tokens_per_day.is_some())
        {
            p.add(
                format!("{key}.limits.tokens_per_day"),
                "set once: either `tokens_per_day` or `quota.tokens_per_day`, not both",
            );
        }
        if let Some(model) = &agent.model
            && !config.models.contains_key(model)
        {
            p.add(
                format!("{key}.model"),
                format!("`{model}` is not a model alias in [models]"),
            );
        }
        for (i, tool) in agent.tools.iter().enumerate() {
            if tool == "*" {
                p.add(
                    format!("{key}.tools[{i}]"),
                    "`*` would allow every tool of every plugin, plugins added later included; \
                     name each plugin instead, as \"PLUGIN/*\" or \"PLUGIN/TOOL\"",
                );
                continue;
            }
            match tool.split_once('/') {
                Some((plugin, tool_name)) if !tool_name.is_empty() => {
                    if !config.plugins.contains_key(plugin) {
                        p.add(
                            format!("{key}.tools[{i}]"),
                            format!("`{plugin}` is not a plugin in [plugins]"),
                        );
                    }
                }
                _ => p.add(
                    format!("{key}.tools[{i}]"),
                    format!("`{tool}` is not a tool; write PLUGIN/TOOL or PLUGIN/*"),
                ),
            }
        }
        for (i, grant) in agent.grants.iter().enumerate() {
            let gkey = format!("{key}.grants[{i}]");
            match parse_agent_grant(grant) {
                Err(e) => p.add(gkey, e.0),
                Ok(AgentGrant::Source { name: source, access }) => match config.sources.get(&source) {
                    None => p.add(
                        gkey,
                        format!(
                            "`{source}` is not a source in [sources] (nor `model:ALIAS` or `memory:NAMESPACE`); \
                             the sources are: {}",
                            config.sources.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ),
                    Some(s) if access.is_some() && !s.kind.has_access_mode() => {
                        p.add(gkey, format!("`{source}` is an http source: grant it as \"{source}\", without :ro or :rw"))
                    }
                    Some(_) => {}
                },
                Ok(AgentGrant::Model(alias)) => {
                    if !config.models.contains_key(&alias) {
                        p.add(gkey, format!("`{alias}` is not a model alias in [models]"));
                    }
                }
                Ok(AgentGrant::Memory { .. }) => {}
            }
        }
    }
    for (name, tenant) in &config.tenants {
        let key = format!("tenants.{name}");
        let digest = &tenant.token_sha256;
        if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
            p.add(
                format!("{key}.token_sha256"),
                "the sha256 of the token, as 64 hex digits (e.g. `printf %s TOKEN | sha256sum`)",
            );
        }
        for agent in &tenant.agents {
            if !config.agents.contains_key(agent) {
                p.add(
                    format!("{key}.agents"),
                    format!("`{agent}` is not an agent in [agents]"),
                );
            }
        }
    }
}

/// The audit key must be there, and long enough, whenever the config names one: a log that
/// should be signed is never silently written unsigned.
fn check_audit_key(config: &WardenConfig, p: &mut Problems<'_>) {
    let state = &config.state;
    if state.audit_key_env.is_some() && state.audit_key_file.is_some() {
        p.add(
            "state.audit_key_file",
            "set one of `audit_key_env` and `audit_key_file`, not both",
        );
        return;
    }
    if let Err(e) = crate::policy::audit::AuditKey::from_config(config) {
        // The message starts with the key it is about.
        let (key, message) = e.split_once(": ").unwrap_or(("state", e.as_str()));
        p.add(key, message);
    }
}

fn check_source(config: &WardenConfig, name: &str, s: &SourceConfig, p: &mut Problems<'_>) {
    let key = format!("sources.{name}");
    if matches!(name, "model" | "memory") {
        p.add(
            &key,
            format!("`{name}` is reserved for grants (`{name}:…`); name the source otherwise"),
        );
    }
    let kind = format!("{:?}", s.kind).to_lowercase();
    let not_for = |field: &str, p: &mut Problems<'_>| {
        p.add(
            format!("{key}.{field}"),
            format!("`{field}` does not apply to a {kind} source; remove it"),
        );
    };
    let is_sql = matches!(s.kind, SourceKind::Sqlite | SourceKind::Postgres);
    if s.path.is_some() && !matches!(s.kind, SourceKind::Dir | SourceKind::Sqlite) {
        not_for("path", p);
    }
    if s.url_env.is_some() && s.kind != SourceKind::Postgres {
        not_for("url_env", p);
    }
    if s.kind != SourceKind::Http {
        if !s.allow.is_empty() {
            not_for("allow", p);
        }
        if !s.headers.is_empty() {
            not_for("headers", p);
        }
        if s.allow_private_addresses {
            not_for("allow_private_addresses", p);
        }
        if s.methods.is_some() {
            not_for("methods", p);
        }
        if s.max_requests.is_some() {
            not_for("max_requests", p);
        }
    }
    if !is_sql {
        if s.max_rows.is_some() {
            not_for("max_rows", p);
        }
        if s.pool_size.is_some() {
            not_for("pool_size", p);
        }
    }
    match s.kind {
        SourceKind::Dir => match &s.path {
            None => p.add(format!("{key}.path"), "a dir source needs `path`, the directory to share"),
            Some(path) => {
                let full = config.resolve(path);
                if !full.is_dir() {
                    p.add(format!("{key}.path"), format!("`{}` is not a directory", full.display()));
                }
            }
        },
        SourceKind::Sqlite => match &s.path {
            None => p.add(format!("{key}.path"), "a sqlite source needs `path`, the database file"),
            Some(path) => {
                let full = config.resolve(path);
                if !full.is_file() {
                    p.add(format!("{key}.path"), format!("`{}` does not exist; create the database first", full.display()));
                }
            }
        },
        SourceKind::Postgres => match &s.url_env {
            None => p.add(
                format!("{key}.url_env"),
                "a postgres source needs `url_env`, the environment variable that holds its URL (secrets never go in the file)",
            ),
            Some(var) if std::env::var_os(var).is_none() => {
                p.add(format!("{key}.url_env"), format!("the environment variable `{var}` is not set"))
            }
            Some(_) => {}
        },
        SourceKind::Http => {
            if s.allow.is_empty() {
                p.add(format!("{key}.allow"), "an http source needs `allow`, e.g. [\"https://api.example.com/v2/*\"]");
            }
            for (i, pattern) in s.allow.iter().enumerate() {
                if let Err(e) = crate::capabilities::http::parse_allow_pattern(pattern) {
                    p.add(format!("{key}.allow[{i}]"), e);
                }
            }
            if let Err(e) = crate::capabilities::http::parse_methods(s.methods.as_deref()) {
                p.add(format!("{key}.methods"), e);
            }
            if let Err(e) = crate::capabilities::http::check_max_requests(s.max_requests) {
                p.add(format!("{key}.max_requests"), e);
            }
            for (header, value) in &s.headers {
                if let Some(var) = value.strip_prefix("env:")
                    && std::env::var_os(var).is_none()
                {
                    p.add(format!("{key}.headers.{header}"), format!("the environment variable `{var}` is not set"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::WardenConfig;
    use std::path::Path;

    fn problems(text: &str) -> Vec<String> {
        match WardenConfig::parse(text, Path::new(env!("CARGO_MANIFEST_DIR"))) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let found = problems(
            r#"
            [plugins.files]
            path = "missing.wasm"
            max = ["dir:*"]
            [sources.handbook]
            kind = "dir"
            path = "no-such-dir"
            [agents.support]
            grants = ["nope:ro", "handbook:rwx"]
            colour = "blue"
            "#,
        );
        let joined = found.join("\n");
        assert!(joined.contains("plugins.files.path"), "{joined}");
        assert!(joined.contains("plugins.files.max[0]"), "{joined}");
        assert!(joined.contains("sources.handbook.path"), "{joined}");
        assert!(
            joined.contains("agents.support") && joined.contains("colour"),
            "{joined}"
        );
    }

    #[test]
    fn grants_must_name_configured_sources() {
        let found = problems(
            r#"
            [sources.docs]
            kind = "dir"
            path = "src"
            [agents.a]
            grants = ["crm:ro", "docs:ro", "model:fast"]
            "#,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("agents.a.grants[0]") && found[0].contains("docs"),
            "{found:?}"
        );
        assert!(found[1].contains("agents.a.grants[2]"), "{found:?}");
    }

    #[test]
    fn unknown_sections_and_keys_are_errors() {
        let found = problems("[server]\nport = 1\n[state]\nurl = \"sqlite://x.db\"\npath = 1\n");
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn keys_of_another_kind_are_named() {
        let found = problems("[sources.s]\nkind = \"dir\"\npath = \"src\"\nurl_env = \"X\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("sources.s.url_env"), "{found:?}");
    }
}
