//! The checks that need the whole file: names that must refer to something configured (a grant
//! to a source, a fallback to an alias, a tenant to an agent), values whose form is wrong, and
//! the plugin files that must exist. What a capability alone can judge is checked by it.

use std::collections::BTreeSet;

use super::grants::{AgentGrant, ToolGrant};
use super::{ConfigProblem, SourceConfig, StateUrl, WardenConfig};

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
}

/// Every place the config names an environment variable: (key, the name as written).
fn env_references(config: &WardenConfig) -> Vec<(String, &str)> {
    let mut refs: Vec<(String, &str)> = Vec::new();
    if let Some(var) = &config.state.audit_key_env {
        refs.push(("state.audit_key_env".into(), var));
    }
    for (name, s) in &config.sources {
        match s {
            SourceConfig::Postgres(pg) => {
                refs.push((format!("sources.{name}.url_env"), &pg.url_env))
            }
            SourceConfig::Http(http) => {
                for (header, value) in &http.headers {
                    if let Some(var) = value.strip_prefix("env:") {
                        refs.push((format!("sources.{name}.headers.{header}"), var));
                    }
                }
            }
            SourceConfig::Dir(_) | SourceConfig::Sqlite(_) => {}
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
pub(super) fn values_in_place_of_names(config: &WardenConfig, problems: &mut Vec<ConfigProblem>) {
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

/// Whether one entry of `agents.NAME.tools`, at `key`, names a configured plugin.
pub(super) fn tool_refers(
    config: &WardenConfig,
    unloaded: &BTreeSet<String>,
    key: &str,
    tool: &ToolGrant,
    problems: &mut Vec<ConfigProblem>,
) {
    if !config.plugins.contains_key(&tool.plugin)
        && !unloaded.contains(&format!("plugins.{}", tool.plugin))
    {
        Problems(problems).add(
            key,
            format!("`{}` is not a plugin in [plugins]", tool.plugin),
        );
    }
}

/// Whether one entry of `agents.NAME.grants`, at `key`, names a configured source or alias, in
/// a form that fits it.
pub(super) fn grant_refers(
    config: &WardenConfig,
    unloaded: &BTreeSet<String>,
    key: &str,
    grant: &AgentGrant,
    problems: &mut Vec<ConfigProblem>,
) {
    let mut p = Problems(problems);
    let written = |section: &str, name: &str| unloaded.contains(&format!("{section}.{name}"));
    match grant {
        AgentGrant::Source { name, .. } if written("sources", name) => {}
        AgentGrant::Model(alias) if written("models", alias) => {}
        AgentGrant::Source { name: source, access } => match config.sources.get(source) {
            None => p.add(
                key,
                format!(
                    "`{source}` is not a source in [sources] (nor `model:ALIAS` or `memory:NAMESPACE`); \
                     the sources are: {}",
                    config.sources.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(s) if access.is_some() && !s.kind().has_access_mode() => p.add(
                key,
                format!("`{source}` is an http source: grant it as \"{source}\", without :ro or :rw"),
            ),
            Some(_) => {}
        },
        AgentGrant::Model(alias) => {
            if !config.models.contains_key(alias) {
                p.add(key, format!("`{alias}` is not a model alias in [models]"));
            }
        }
        AgentGrant::Memory { .. } => {}
    }
}

fn check_all(config: &WardenConfig, problems: &mut Vec<ConfigProblem>) {
    let mut p = Problems(problems);
    if let Err(e) = StateUrl::parse(&config.state.url, &config.base_dir) {
        p.add("state.url", e.to_string());
    }
    if config.state.audit_key_env.is_some() && config.state.audit_key_file.is_some() {
        p.add(
            "state.audit_key_file",
            "set one of `audit_key_env` and `audit_key_file`, not both",
        );
    }
    let bounded_ms = [
        (
            "state.session_lease_ms",
            config.state.session_lease_ms,
            &super::model::SESSION_LEASE_MS_RANGE,
            "a session lease lasts from",
        ),
        (
            "state.rescue_interval_ms",
            config.state.rescue_interval_ms,
            &super::model::RESCUE_INTERVAL_MS_RANGE,
            "abandoned tasks are looked for every",
        ),
    ];
    for (key, value, range, what) in bounded_ms {
        if let Some(ms) = value
            && !range.contains(&ms)
        {
            p.add(
                key,
                format!(
                    "is {ms}; {what} {} to {} milliseconds",
                    range.start(),
                    range.end()
                ),
            );
        }
    }
    for (name, plugin) in &config.plugins {
        let key = format!("plugins.{name}");
        // Whether the file is there is not checked here but by `warden config check` (see
        // `WardenConfig::plugin_file_problems`): at start-up a plugin whose file is missing is
        // reported on its own, and the other plugins still serve.
        if let Some(pin) = &plugin.sha256
            && (pin.len() != 64 || !pin.chars().all(|c| c.is_ascii_hexdigit()))
        {
            p.add(format!("{key}.sha256"), "a sha256 pin is 64 hex digits");
        }
    }
    for name in config.sources.keys() {
        if matches!(name.as_str(), "model" | "memory") {
            p.add(
                format!("sources.{name}"),
                format!("`{name}` is reserved for grants (`{name}:…`); name the source otherwise"),
            );
        }
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
    }
    for (name, tenant) in &config.tenants {
        let key = format!("tenants.{name}");
        if tenant.token_sha256.0.is_empty() {
            p.add(
                format!("{key}.token_sha256"),
                format!("is empty: make a token with `warden tenant token {name}`"),
            );
        }
        for digest in &tenant.token_sha256.0 {
            if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
                p.add(
                    format!("{key}.token_sha256"),
                    format!(
                        "the sha256 of the token, as 64 hex digits: make a token and its line \
                         with `warden tenant token {name}`"
                    ),
                );
            }
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
            pool_size = 2
            [agents.support]
            grants = ["nope:ro", "handbook:rwx"]
            colour = "blue"
            "#,
        );
        let joined = found.join("\n");
        // A missing plugin file is that plugin's failure at start-up, where the others still
        // serve; `warden config check` reports it (cli/config.rs).
        assert!(!joined.contains("plugins.files.path"), "{joined}");
        assert!(joined.contains("plugins.files.max[0]"), "{joined}");
        // That the directory exists is the files capability's to check (see
        // `capabilities::check`); a key of another kind is the file's shape.
        assert!(joined.contains("sources.handbook.pool_size"), "{joined}");
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
    fn a_grant_to_a_source_that_did_not_load_is_not_called_unknown() {
        let found = problems(
            r#"
            [sources.crm]
            kind = "postgres"
            [models.fast]
            backend = "openai"
            [agents.a]
            grants = ["crm:ro", "model:fast"]
            "#,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("models.fast:"), "{found:?}");
        assert!(found[1].starts_with("sources.crm.url_env:"), "{found:?}");
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
