//! What `warden config check` warns about: a config that loads, but hands a plugin more than
//! it seems to, or keeps a secret where it should not.
//!
//! - A directory source that contains another source's file, a plugin, the state store, the audit
//!   key file or the compile cache: a plugin granted the directory reads it, and with `:rw`
//!   replaces it or plants a link in its place.
//! - A header written inline whose name or value looks like a secret (`Authorization = "Bearer
//!   …"`, `X-Api-Key = "…"`): secrets belong in the environment, as `env:NAME`. The value is
//!   never shown.

use std::path::{Path, PathBuf};

use super::{ConfigProblem, SourceConfig, StateUrl, WardenConfig};

/// Every warning for `config`, each at the key to change. `compile_cache` is the folder of
/// compiled plugins, which the host knows and the config does not.
pub(super) fn warnings(
    config: &WardenConfig,
    config_file: Option<&Path>,
    compile_cache: Option<&Path>,
) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    overlapping_dirs(config, config_file, compile_cache, &mut out);
    key_file_mode(config, &mut out);
    for (name, source) in &config.sources {
        if let SourceConfig::Http(http) = source {
            inline_secrets(&format!("sources.{name}.headers"), &http.headers, &mut out);
        }
    }
    for (name, model) in &config.models {
        inline_secrets(&format!("models.{name}.headers"), &model.headers, &mut out);
    }
    out
}

/// The path as the kernel would resolve it, as far as it exists: symlinks and `..` of the
/// existing part resolved, the rest appended. Used only to compare places, never to open them.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => resolved(parent).join(name),
        _ => path.to_path_buf(),
    }
}

fn overlapping_dirs(
    config: &WardenConfig,
    config_file: Option<&Path>,
    compile_cache: Option<&Path>,
    out: &mut Vec<ConfigProblem>,
) {
    // What a directory grant must not reach: (what it is, where).
    let mut guarded: Vec<(String, PathBuf)> = Vec::new();
    if let Some(file) = config_file {
        guarded.push((
            "this config file (its grants included)".into(),
            resolved(file),
        ));
    }
    for (name, source) in &config.sources {
        if let Some(path) = source.path() {
            let what = match source {
                SourceConfig::Dir(_) => format!("directory source `{name}`"),
                _ => format!("the database file of source `{name}`"),
            };
            guarded.push((what, resolved(&config.resolve(path))));
        }
    }
    for (name, plugin) in &config.plugins {
        guarded.push((
            format!("plugin `{name}`"),
            resolved(&config.resolve(&plugin.path)),
        ));
    }
    if let Ok(StateUrl::Sqlite(path)) = StateUrl::parse(&config.state.url, &config.base_dir) {
        guarded.push(("the state store (the audit log)".into(), resolved(&path)));
    }
    if let Some(path) = &config.state.audit_key_file {
        guarded.push(("the audit key file".into(), resolved(&config.resolve(path))));
    }
    if let Some(cache) = compile_cache {
        guarded.push((
            "the compile cache (native code Warden runs)".into(),
            resolved(cache),
        ));
    }
    for (name, source) in &config.sources {
        let SourceConfig::Dir(dir) = source else {
            continue;
        };
        let dir = resolved(&config.resolve(&dir.path));
        for (what, place) in &guarded {
            if *place == dir || !place.starts_with(&dir) {
                continue;
            }
            out.push(ConfigProblem {
                key: format!("sources.{name}.path"),
                message: format!(
                    "the directory {} contains {what} ({}): a plugin granted `{name}` can read \
                     it, and with `{name}:rw` replace it or put a symlink in its place; keep them \
                     in separate folders",
                    dir.display(),
                    place.display()
                ),
            });
        }
    }
}

/// An audit key that other users can read is a key they can sign a rewritten log with.
fn key_file_mode(config: &WardenConfig, out: &mut Vec<ConfigProblem>) {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(path) = &config.state.audit_key_file else {
        return;
    };
    let path = config.resolve(path);
    if let Ok(meta) = std::fs::metadata(&path)
        && meta.permissions().mode() & 0o077 != 0
    {
        out.push(ConfigProblem {
            key: "state.audit_key_file".into(),
            message: format!(
                "{} can be read or written by other users (mode {:o}); whoever can read the key \
                 can sign a rewritten audit log: `chmod 600` it",
                path.display(),
                meta.permissions().mode() & 0o777
            ),
        });
    }
}

/// Header names whose value is a credential, in lowercase.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
];

/// Does a header with this name and literal value look like it carries a secret?
fn looks_secret(name: &str, value: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let value = value.trim_start().to_ascii_lowercase();
    SECRET_HEADERS.contains(&name.as_str())
        || [
            "token", "secret", "password", "api-key", "apikey", "api_key",
        ]
        .iter()
        .any(|w| name.contains(w))
        || ["bearer ", "basic ", "token "]
            .iter()
            .any(|scheme| value.starts_with(scheme))
}

fn inline_secrets(
    key: &str,
    headers: &std::collections::BTreeMap<String, String>,
    out: &mut Vec<ConfigProblem>,
) {
    for (name, value) in headers {
        if value.starts_with("env:") || !looks_secret(name, value) {
            continue;
        }
        out.push(ConfigProblem {
            key: format!("{key}.{name}"),
            message: format!(
                "`{name}` is written inline and looks like a secret; secrets belong in the \
                 environment: write \"env:NAME\" and set NAME where Warden runs"
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_headers_are_recognised() {
        assert!(looks_secret("Authorization", "Bearer abc"));
        assert!(looks_secret("X-Api-Key", "abc"));
        assert!(looks_secret("X-Custom", "Basic dXNlcjpwYXNz"));
        assert!(looks_secret("X-Service-Token", "abc"));
        assert!(!looks_secret("Accept", "application/json"));
        assert!(!looks_secret("User-Agent", "warden"));
    }
}
