//! Directory sources. A granted `dir` source is a WASI preopen at `/<source>`, read-only or
//! read-write as the effective right says; cap-std underneath refuses `..`, absolute paths and
//! symlinks that lead outside it. Nothing else of the host's file system is visible.
//!
//! The sandbox never follows a link out of a preopen, but the host opens files too (SQLite
//! sources, plugins, the state store), and so may other programs. So a plugin cannot create a
//! symlink whose target could leave its directory ([`guard_symlinks`]), and the host opens its
//! own files without following links ([`open_no_follow`]).

use std::path::Path;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{Descriptor, ErrorCode, HostDescriptor};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::log::escape_log_line;
use super::{AuditFailure, CallGrants, CallSite};
use crate::policy::{Access, Outcome};
use crate::sandbox::CallState;

/// The path a plugin opens a directory source at.
pub fn guest_path(source: &str) -> String {
    format!("/{source}")
}

/// Adds a preopen for every directory source the call was granted, and audits each one. A
/// directory whose audit record cannot be committed is not opened (fail closed), nor is any
/// after it, and the failure is returned.
pub(crate) async fn preopen(
    builder: &mut WasiCtxBuilder,
    grants: &CallGrants,
    site: &CallSite<'_>,
) -> Result<(), AuditFailure> {
    let Some(caps) = &grants.capabilities else {
        return Ok(());
    };
    for (name, access) in grants.rights.dirs() {
        let Some(path) = caps.config.sources.get(name).and_then(|s| s.path.as_ref()) else {
            continue;
        };
        let host_path = caps.config.resolve(path);
        let perms = match access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        let guest = guest_path(name);
        // The record goes first: a directory the log cannot show was opened is not opened.
        let recorded = grants
            .audit(
                site,
                "dir",
                name,
                Outcome::Allowed,
                &format!("preopened {} at {guest}", access.suffix()),
            )
            .await;
        // The first failure refuses the whole call: opening (or waiting on the store for)
        // the remaining directories would serve nothing.
        recorded?;
        if let Err(e) = builder.preopened_dir(&host_path, &guest, perms) {
            tracing::error!(
                "cannot open directory source `{name}` at {}: {e}",
                host_path.display()
            );
            grants
                .audit(site, "dir", name, Outcome::Failed, &e.to_string())
                .await?;
        }
    }
    Ok(())
}

/// The `wasi:filesystem/types` instance wasmtime-wasi links (its WIT version), whose
/// `symlink-at` the guard replaces. [`guard_symlinks`] refuses to start if it is not there, so a
/// wasmtime-wasi upgrade that moves the version cannot leave the guard silently unused.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// The function of a directory descriptor that makes a symbolic link.
const SYMLINK_AT: &str = "[method]descriptor.symlink-at";

/// The most of a guest's path text an audit record or log line keeps.
const PATH_IN_RECORD: usize = 200;

/// Checks the target of a symlink a plugin wants to create. A target is refused when it is
/// absolute or has a `..` component: only then could the link, wherever it sits in the granted
/// directory, point outside it. The sandbox never follows such a link, but the host, or another
/// program reading the directory, might.
pub fn check_symlink_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("the target is empty".into());
    }
    if target.starts_with('/') {
        return Err("the target is an absolute path".into());
    }
    if target.split('/').any(|part| part == "..") {
        return Err("the target climbs with `..`, and could leave the granted directory".into());
    }
    Ok(())
}

/// Replaces WASI's `symlink-at` with one that refuses, with `not-permitted`, a target
/// [`check_symlink_target`] refuses, and records the refusal; other targets go to wasmtime-wasi's
/// own implementation (which also checks the link's own path and the grant's write permission).
pub(crate) fn guard_symlinks(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    fn define(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        linker.instance(FILESYSTEM_TYPES)?.func_wrap_async(
            SYMLINK_AT,
            |mut store: StoreContextMut<'_, CallState>,
             (fd, target, link): (Resource<Descriptor>, String, String)| {
                Box::new(
                    async move { symlink_at_checked(store.data_mut(), fd, target, link).await },
                )
            },
        )
    }
    // Without shadowing, defining it again fails exactly when WASI's own is in place.
    if define(linker).is_ok() {
        return Err(wasmtime::format_err!(
            "`{FILESYSTEM_TYPES}` is not linked, so its `symlink-at` cannot be guarded; update \
             FILESYSTEM_TYPES in capabilities/files.rs to the version wasmtime-wasi links"
        ));
    }
    linker.allow_shadowing(true);
    let guarded = define(linker);
    linker.allow_shadowing(false);
    guarded
}

async fn symlink_at_checked(
    state: &mut CallState,
    fd: Resource<Descriptor>,
    target: String,
    link: String,
) -> wasmtime::Result<(Result<(), ErrorCode>,)> {
    if let Err(reason) = check_symlink_target(&target) {
        let shown = |s: &str| s.chars().take(PATH_IN_RECORD).collect::<String>();
        let detail = format!(
            "refused to create symlink {:?} -> {:?}: {reason}",
            shown(&link),
            shown(&target)
        );
        tracing::warn!(target: "plugin", plugin = %state.plugin, tool = %state.tool, "{}", escape_log_line(&detail));
        // Refused either way; a record that cannot be committed is kept on the call, whose
        // output is then withheld.
        let _ = state
            .audit("dir", "symlink", Outcome::Denied, &detail)
            .await;
        return Ok((Err(ErrorCode::NotPermitted),));
    }
    let mut view = state.filesystem();
    match HostDescriptor::symlink_at(&mut view, fd, target, link).await {
        Ok(()) => Ok((Ok(()),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// Opens `path` for reading without following a symbolic link in its last component, for the
/// files the host itself opens (plugin files, source files), which a plugin with a read-write
/// directory grant could have replaced with a link. A link is refused with a message that says
/// so.
pub fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::other(format!(
                    "{} is a symbolic link, which Warden does not follow; put the file itself there",
                    path.display()
                ))
            } else {
                e
            }
        })
}

/// Reads a whole file through [`open_no_follow`].
pub fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    open_no_follow(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn relative_targets_inside_are_allowed() {
        for target in [
            "crm.db",
            "sub/crm.db",
            "./a",
            "a/./b",
            "..a",
            "a..",
            "...",
            "a/b..",
        ] {
            assert_eq!(check_symlink_target(target), Ok(()), "{target}");
        }
    }

    #[test]
    fn absolute_and_climbing_targets_are_refused() {
        for target in [
            "/etc/passwd",
            "../state.db",
            "..",
            "a/../../b",
            "a/..",
            "./..",
            "a//..//b",
            "",
        ] {
            assert!(check_symlink_target(target).is_err(), "{target}");
        }
    }

    #[test]
    fn opening_a_symlink_is_refused_and_a_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("real.wasm");
        std::fs::write(&file, b"bytes").unwrap();
        let link = dir.path().join("link.wasm");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_no_follow(&file).unwrap(), b"bytes");
        let err = read_no_follow(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    /// Resolves `target` lexically from a link `depth` folders below the granted root: `None`
    /// once it leaves the root.
    fn resolves_inside(depth: usize, target: &str) -> bool {
        if target.starts_with('/') {
            return false;
        }
        let mut level = depth as i64;
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => level -= 1,
                _ => level += 1,
            }
            if level < 0 {
                return false;
            }
        }
        true
    }

    fn path_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("..".to_string()),
                Just(".".to_string()),
                Just(String::new()),
                "[a-z.]{1,4}",
            ],
            0..6,
        )
        .prop_map(|parts| parts.join("/"))
        .prop_flat_map(|p| prop_oneof![Just(p.clone()), Just(format!("/{p}"))])
    }

    proptest! {
        /// Whatever folder the link sits in, an allowed target never resolves outside the root.
        #[test]
        fn an_allowed_target_never_leaves_the_granted_dir(target in path_text(), depth in 0usize..4) {
            if check_symlink_target(&target).is_ok() {
                prop_assert!(resolves_inside(depth, &target), "{target} at depth {depth}");
            }
        }

        /// Every target that could leave the root from the root itself is refused.
        #[test]
        fn a_target_that_leaves_from_the_root_is_refused(target in path_text()) {
            if !resolves_inside(0, &target) {
                prop_assert!(check_symlink_target(&target).is_err(), "{target}");
            }
        }
    }
}
