//! Holding a session's lease while a task runs: acquire (or wait for it), renew it in the
//! background a third of the way through each term, and notice when it was lost. Correctness
//! does not rest on the heartbeat: every journal append names the lease's fencing token, so a
//! holder that lost the lease cannot write another step whatever its timers believe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::state::StoreError;
use crate::state::agents::AgentStore;
use crate::state::leases::Lease;
use crate::state::sessions::SessionId;

/// The longest pause between two tries while waiting for a busy session.
const MAX_WAIT_POLL: Duration = Duration::from_secs(1);

/// A lease held for one task, renewed until it is released or dropped.
pub struct HeldLease {
    store: Arc<dyn AgentStore>,
    tenant: String,
    lease: Lease,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    /// Until when the lease is surely ours by this process's monotonic clock: the instant the
    /// last granted request was sent, plus the term. The clock runs on while the process is
    /// stopped, so a process that was paused past its lease sees it here.
    live_until: Arc<Mutex<Instant>>,
    /// Set when the store failed a write of this task: the task should be handed over, not
    /// left for a person to resume.
    store_failed: AtomicBool,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl HeldLease {
    /// Acquires the session's lease for `holder`. While another holder's lease is live this
    /// returns its refusal, or, with `wait`, tries again until it lapses or is released, telling
    /// `on_wait` who holds it.
    pub async fn acquire(
        store: Arc<dyn AgentStore>,
        tenant: &str,
        session: SessionId,
        holder: &str,
        ttl: Duration,
        wait: bool,
        on_wait: &(dyn Fn(&str, u64) + Send + Sync),
    ) -> Result<HeldLease, StoreError> {
        let mut told = None;
        let (lease, sent) = loop {
            let sent = Instant::now();
            match store.acquire_lease(tenant, session, holder, ttl).await {
                Ok(lease) => break (lease, sent),
                Err(StoreError::LeaseHeld {
                    holder: other,
                    until_ms,
                }) if wait => {
                    if told.as_ref() != Some(&other) {
                        on_wait(&other, until_ms);
                        told = Some(other);
                    }
                    let left = until_ms.saturating_sub(crate::state::now_ms());
                    let pause = Duration::from_millis(left.clamp(20, 1000)).min(MAX_WAIT_POLL);
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        };
        let lost = Arc::new(AtomicBool::new(false));
        let live_until = Arc::new(Mutex::new(sent + ttl));
        let heartbeat = tokio::spawn(heartbeat(
            store.clone(),
            tenant.to_string(),
            lease.clone(),
            ttl,
            lost.clone(),
            live_until.clone(),
        ));
        Ok(HeldLease {
            store,
            tenant: tenant.to_string(),
            lease,
            ttl,
            lost,
            live_until,
            store_failed: AtomicBool::new(false),
            heartbeat,
        })
    }

    /// The lease, for its fencing token.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Whether a renewal was refused because another holder took the session over.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Renews the lease now, as a write refused because the lease lapsed does before it tries
    /// again: a lapsed lease that nobody took over is still this holder's, and one that was
    /// taken over stays lost.
    pub async fn renew_now(&self) -> Result<(), StoreError> {
        let sent = Instant::now();
        match self
            .store
            .renew_lease(&self.tenant, &self.lease, self.ttl)
            .await
        {
            Ok(_) => {
                extend(&self.live_until, sent + self.ttl);
                Ok(())
            }
            Err(e) => {
                if matches!(e, StoreError::Fenced { .. }) {
                    self.lost.store(true, Ordering::Release);
                }
                Err(e)
            }
        }
    }

    /// Records that the store failed one of this task's writes (it was down, say).
    pub fn note_store_failure(&self) {
        self.store_failed.store(true, Ordering::Release);
    }

    /// Whether [`HeldLease::note_store_failure`] was called: the task stopped for the store's
    /// sake, and any host may resume it once the store answers again.
    pub fn store_failed(&self) -> bool {
        self.store_failed.load(Ordering::Acquire)
    }

    /// Makes sure the lease is live before work whose effects the journal cannot fence starts
    /// (a tool call): with less than a third of its term left by this process's clock (a
    /// heartbeat came late: the process was paused or starved), it is renewed first. An error
    /// means the work must not start; [`StoreError::Fenced`] means another holder took over.
    pub async fn ensure_live(&self) -> Result<(), StoreError> {
        if self.lost() {
            return Err(StoreError::Fenced {
                token: self.lease.token.0,
                current: None,
            });
        }
        let left = lock(&self.live_until).saturating_duration_since(Instant::now());
        if left >= self.ttl / 3 {
            return Ok(());
        }
        self.renew_now().await
    }

    /// Stops renewing and gives the lease up, so the next task need not wait for it to lapse.
    pub async fn release(self) {
        self.heartbeat.abort();
        if let Err(e) = self.store.release_lease(&self.tenant, &self.lease).await {
            // It lapses on its own; the next holder waits at most one term.
            tracing::warn!(
                "could not release the lease of session {}: {e}",
                self.lease.session
            );
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Renews `lease` every third of `ttl` until aborted. A refusal as `Fenced` means it was taken
/// over: stop and say so. Other failures (the store briefly down) are retried next beat; if the
/// lease lapses meanwhile, the fencing token stops our writes.
async fn heartbeat(
    store: Arc<dyn AgentStore>,
    tenant: String,
    lease: Lease,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    live_until: Arc<Mutex<Instant>>,
) {
    let beat = ttl / 3;
    loop {
        tokio::time::sleep(beat).await;
        let sent = Instant::now();
        match store.renew_lease(&tenant, &lease, ttl).await {
            Ok(_) => extend(&live_until, sent + ttl),
            Err(StoreError::Fenced { .. }) => {
                lost.store(true, Ordering::Release);
                tracing::warn!(
                    "session {}: the lease was taken over by another holder; this task stops",
                    lease.session
                );
                return;
            }
            Err(e) => tracing::warn!("session {}: renewing the lease failed: {e}", lease.session),
        }
    }
}

/// Moves `live_until` forward to `to` (never back: a slow renewal that returns after a quicker
/// one must not shorten it).
fn extend(live_until: &Mutex<Instant>, to: Instant) {
    let mut until = lock(live_until);
    if to > *until {
        *until = to;
    }
}

fn lock(m: &Mutex<Instant>) -> std::sync::MutexGuard<'_, Instant> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{StateStore, StateUrl};

    async fn store() -> (Arc<dyn AgentStore>, SessionId, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = StateUrl::Sqlite(dir.path().join("state.db"));
        let store = StateStore::open(&url).await.unwrap().agent_state();
        let session = store.create_session("t", "a").await.unwrap().id;
        (store, session, dir)
    }

    async fn hold(store: &Arc<dyn AgentStore>, session: SessionId, ttl: Duration) -> HeldLease {
        HeldLease::acquire(
            store.clone(),
            "t",
            session,
            "host-a",
            ttl,
            false,
            &|_, _| {},
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_lease_past_its_term_by_the_local_clock_is_refused_once_taken_over() {
        let (store, session, _dir) = store().await;
        let ttl = Duration::from_millis(300);
        let held = hold(&store, session, ttl).await;
        assert!(held.ensure_live().await.is_ok());
        // A paused process: its heartbeat does not run, and its lease lapses.
        held.heartbeat.abort();
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        store
            .acquire_lease("t", session, "host-b", Duration::from_secs(60))
            .await
            .unwrap();
        // Nothing told this holder: only the local clock says the term ran out.
        assert!(!held.lost());
        let refused = held.ensure_live().await;
        assert!(
            matches!(refused, Err(StoreError::Fenced { .. })),
            "{refused:?}"
        );
        assert!(held.lost());
    }

    #[tokio::test]
    async fn a_lapsed_lease_nobody_took_is_renewed_before_work() {
        let (store, session, _dir) = store().await;
        let ttl = Duration::from_millis(300);
        let held = hold(&store, session, ttl).await;
        held.heartbeat.abort();
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        let before = store.current_lease("t", session).await.unwrap().unwrap();
        assert!(held.ensure_live().await.is_ok());
        let after = store.current_lease("t", session).await.unwrap().unwrap();
        assert_eq!(after.token, held.lease().token);
        assert!(
            after.expires_at_ms > before.expires_at_ms,
            "{before:?} {after:?}"
        );
    }
}
