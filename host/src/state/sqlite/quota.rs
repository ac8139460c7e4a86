//! The quota ledger's storage on SQLite. A reservation is a row with its windows; settled and
//! spent calls are added to per-window counters. Reserving is one write on the writer thread,
//! under SQLite's write lock, so two processes can never both take the last tokens.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::state::{
    QUOTA_KEEP_MS, QuotaCheck, QuotaStore, QuotaWindowKey, ReserveOutcome, StoreError, WindowUsage,
};

fn usage_in(
    conn: &Connection,
    key: &QuotaWindowKey,
    now_ms: u64,
) -> Result<WindowUsage, StoreError> {
    let (calls, tokens): (i64, i64) = conn
        .prepare_cached(
            "SELECT calls, tokens FROM model_quota_usage WHERE scope = ?1 AND window = ?2 AND window_start_ms = ?3",
        )?
        .query_row(params![key.scope, key.window, key.start_ms as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
        .unwrap_or_default();
    // Holds still open: not spent (spent ones are in the counters) and not expired.
    let (held_calls, held_tokens): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(r.tokens), 0) FROM quota_reservation_windows w \
             JOIN quota_reservations r ON r.id = w.reservation \
             WHERE w.scope = ?1 AND w.window = ?2 AND w.window_start_ms = ?3 \
             AND r.spent = 0 AND r.expires_at_ms > ?4",
        )?
        .query_row(
            params![key.scope, key.window, key.start_ms as i64, now_ms as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    Ok(WindowUsage {
        calls: (calls.max(0) + held_calls.max(0)) as u64,
        tokens: (tokens.max(0) + held_tokens.max(0)) as u64,
    })
}

/// Adds `calls` and `tokens` (either may be negative) to every window of reservation `id`.
fn add_to_windows(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    calls: i64,
    tokens: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO model_quota_usage (scope, window, window_start_ms, calls, tokens) \
         SELECT scope, window, window_start_ms, MAX(0, ?2), MAX(0, ?3) FROM quota_reservation_windows \
         WHERE reservation = ?1 AND true \
         ON CONFLICT (scope, window, window_start_ms) \
         DO UPDATE SET calls = MAX(0, calls + ?2), tokens = MAX(0, tokens + ?3)",
    )?
    .execute(params![id, calls, tokens])?;
    Ok(())
}

fn remove(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM quota_reservation_windows WHERE reservation = ?1")?
        .execute([id])?;
    tx.prepare_cached("DELETE FROM quota_reservations WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

fn held(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<Option<(i64, bool)>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT tokens, spent FROM quota_reservations WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))
        .optional()?)
}

#[async_trait]
impl QuotaStore for SqliteStore {
    async fn reserve(
        &self,
        checks: &[QuotaCheck],
        tokens: u64,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<ReserveOutcome, StoreError> {
        let checks = checks.to_vec();
        self.write(move |tx| {
            let old = now_ms.saturating_sub(QUOTA_KEEP_MS) as i64;
            tx.prepare_cached("DELETE FROM model_quota_usage WHERE window_start_ms < ?1")?
                .execute([old])?;
            tx.prepare_cached(
                "DELETE FROM quota_reservation_windows WHERE reservation IN \
                 (SELECT id FROM quota_reservations WHERE expires_at_ms < ?1)",
            )?
            .execute([old])?;
            tx.prepare_cached("DELETE FROM quota_reservations WHERE expires_at_ms < ?1")?
                .execute([old])?;
            let mut usages = Vec::with_capacity(checks.len());
            let mut fits = true;
            for check in &checks {
                let used = usage_in(tx, &check.key, now_ms)?;
                fits &= check.call_limit.is_none_or(|l| used.calls < l)
                    && check.token_limit.is_none_or(|l| used.tokens + tokens <= l);
                usages.push(used);
            }
            if !fits {
                return Ok(ReserveOutcome::Refused(usages));
            }
            tx.prepare_cached(
                "INSERT INTO quota_reservations (tokens, spent, expires_at_ms) VALUES (?1, 0, ?2)",
            )?
            .execute(params![tokens as i64, expires_at_ms as i64])?;
            let id = tx.last_insert_rowid();
            for check in &checks {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO quota_reservation_windows (reservation, scope, window, window_start_ms) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    id,
                    check.key.scope,
                    check.key.window,
                    check.key.start_ms as i64
                ])?;
            }
            Ok(ReserveOutcome::Reserved(id))
        })
        .await
    }

    async fn mark_spent(&self, id: i64, spent: bool, expires_at_ms: u64) -> Result<(), StoreError> {
        self.write(move |tx| {
            let Some((tokens, was_spent)) = held(tx, id)? else {
                return Ok(());
            };
            if spent != was_spent {
                // Spent: counted in the windows from now on, whatever happens to this process.
                let sign = if spent { 1 } else { -1 };
                add_to_windows(tx, id, sign, sign * tokens)?;
            }
            tx.prepare_cached(
                "UPDATE quota_reservations SET spent = ?2, expires_at_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, spent as i64, expires_at_ms as i64])?;
            Ok(())
        })
        .await
    }

    async fn settle(&self, id: i64, tokens: u64) -> Result<(), StoreError> {
        self.write(move |tx| {
            let Some((reserved, spent)) = held(tx, id)? else {
                return Ok(());
            };
            if spent {
                add_to_windows(tx, id, 0, tokens as i64 - reserved)?;
            } else {
                add_to_windows(tx, id, 1, tokens as i64)?;
            }
            remove(tx, id)
        })
        .await
    }

    async fn release(&self, id: i64) -> Result<(), StoreError> {
        // A spent reservation is already in the counters; dropping its row keeps it there.
        self.write(move |tx| remove(tx, id)).await
    }

    fn release_detached(&self, id: i64) {
        let queued = self.enqueue(
            move |tx| remove(tx, id),
            |result: Result<(), StoreError>| {
                if let Err(e) = result {
                    tracing::error!("cannot give back a model quota reservation: {e}");
                }
            },
        );
        if let Err(e) = queued {
            tracing::error!("cannot give back a model quota reservation: {e}");
        }
    }

    async fn usage(&self, key: &QuotaWindowKey, now_ms: u64) -> Result<WindowUsage, StoreError> {
        let key = key.clone();
        // On the writer thread, after whatever this process queued before (a release from a
        // Drop): a caller reads its own writes.
        self.write(move |tx| usage_in(tx, &key, now_ms)).await
    }
}
