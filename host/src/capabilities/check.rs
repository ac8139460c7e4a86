//! The operator's config as the host checks it: the file's shape and cross-references (by
//! [`crate::config`]), then each capability's own sections, checked by the capability the way
//! Spin's `configure_app` does, and the state store's. `warden config check` and every command
//! that loads a config run the same checks, so what start-up would refuse, the check refuses
//! first, each problem with its key and the fix.
//!
//! | section                          | checked by                                  |
//! |----------------------------------|---------------------------------------------|
//! | `[state]` url, audit key         | [`state`] here ([`crate::policy::audit`])   |
//! | `dir` sources                    | [`super::files::configure`]                 |
//! | `sqlite` and `postgres` sources  | [`super::sql::SqlSources::configure`]       |
//! | `http` sources                   | [`super::http::HttpSources::configure`]     |
//! | `[models.*]`                     | [`crate::models::configure`]                |
//!
//! Each of these reads the environment and the file system, and connects to nothing.

use std::path::Path;

use crate::config::{ConfigProblem, ConfigProblems, StateUrl, WardenConfig};

/// Every problem the capabilities and the state store find in `config`, each at its key.
/// `config` may be one that loaded only in part: each section is checked as far as it loaded.
pub fn problems(config: &WardenConfig) -> Vec<ConfigProblem> {
    let mut out = state(config);
    let mut add = |result: Result<(), ConfigProblems>| {
        if let Err(problems) = result {
            out.extend(problems.0);
        }
    };
    add(super::files::configure(config));
    add(super::sql::SqlSources::configure(config).map(|_| ()));
    add(super::http::HttpSources::configure(config).map(|_| ()));
    add(crate::models::configure(config));
    out
}

/// The problems of `[state]`: a PostgreSQL URL the store could not read (in `url`, or in the
/// variable `url_env` names, which must be set), and an audit key that
/// is named but missing, unreadable or too short (a log that should be signed is never
/// silently written unsigned).
pub fn state(config: &WardenConfig) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    let (key, url) = match &config.state.url_env {
        // A malformed `[state] url` is the file's shape, reported by the config itself.
        None => (
            "state.url",
            StateUrl::parse(&config.state.url, &config.base_dir).ok(),
        ),
        Some(var) if !crate::config::is_env_var_name(var) => {
            out.push(ConfigProblem {
                key: "state.url_env".into(),
                message: "this looks like a value, not the name of an environment variable; put \
                          the URL in a variable and write its name, e.g. \"WARDEN_STATE_URL\""
                    .into(),
            });
            ("state.url_env", None)
        }
        Some(_) => match StateUrl::from_config(config) {
            Ok(url) => ("state.url_env", Some(url)),
            Err(e) => {
                out.push(ConfigProblem {
                    key: "state.url_env".into(),
                    message: e.to_string(),
                });
                ("state.url_env", None)
            }
        },
    };
    if let Some(StateUrl::Postgres(url)) = url
        && let Err(e) = super::sql::check_postgres_url(&url)
    {
        out.push(ConfigProblem {
            key: key.into(),
            message: if key == "state.url" {
                format!(
                    "{e}; write postgres://USER@HOST:PORT/DATABASE (the password belongs in the \
                     environment, not in this file)"
                )
            } else {
                format!("{e}; the variable should hold postgres://USER:PASSWORD@HOST:PORT/DATABASE")
            },
        });
    }
    // Both keys at once is a problem of the file's shape, reported by the config itself.
    let both = config.state.audit_key_env.is_some() && config.state.audit_key_file.is_some();
    if !both && let Err(e) = crate::policy::audit::AuditKey::from_config(config) {
        // The message starts with the key it is about.
        let (key, message) = e.split_once(": ").unwrap_or(("state", e.as_str()));
        out.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }
    out
}

/// Reads and checks the config at `path`: its shape, then every capability's sections.
/// Every problem is reported at once.
pub fn load(path: &Path) -> Result<WardenConfig, ConfigProblems> {
    load_and(path, |_| Vec::new())
}

/// As [`load`], adding the problems `more` finds in the config (as `warden config check` adds
/// the plugins whose file no longer matches its pin).
pub fn load_and(
    path: &Path,
    more: impl FnOnce(&WardenConfig) -> Vec<ConfigProblem>,
) -> Result<WardenConfig, ConfigProblems> {
    let (config, mut found) = WardenConfig::load_unchecked(path)?;
    found.extend(problems(&config));
    found.extend(more(&config));
    config.checked(found)
}

/// As [`load`], for config text whose relative paths resolve against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<WardenConfig, ConfigProblems> {
    let (config, mut found) = WardenConfig::parse_unchecked(text, base_dir)?;
    found.extend(problems(&config));
    config.checked(found)
}

/// Parses and checks `warden.toml` text as `warden config check` would (pins aside), and
/// returns its warnings, or every problem. Relative paths resolve against a folder that does
/// not exist, so it reads no more of the file system than the absolute paths in the text name
/// (and the audit key file, at most a few KiB). For fuzzing: whatever the text, this returns,
/// never panics.
pub fn check_text(text: &str) -> Result<Vec<ConfigProblem>, ConfigProblems> {
    let config = parse(text, Path::new("/nonexistent/warden-config-check"))?;
    let cache = crate::engine::CompileCache::default_dir();
    Ok(config.warnings(None, cache.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn found(text: &str) -> Vec<String> {
        match parse(text, Path::new(env!("CARGO_MANIFEST_DIR"))) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let got = found(
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
        let joined = got.join("\n");
        // A missing plugin file is that plugin's failure at start-up, where the other plugins
        // still serve; `warden config check` reports it too (cli/config.rs, tested with the
        // binary in tests/capabilities/config.rs).
        assert!(!joined.contains("plugins.files.path"), "{joined}");
        assert!(joined.contains("plugins.files.max[0]"), "{joined}");
        assert!(joined.contains("sources.handbook.path"), "{joined}");
        assert!(
            joined.contains("agents.support") && joined.contains("colour"),
            "{joined}"
        );
    }

    #[test]
    fn a_malformed_postgres_state_url_is_refused_without_its_password() {
        let got = found("[state]\nurl = \"postgres://admin:hunter2@db:notaport/state\"\n");
        assert!(
            got.len() == 1
                && got[0].starts_with("state.url: not a PostgreSQL URL")
                && !got[0].contains("hunter2"),
            "{got:?}"
        );
        assert!(found("[state]\nurl = \"postgres://warden@db:5432/state\"\n").is_empty());
    }

    #[test]
    fn an_http_header_the_host_could_not_send_is_refused() {
        let got = found(
            "[sources.api]\nkind = \"http\"\nallow = [\"https://api.example.com/*\"]\n\
             headers = { \"Bad Name\" = \"x\", X-Ok = \"a\\u0001b\" }\n",
        );
        assert_eq!(
            got,
            [
                "sources.api.headers.Bad Name: `Bad Name` is not a valid header name",
                "sources.api.headers.X-Ok: the value is not a valid header value",
            ]
        );
    }

    #[test]
    fn what_start_up_refuses_the_check_refuses() {
        // Each config here fails in `Capabilities::configure`; the check must say so first.
        // (The environment's part, a variable set to what the host cannot use, is tested with
        // the binary, in tests/capabilities/config.rs.)
        for text in [
            "[sources.crm]\nkind = \"postgres\"\nurl_env = \"WARDEN_UNIT_PG_UNSET\"\n",
            "[sources.api]\nkind = \"http\"\nallow = [\"ftp://x/*\"]\n",
            "[sources.api]\nkind = \"http\"\nallow = [\"https://x/*\"]\nmethods = []\n",
            "[sources.db]\nkind = \"sqlite\"\npath = \"no-such.db\"\n",
        ] {
            assert_eq!(found(text).len(), 1, "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn hostile_configs_are_refused_without_a_panic() {
        for text in [
            "[state]\naudit_key_file = \"/dev/zero\"\n",
            "[state]\naudit_key_file = \"/proc/self/mem\"\n",
            "[state]\naudit_key_env = \"\"\n",
            "[state]\nurl = \"postgres://\u{0}:\u{0}@[::1\"\n",
            "[sources.s]\nkind = \"postgres\"\nurl_env = \"\"\n",
            "[sources.s]\nkind = \"http\"\nallow = [\"\"]\nheaders = { \"\" = \"env:\" }\n",
            "[agents.a]\ntools = [\"*\", \"/\", \"a/\", \"/b\"]\ngrants = [\":\", \"::\", \"memory:\"]\n",
            "[sources.d]\nkind = \"dir\"\npath = \"/\"\n[state]\nurl = \"sqlite:///\"\n",
            "[sources.d]\nkind = 1\n",
            "[sources.d]\nkind = \"dir\"\npath = 1\nallow = 2\n",
            "[plugins.\u{e9}]\npath = \"\"\n",
        ] {
            let _ = check_text(text);
        }
        let err = check_text("[state]\naudit_key_file = \"/dev/zero\"\n").unwrap_err();
        assert!(err.to_string().contains("state.audit_key_file"), "{err}");
    }

    proptest! {
        #[test]
        fn check_text_never_panics(text in any::<String>()) {
            let _ = check_text(&text);
        }

        #[test]
        fn check_text_never_panics_on_config_shaped_text(
            section in prop::sample::select(vec!["state", "sources.s", "agents.a", "models.m", "plugins.p"]),
            key in prop::sample::select(vec!["url", "path", "kind", "url_env", "tools", "grants", "headers", "audit_key_env", "backend", "max"]),
            value in prop_oneof![
                "\"[ -~]{0,24}\"",
                Just("[\"*\"]".to_string()),
                Just("{ Authorization = \"Bearer x\" }".to_string()),
                Just("\"dir\"".to_string()),
                Just("1".to_string()),
            ],
        ) {
            let _ = check_text(&format!("[{section}]\n{key} = {value}\n"));
        }
    }
}
