//! `warden serve`'s membership of a fleet: on a PostgreSQL store it registers this host with a
//! fingerprint of its config, warns about every live host whose config differs (and after each
//! reload), renews its row while it serves, and removes it when it stops.

use std::sync::{Arc, Mutex};

use super::serve::ConfigSource;
use crate::config::fingerprint::fingerprint;
use crate::host::WardenHost;
use crate::policy::audit::AuditKey;
use crate::state::hosts::{HOST_HEARTBEAT, HostRecord, config_differences};
use crate::state::{StateStore, latest_version};

/// This host's registration, renewed in the background until [`Membership::leave`].
pub(super) struct Membership {
    store: StateStore,
    record: Arc<Mutex<HostRecord>>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Membership {
    /// Registers this host as `id`, serving on `listen`, and reports how the live hosts'
    /// configs differ from this one's. `None` when the host serves no config.
    pub(super) async fn join(
        host: &WardenHost,
        source: &ConfigSource,
        id: &str,
        listen: &str,
    ) -> Option<Membership> {
        let store = host.generation().capabilities()?.store.clone();
        let record = HostRecord {
            id: id.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            schema: latest_version(&crate::state::postgres::migrations::all()),
            listen: listen.to_string(),
            started_at_ms: 0,
            seen_at_ms: 0,
            config: config_fingerprint(host, source),
        };
        match store.join_fleet(&record).await {
            Ok(peers) => report(&record, &peers),
            Err(e) => eprintln!(
                "warning: could not register this host in the state store's host list: {e}; \
                 it serves anyway, and other hosts cannot compare their config with it"
            ),
        }
        let record = Arc::new(Mutex::new(record));
        let heartbeat = tokio::spawn(heartbeat(store.clone(), record.clone()));
        Some(Membership {
            store,
            record,
            heartbeat,
        })
    }

    /// After a reload: takes the new config's fingerprint and compares it again.
    pub(super) async fn reloaded(&self, host: &WardenHost, source: &ConfigSource) {
        let record = {
            let mut record = lock(&self.record);
            record.config = config_fingerprint(host, source);
            record.clone()
        };
        if let Err(e) = self.store.renew_host(&record).await {
            tracing::warn!("renewing this host's row in the host list: {e}");
        }
        match self.store.fleet_peers(&record.id).await {
            Ok(peers) => report(&record, &peers),
            Err(e) => tracing::warn!("reading the host list: {e}"),
        }
    }

    /// Stops renewing and removes this host's row.
    pub(super) async fn leave(self) {
        self.heartbeat.abort();
        let id = lock(&self.record).id.clone();
        if let Err(e) = self.store.leave_fleet(&id).await {
            tracing::warn!("removing this host from the host list: {e}");
        }
    }
}

/// The fingerprint of the config being served (its text as loaded now) and of its audit key.
fn config_fingerprint(
    host: &WardenHost,
    source: &ConfigSource,
) -> std::collections::BTreeMap<String, String> {
    let text = source.text().unwrap_or_default();
    let key = host
        .generation()
        .config()
        .and_then(|c| AuditKey::from_config(c).ok().flatten())
        .map(|k| k.fingerprint());
    fingerprint(&text, key.as_deref())
}

/// One warning per live host whose config differs from `me`'s, naming the settings.
fn report(me: &HostRecord, peers: &[HostRecord]) {
    for peer in peers {
        let differences = config_differences(&me.config, &peer.config);
        if !differences.is_empty() {
            eprintln!(
                "warning: this host's config differs from host {}'s at: {} (that host serves on \
                 {}; the hosts of one fleet should serve the same config)",
                peer.id,
                differences.join(", "),
                peer.listen
            );
        }
        if peer.version != me.version {
            eprintln!(
                "note: host {} runs Warden {} (schema {}); this host runs {} (schema {})",
                peer.id, peer.version, peer.schema, me.version, me.schema
            );
        }
    }
}

async fn heartbeat(store: StateStore, record: Arc<Mutex<HostRecord>>) {
    loop {
        tokio::time::sleep(HOST_HEARTBEAT).await;
        let record = lock(&record).clone();
        if let Err(e) = store.renew_host(&record).await {
            tracing::warn!("renewing this host's row in the host list: {e}");
        }
    }
}

fn lock(m: &Mutex<HostRecord>) -> std::sync::MutexGuard<'_, HostRecord> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
