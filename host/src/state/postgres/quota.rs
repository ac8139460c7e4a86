//! The quota ledger's storage on PostgreSQL. Every change takes one transaction-scoped
//! advisory lock first, so a reservation's check and hold are atomic across every host.

use async_trait::async_trait;
use tokio_postgres::Transaction;

use super::audit::bound_locks;
use super::{LOCK_QUOTA, PgStore};
use crate::state::{
    QUOTA_KEEP_MS, QuotaCheck, QuotaStore, QuotaWindowKey, ReserveOutcome, StoreError, WindowUsage,
};

async fn usage_in(
    client: &impl tokio_postgres::GenericClient,
    key: &QuotaWindowKey,
    now_ms: u64,
) -> Result<WindowUsage, StoreError> {
    let start = key.start_ms as i64;
    let row = client
        .query_one(
            "SELECT \
               COALESCE((SELECT calls FROM model_quota_usage WHERE scope = $1 AND window_name = $2 AND window_start_ms = $3), 0) \
             + (SELECT COUNT(*) FROM quota_reservation_windows w JOIN quota_reservations r ON r.id = w.reservation \
                WHERE w.scope = $1 AND w.window_name = $2 AND w.window_start_ms = $3 AND NOT r.spent AND r.expires_at_ms > $4), \
               COALESCE((SELECT tokens FROM model_quota_usage WHERE scope = $1 AND window_name = $2 AND window_start_ms = $3), 0) \
             + (SELECT COALESCE(SUM(r.tokens), 0)::BIGINT FROM quota_reservation_windows w JOIN quota_reservations r ON r.id = w.reservation \
                WHERE w.scope = $1 AND w.window_name = $2 AND w.window_start_ms = $3 AND NOT r.spent AND r.expires_at_ms > $4)",
            &[&key.scope, &key.window, &start, &(now_ms as i64)],
        )
        .await?;
    let calls: i64 = row.get(0);
    let tokens: i64 = row.get(1);
    Ok(WindowUsage {
        calls: calls.max(0) as u64,
        tokens: tokens.max(0) as u64,
    })
}

async fn add_to_windows(
    tx: &Transaction<'_>,
    id: i64,
    calls: i64,
    tokens: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO model_quota_usage (scope, window_name, window_start_ms, calls, tokens) \
         SELECT scope, window_name, window_start_ms, GREATEST(0, $2::BIGINT), GREATEST(0, $3::BIGINT) \
         FROM quota_reservation_windows WHERE reservation = $1 \
         ON CONFLICT (scope, window_name, window_start_ms) DO UPDATE SET \
         calls = GREATEST(0, model_quota_usage.calls + $2::BIGINT), tokens = GREATEST(0, model_quota_usage.tokens + $3::BIGINT)",
        &[&id, &calls, &tokens],
    )
    .await?;
    Ok(())
}

async fn held(tx: &Transaction<'_>, id: i64) -> Result<Option<(i64, bool)>, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT tokens, spent FROM quota_reservations WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// Deletes reservation `id` (its windows go with it, by the foreign key's cascade).
async fn remove_with(pool: deadpool_postgres::Pool, id: i64) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute("DELETE FROM quota_reservations WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

impl PgStore {
    /// Runs `f` in a transaction holding the quota lock.
    async fn locked<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: for<'a> FnOnce(
            &'a Transaction<'a>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>,
        >,
    {
        let mut client = self.connection().await?;
        let tx = client.transaction().await?;
        bound_locks(&tx).await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_QUOTA])
            .await?;
        let result = f(&tx).await?;
        tx.commit().await?;
        Ok(result)
    }

    async fn remove(&self, id: i64) -> Result<(), StoreError> {
        remove_with(self.pool.clone(), id).await
    }
}

#[async_trait]
impl QuotaStore for PgStore {
    async fn reserve(
        &self,
        checks: &[QuotaCheck],
        tokens: u64,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<ReserveOutcome, StoreError> {
        let checks = checks.to_vec();
        self.locked(move |tx| {
            Box::pin(async move {
                let old = now_ms.saturating_sub(QUOTA_KEEP_MS) as i64;
                tx.execute(
                    "DELETE FROM model_quota_usage WHERE window_start_ms < $1",
                    &[&old],
                )
                .await?;
                tx.execute(
                    "DELETE FROM quota_reservations WHERE expires_at_ms < $1",
                    &[&old],
                )
                .await?;
                let mut usages = Vec::with_capacity(checks.len());
                let mut fits = true;
                for check in &checks {
                    let used = usage_in(tx, &check.key, now_ms).await?;
                    fits &= check.call_limit.is_none_or(|l| used.calls < l)
                        && check.token_limit.is_none_or(|l| used.tokens + tokens <= l);
                    usages.push(used);
                }
                if !fits {
                    return Ok(ReserveOutcome::Refused(usages));
                }
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO quota_reservations (tokens, spent, expires_at_ms) VALUES ($1, FALSE, $2) RETURNING id",
                        &[&(tokens as i64), &(expires_at_ms as i64)],
                    )
                    .await?
                    .get(0);
                for check in &checks {
                    tx.execute(
                        "INSERT INTO quota_reservation_windows (reservation, scope, window_name, window_start_ms) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[&id, &check.key.scope, &check.key.window, &(check.key.start_ms as i64)],
                    )
                    .await?;
                }
                Ok(ReserveOutcome::Reserved(id))
            })
        })
        .await
    }

    async fn mark_spent(&self, id: i64, spent: bool, expires_at_ms: u64) -> Result<(), StoreError> {
        self.locked(move |tx| {
            Box::pin(async move {
                let Some((tokens, was_spent)) = held(tx, id).await? else {
                    return Ok(());
                };
                if spent != was_spent {
                    let sign = if spent { 1 } else { -1 };
                    add_to_windows(tx, id, sign, sign * tokens).await?;
                }
                tx.execute(
                    "UPDATE quota_reservations SET spent = $2, expires_at_ms = $3 WHERE id = $1",
                    &[&id, &spent, &(expires_at_ms as i64)],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn settle(&self, id: i64, tokens: u64) -> Result<(), StoreError> {
        self.locked(move |tx| {
            Box::pin(async move {
                let Some((reserved, spent)) = held(tx, id).await? else {
                    return Ok(());
                };
                if spent {
                    add_to_windows(tx, id, 0, tokens as i64 - reserved).await?;
                } else {
                    add_to_windows(tx, id, 1, tokens as i64).await?;
                }
                tx.execute("DELETE FROM quota_reservations WHERE id = $1", &[&id])
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn release(&self, id: i64) -> Result<(), StoreError> {
        self.remove(id).await
    }

    fn release_detached(&self, id: i64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("cannot give back a model quota reservation: no async runtime");
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move {
            if let Err(e) = remove_with(pool, id).await {
                tracing::error!("cannot give back a model quota reservation: {e}");
            }
        });
    }

    async fn usage(&self, key: &QuotaWindowKey, now_ms: u64) -> Result<WindowUsage, StoreError> {
        let client = self.connection().await?;
        usage_in(&**client, key, now_ms).await
    }
}
