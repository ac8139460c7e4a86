//! The audit log's storage on SQLite. Appends run on the writer thread, so they are serialised
//! within a process by the thread and across processes by SQLite's write lock: the head read
//! and the insert happen in the same transaction, and the log stays one chain.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::policy::audit::{AuditRecord, GENESIS};
use crate::state::{AuditSealer, AuditStore, StoreError};

fn append_in(
    tx: &rusqlite::Transaction<'_>,
    mut record: AuditRecord,
    seal: &AuditSealer,
) -> Result<i64, StoreError> {
    let last: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    (record.seq, record.prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    record.hash = seal(&record);
    tx.prepare_cached(
        "INSERT INTO audit_log (seq, at_ms, tenant, agent, session, plugin, tool, call_id, capability, \
         target, outcome, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        record.seq,
        record.at_ms,
        record.tenant,
        record.agent,
        record.session,
        record.plugin,
        record.tool,
        record.call_id,
        record.capability,
        record.target,
        record.outcome,
        record.detail,
        record.prev_hash,
        record.hash
    ])?;
    Ok(record.seq)
}

fn query(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok(AuditRecord {
            seq: r.get("seq")?,
            at_ms: r.get("at_ms")?,
            tenant: r.get("tenant")?,
            agent: r.get("agent")?,
            session: r.get("session")?,
            plugin: r.get("plugin")?,
            tool: r.get("tool")?,
            call_id: r.get("call_id")?,
            capability: r.get("capability")?,
            target: r.get("target")?,
            outcome: r.get("outcome")?,
            detail: r.get("detail")?,
            prev_hash: r.get("prev_hash")?,
            hash: r.get("hash")?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append(&self, record: AuditRecord, seal: AuditSealer) -> Result<i64, StoreError> {
        self.write(move |tx| append_in(tx, record, &seal)).await
    }

    fn append_detached(&self, record: AuditRecord, seal: AuditSealer) {
        let queued = self.enqueue(
            move |tx| append_in(tx, record, &seal),
            |result: Result<i64, StoreError>| {
                if let Err(e) = result {
                    tracing::error!("cannot write the audit log: {e}");
                }
            },
        );
        if let Err(e) = queued {
            tracing::error!("cannot write the audit log: {e}");
        }
    }

    async fn range(&self, from: i64, to: i64) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |c| {
            query(
                c,
                "SELECT * FROM audit_log WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
                (from, to),
            )
        })
        .await
    }

    async fn tail(&self, n: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.read(move |c| {
            query(
                c,
                "SELECT * FROM (SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
                [n],
            )
        })
        .await
    }

    async fn tail_for_tenant(
        &self,
        tenant: &str,
        n: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let tenant = tenant.to_string();
        self.read(move |c| {
            query(
                c,
                "SELECT * FROM (SELECT * FROM audit_log WHERE tenant = ?1 ORDER BY seq DESC \
                 LIMIT ?2) ORDER BY seq",
                (tenant, n),
            )
        })
        .await
    }
}
