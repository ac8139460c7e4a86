//! The hosts of a fleet: each `warden serve` on a PostgreSQL store registers itself, renews its
//! row while it runs and removes it when it stops, with a fingerprint of its config, so a host
//! that joins can say how its config differs from the others'. This is for operators, not for
//! correctness: leases and fencing tokens decide who runs a session. On SQLite there is one
//! host, and nothing is registered.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Backend, StateStore, StoreError};

/// How often a host renews its row.
pub const HOST_HEARTBEAT: Duration = Duration::from_secs(5);
/// A host whose row was not renewed for this long is taken for gone.
pub const HOST_GONE_AFTER: Duration = Duration::from_secs(20);
/// Rows of hosts gone this long are deleted when another host registers.
pub const HOST_FORGOTTEN_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// One host's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// The host's id (host name, process id and a random part).
    pub id: String,
    /// The Warden version it runs.
    pub version: String,
    /// The newest schema version its binary knows.
    pub schema: u32,
    /// The address it serves on.
    pub listen: String,
    /// When it started, in milliseconds since the Unix epoch (the store's clock).
    pub started_at_ms: u64,
    /// When it last renewed its row.
    pub seen_at_ms: u64,
    /// Its config's fingerprint: a digest per setting (see `config::fingerprint`).
    pub config: BTreeMap<String, String>,
}

impl StateStore {
    /// Registers (or re-registers) this host and returns the other live hosts.
    pub async fn join_fleet(&self, me: &HostRecord) -> Result<Vec<HostRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(store) => super::postgres::hosts::join(store, me).await,
        }
    }

    /// Renews this host's row (and its config, after a reload).
    pub async fn renew_host(&self, me: &HostRecord) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(store) => super::postgres::hosts::renew(store, me).await,
        }
    }

    /// Removes this host's row.
    pub async fn leave_fleet(&self, id: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(store) => super::postgres::hosts::leave(store, id).await,
        }
    }

    /// The live hosts other than `id`.
    pub async fn fleet_peers(&self, id: &str) -> Result<Vec<HostRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(store) => super::postgres::hosts::peers(store, id).await,
        }
    }
}

/// The settings whose fingerprints differ between two hosts, in order: set on one and not the
/// other, or set to different values.
pub fn config_differences(
    mine: &BTreeMap<String, String>,
    theirs: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut keys: Vec<&String> = mine.keys().chain(theirs.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| mine.get(*k) != theirs.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_changed_added_and_removed_settings() {
        let a: BTreeMap<String, String> = [("x", "1"), ("y", "2"), ("z", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut b = a.clone();
        assert!(config_differences(&a, &b).is_empty());
        b.insert("y".into(), "9".into());
        b.remove("z");
        b.insert("w".into(), "0".into());
        assert_eq!(config_differences(&a, &b), ["w", "y", "z"]);
    }
}
