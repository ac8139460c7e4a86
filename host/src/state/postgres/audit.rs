//! The audit log's storage on PostgreSQL. Appends are group-committed by one writer task per
//! process; each batch takes one transaction-scoped advisory lock before it reads the head, so
//! appends from every host on the database form one chain.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

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

/// One append waiting for the next group commit.
pub(crate) struct PendingAppend {
    record: AuditRecord,
    seal: AuditSealer,
    done: Option<oneshot::Sender<Result<i64, StoreError>>>,
}

/// The most appends one group commit takes from the queue.
const MAX_BATCH: usize = 256;

/// The audit writer task: takes what is queued and commits it in one transaction, under the
/// advisory lock, each append in its own savepoint so that a refused one fails alone.
async fn run_writer(
    pool: Pool,
    location: String,
    mut queue: mpsc::UnboundedReceiver<PendingAppend>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let results = match commit_batch(&pool, &location, &batch).await {
            Ok(results) => results,
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        };
        for (pending, result) in batch.into_iter().zip(results) {
            match pending.done {
                Some(done) => {
                    let _ = done.send(result);
                }
                None => {
                    if let Err(e) = result {
                        tracing::error!("cannot write the audit log: {e}");
                    }
                }
            }
        }
    }
}

async fn commit_batch(
    pool: &Pool,
    location: &str,
    batch: &[PendingAppend],
) -> Result<Vec<Result<i64, StoreError>>, StoreError> {
    let mut client = pool.get().await.map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot connect to the PostgreSQL state store {location}: {}",
            StoreError::from(e)
        ))
    })?;
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
    // The whole batch in one statement: the lock every host waits for is held for a few round
    // trips, not three per record. A record the database refuses (a trigger, a constraint)
    // fails the statement; then each goes in its own savepoint, so that one fails alone.
    let chained = chain(batch, seq, &prev);
    tx.batch_execute("SAVEPOINT batch").await?;
    match insert_all(&tx, &chained).await {
        Ok(()) => {
            tx.batch_execute("RELEASE SAVEPOINT batch").await?;
            tx.commit().await?;
            return Ok(chained.iter().map(|r| Ok(r.seq)).collect());
        }
        Err(_) => tx.batch_execute("ROLLBACK TO SAVEPOINT batch").await?,
    }
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .await?;
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch {
        let mut r = pending.record.clone();
        r.seq = seq + 1;
        r.prev_hash = prev.clone();
        r.hash = (pending.seal)(&r);
        tx.batch_execute("SAVEPOINT item").await?;
        let inserted = tx
            .execute(
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
            .await;
        match inserted {
            Ok(_) => {
                tx.batch_execute("RELEASE SAVEPOINT item").await?;
                seq = r.seq;
                prev = r.hash;
                results.push(Ok(seq));
            }
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT item").await?;
                results.push(Err(StoreError::from(e)));
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// The batch's records chained after `(seq, prev)`, each sealed in turn.
fn chain(batch: &[PendingAppend], mut seq: i64, prev: &str) -> Vec<AuditRecord> {
    let mut prev = prev.to_string();
    batch
        .iter()
        .map(|pending| {
            let mut r = pending.record.clone();
            seq += 1;
            r.seq = seq;
            r.prev_hash = std::mem::take(&mut prev);
            r.hash = (pending.seal)(&r);
            prev = r.hash.clone();
            r
        })
        .collect()
}

/// Inserts `records` with one statement, a column array each.
async fn insert_all(
    tx: &deadpool_postgres::Transaction<'_>,
    records: &[AuditRecord],
) -> Result<(), tokio_postgres::Error> {
    let column = |f: fn(&AuditRecord) -> &str| records.iter().map(f).collect::<Vec<&str>>();
    let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
    let ats: Vec<i64> = records.iter().map(|r| r.at_ms).collect();
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO audit_log ({COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::bigint[], \
             $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
             $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])"
        ))
        .await?;
    tx.execute(
        &insert,
        &[
            &seqs,
            &ats,
            &column(|r| &r.tenant),
            &column(|r| &r.agent),
            &column(|r| &r.session),
            &column(|r| &r.plugin),
            &column(|r| &r.tool),
            &column(|r| &r.call_id),
            &column(|r| &r.capability),
            &column(|r| &r.target),
            &column(|r| &r.outcome),
            &column(|r| &r.detail),
            &column(|r| &r.prev_hash),
            &column(|r| &r.hash),
        ],
    )
    .await?;
    Ok(())
}

impl PgStore {
    /// Queues `pending` for the audit writer, starting it (on this runtime) if it is not
    /// running.
    fn queue_append(&self, pending: PendingAppend) -> Result<(), StoreError> {
        let mut queue = self.audit_queue.lock().unwrap_or_else(|p| p.into_inner());
        let pending = match queue.as_ref() {
            Some(q) => match q.send(pending) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(pending)) => pending,
            },
            None => pending,
        };
        // Not running yet, or its runtime has ended: start one here.
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Unavailable("no async runtime to write the audit log from".into())
        })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(run_writer(
            self.pool.clone(),
            self.location.clone(),
            receiver,
        ));
        sender.send(pending).map_err(|_| StoreError::Closed)?;
        *queue = Some(sender);
        Ok(())
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append(&self, record: AuditRecord, seal: AuditSealer) -> Result<i64, StoreError> {
        let (done, result) = oneshot::channel();
        self.queue_append(PendingAppend {
            record,
            seal,
            done: Some(done),
        })?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    fn append_detached(&self, record: AuditRecord, seal: AuditSealer) {
        let queued = self.queue_append(PendingAppend {
            record,
            seal,
            done: None,
        });
        if let Err(e) = queued {
            tracing::error!("cannot write the audit log: {e}");
        }
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

    async fn tail_for_tenant(
        &self,
        tenant: &str,
        n: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let client = self.connection().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM audit_log WHERE tenant = $1 \
                     ORDER BY seq DESC LIMIT $2) t ORDER BY seq"
                ),
                &[&tenant, &n],
            )
            .await?;
        Ok(rows.iter().map(record).collect())
    }
}
