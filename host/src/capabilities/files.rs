//! Directory sources. A granted `dir` source is a WASI preopen at `/<source>`, read-only or
//! read-write as the effective right says; cap-std underneath refuses `..`, absolute paths and
//! symlinks that lead outside it. Nothing else of the host's file system is visible.

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::{AuditFailure, CallGrants, CallSite};
use crate::policy::{Access, Outcome};

/// The path a plugin opens a directory source at.
pub fn guest_path(source: &str) -> String {
    format!("/{source}")
}

/// Adds a preopen for every directory source the call was granted, and audits each one. A
/// directory whose audit record cannot be committed is not opened (fail closed), and the first
/// such failure is returned.
pub(crate) fn preopen(
    builder: &mut WasiCtxBuilder,
    grants: &CallGrants,
    site: &CallSite<'_>,
) -> Result<(), AuditFailure> {
    let Some(caps) = &grants.capabilities else {
        return Ok(());
    };
    let mut first_failure = None;
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
        let recorded = grants.audit(
            site,
            "dir",
            name,
            Outcome::Allowed,
            &format!("preopened {} at {guest}", access.suffix()),
        );
        if let Err(failure) = recorded {
            first_failure.get_or_insert(failure);
            continue;
        }
        if let Err(e) = builder.preopened_dir(&host_path, &guest, perms) {
            tracing::error!(
                "cannot open directory source `{name}` at {}: {e}",
                host_path.display()
            );
            if let Err(failure) = grants.audit(site, "dir", name, Outcome::Failed, &e.to_string()) {
                first_failure.get_or_insert(failure);
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}
