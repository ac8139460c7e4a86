//! Directory sources. A granted `dir` source is a WASI preopen at `/<source>`, read-only or
//! read-write as the effective right says; cap-std underneath refuses `..`, absolute paths and
//! symlinks that lead outside it. Nothing else of the host's file system is visible.

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::{CallGrants, CallSite};
use crate::policy::{Access, Outcome};

/// The path a plugin opens a directory source at.
pub fn guest_path(source: &str) -> String {
    format!("/{source}")
}

/// Adds a preopen for every directory source the call was granted, and audits each one.
pub(crate) fn preopen(builder: &mut WasiCtxBuilder, grants: &CallGrants, site: &CallSite<'_>) {
    let Some(caps) = &grants.capabilities else {
        return;
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
        match builder.preopened_dir(&host_path, &guest, perms) {
            Ok(_) => grants.audit(
                site,
                "dir",
                name,
                Outcome::Allowed,
                &format!("preopened {} at {guest}", access.suffix()),
            ),
            Err(e) => {
                tracing::error!(
                    "cannot open directory source `{name}` at {}: {e}",
                    host_path.display()
                );
                grants.audit(site, "dir", name, Outcome::Failed, &e.to_string());
            }
        }
    }
}
