//! The plugins that ship inside the `warden` binary. A config names one as
//! `path = "builtin:text-tools"`; `warden serve` on embedded defaults serves them all, so a
//! binary copied anywhere needs no other file.

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}

/// The prefix of a plugin path that names an embedded plugin.
pub const SCHEME: &str = "builtin:";

/// The embedded plugin a config path names, if it names one: `Some(Ok(bytes))`, or
/// `Some(Err(message))` for a `builtin:` name the binary does not carry.
pub fn for_path(path: &std::path::Path) -> Option<Result<&'static [u8], String>> {
    let name = path.to_str()?.strip_prefix(SCHEME)?;
    Some(
        embedded::EMBEDDED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| *bytes)
            .ok_or_else(|| {
                format!(
                    "`{SCHEME}{}` is not a plugin this binary carries; it carries: {}",
                    name.escape_debug(),
                    names().join(", ")
                )
            }),
    )
}

/// The names of the embedded plugins.
pub fn names() -> Vec<&'static str> {
    embedded::EMBEDDED.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_shipped_plugins_are_embedded() {
        for name in ["text-tools", "files", "summarize"] {
            let bytes = for_path(Path::new(&format!("builtin:{name}")))
                .expect("a builtin path")
                .expect("embedded");
            assert!(bytes.starts_with(b"\0asm"), "{name}");
        }
    }

    #[test]
    fn other_paths_and_unknown_names_are_told_apart() {
        assert!(for_path(Path::new("plugins/text-tools.wasm")).is_none());
        let err = for_path(Path::new("builtin:nope")).unwrap().unwrap_err();
        assert!(err.contains("text-tools"), "{err}");
    }
}
