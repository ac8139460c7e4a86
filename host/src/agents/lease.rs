//! Holding a session's lease while a task runs: acquire (or wait for it), renew it in the
//! background a third of the way through each term, and notice when it was lost. Correctness
//! does not rest on the heartbeat: every journal append names the lease's fencing token, so a
//! holder that lost the lease cannot write another step whatever its timers believe.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
        let lease = loop {
            match store.acquire_lease(tenant, session, holder, ttl).await {
                Ok(lease) => break lease,
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
        let heartbeat = tokio::spawn(heartbeat(
            store.clone(),
            tenant.to_string(),
            lease.clone(),
            ttl,
            lost.clone(),
        ));
        Ok(HeldLease {
            store,
            tenant: tenant.to_string(),
            lease,
            ttl,
            lost,
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
        match self
            .store
            .renew_lease(&self.tenant, &self.lease, self.ttl)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(e, StoreError::Fenced { .. }) {
                    self.lost.store(true, Ordering::Release);
                }
                Err(e)
            }
        }
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
) {
    let beat = ttl / 3;
    loop {
        tokio::time::sleep(beat).await;
        match store.renew_lease(&tenant, &lease, ttl).await {
            Ok(_) => {}
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
