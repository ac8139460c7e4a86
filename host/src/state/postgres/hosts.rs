//! The `warden_hosts` table on PostgreSQL (see [`crate::state::hosts`]).

use std::collections::BTreeMap;

use super::PgStore;
use crate::state::StoreError;
use crate::state::hosts::{HOST_FORGOTTEN_AFTER, HOST_GONE_AFTER, HostRecord};

/// Migration 7.
pub(crate) const MIGRATION_SQL: &str = "
CREATE TABLE warden_hosts (
    id            TEXT PRIMARY KEY,
    version       TEXT NOT NULL,
    schema        INTEGER NOT NULL,
    listen        TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    seen_at_ms    BIGINT NOT NULL,
    config        TEXT NOT NULL
);
";

const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

fn config_text(record: &HostRecord) -> String {
    serde_json::to_string(&record.config).unwrap_or_else(|_| "{}".into())
}

pub(crate) async fn join(store: &PgStore, me: &HostRecord) -> Result<Vec<HostRecord>, StoreError> {
    let client = store.connection().await?;
    client
        .execute(
            &format!("DELETE FROM warden_hosts WHERE seen_at_ms < {NOW_MS} - $1 AND id <> $2"),
            &[&(HOST_FORGOTTEN_AFTER.as_millis() as i64), &me.id],
        )
        .await?;
    client
        .execute(
            &format!(
                "INSERT INTO warden_hosts (id, version, schema, listen, started_at_ms, seen_at_ms, config)
                 VALUES ($1, $2, $3, $4, {NOW_MS}, {NOW_MS}, $5)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                     schema = excluded.schema, listen = excluded.listen,
                     seen_at_ms = excluded.seen_at_ms, config = excluded.config"
            ),
            &[
                &me.id,
                &me.version,
                &(me.schema as i32),
                &me.listen,
                &config_text(me),
            ],
        )
        .await?;
    drop(client);
    peers(store, &me.id).await
}

pub(crate) async fn renew(store: &PgStore, me: &HostRecord) -> Result<(), StoreError> {
    let client = store.connection().await?;
    let updated = client
        .execute(
            &format!("UPDATE warden_hosts SET seen_at_ms = {NOW_MS}, config = $2 WHERE id = $1"),
            &[&me.id, &config_text(me)],
        )
        .await?;
    drop(client);
    if updated == 0 {
        // Deleted meanwhile (a host that was away for days): register again.
        join(store, me).await?;
    }
    Ok(())
}

pub(crate) async fn leave(store: &PgStore, id: &str) -> Result<(), StoreError> {
    let client = store.connection().await?;
    client
        .execute("DELETE FROM warden_hosts WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

pub(crate) async fn peers(store: &PgStore, id: &str) -> Result<Vec<HostRecord>, StoreError> {
    let client = store.connection().await?;
    let rows = client
        .query(
            &format!(
                "SELECT id, version, schema, listen, started_at_ms, seen_at_ms, config
                 FROM warden_hosts WHERE id <> $1 AND seen_at_ms >= {NOW_MS} - $2
                 ORDER BY started_at_ms, id"
            ),
            &[&id, &(HOST_GONE_AFTER.as_millis() as i64)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let config: String = row.try_get(6)?;
            // Another host's row is read as data: an unreadable fingerprint differs everywhere.
            let config: BTreeMap<String, String> = serde_json::from_str(&config)
                .unwrap_or_else(|_| BTreeMap::from([("(unreadable)".into(), String::new())]));
            Ok(HostRecord {
                id: row.try_get(0)?,
                version: row.try_get(1)?,
                schema: row.try_get::<_, i32>(2)?.max(0) as u32,
                listen: row.try_get(3)?,
                started_at_ms: row.try_get::<_, i64>(4)?.max(0) as u64,
                seen_at_ms: row.try_get::<_, i64>(5)?.max(0) as u64,
                config,
            })
        })
        .collect()
}
