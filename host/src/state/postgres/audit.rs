//! The audit log's storage on PostgreSQL. Every append takes one transaction-scoped advisory
//! lock before it reads the head, so appends from every host on the database form one chain.

use async_trait::async_trait;

use super::{LOCK_AUDIT, PG_TIMEOUT, PgStore};
use crate::policy::audit::{AuditRecord, GENESIS};
use crate::state::{AuditSealer, AuditStore, StoreError};

const COLUMNS: &str = "seq, at_ms, tenant, agent, session, plugin, tool, call_id, capability, \
                       target, outcome, detail, prev_hash, hash";

fn record(r: &tokio_postgres::Row) -> AuditRecord {
    AuditRecord {
        seq: r.get(0),
        at_ms: r.get(1),
        tenant: r.get(2),
        agent: r.get(3),
        session: r.get(4),
        plugin: r.get(5),
        tool: r.get(6),
        call_id: r.get(7),
        capability: r.get(8),
        target: r.get(9),
        outcome: r.get(10),
        detail: r.get(11),
        prev_hash: r.get(12),
        hash: r.get(13),
    }
}

/// Sets the lock timeout for this transaction: a store held by someone else refuses quickly.
pub(crate) async fn bound_locks(tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}",
        PG_TIMEOUT.as_millis()
    ))
    .await?;
    Ok(())
}

impl PgStore {
    async fn append_records(
        &self,
        records: Vec<AuditRecord>,
        seal: &AuditSealer,
    ) -> Result<i64, StoreError> {
        let mut client = self.connection().await?;
        let tx = client.transaction().await?;
        bound_locks(&tx).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_AUDIT])
            .await?;
        let head = tx
            .query_opt(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await?;
        let (mut seq, mut prev): (i64, String) = match head {
            Some(row) => (row.get(0), row.get(1)),
            None => (0, GENESIS.to_string()),
        };
        let insert = tx
            .prepare(&format!(
                "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ))
            .await?;
        for mut r in records {
            seq += 1;
            r.seq = seq;
            r.prev_hash = std::mem::take(&mut prev);
            r.hash = seal(&r);
            tx.execute(
                &insert,
                &[
                    &r.seq,
                    &r.at_ms,
                    &r.tenant,
                    &r.agent,
                    &r.session,
                    &r.plugin,
                    &r.tool,
                    &r.call_id,
                    &r.capability,
                    &r.target,
                    &r.outcome,
                    &r.detail,
                    &r.prev_hash,
                    &r.hash,
                ],
            )
            .await?;
            prev = r.hash;
        }
        tx.commit().await?;
        Ok(seq)
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append(&self, record: AuditRecord, seal: AuditSealer) -> Result<i64, StoreError> {
        self.append_records(vec![record], &seal).await
    }

    fn append_detached(&self, record: AuditRecord, seal: AuditSealer) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("cannot write the audit log: no async runtime to write it from");
            return;
        };
        let store = PgStore {
            pool: self.pool.clone(),
            location: self.location.clone(),
        };
        runtime.spawn(async move {
            if let Err(e) = store.append_records(vec![record], &seal).await {
                tracing::error!("cannot write the audit log: {e}");
            }
        });
    }

    async fn range(&self, from: i64, to: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let client = self.connection().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM audit_log WHERE seq >= $1 AND seq <= $2 ORDER BY seq"
                ),
                &[&from, &to],
            )
            .await?;
        Ok(rows.iter().map(record).collect())
    }

    async fn tail(&self, n: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let client = self.connection().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT $1) t ORDER BY seq"
                ),
                &[&n],
            )
            .await?;
        Ok(rows.iter().map(record).collect())
    }
}
