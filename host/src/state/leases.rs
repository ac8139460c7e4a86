//! Session leases: at most one live holder per session, across every host that shares the
//! store. Each grant bumps the session's fencing token, and every journal append names the token
//! it holds, so a holder whose lease was taken over cannot write one more step (Restate's leader
//! epochs; the lesson of golem#2351).

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use super::sessions::SessionId;

/// The shortest lease the store grants. Shorter ones would expire between two steps of a healthy
/// loop and hand the session to another host mid-step.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(10);

/// The longest lease the store grants. A host that dies holding a longer one would block its
/// sessions for that long; live holders renew instead.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);

/// The longest holder id, in bytes (a host name and a task id fit easily).
pub const MAX_HOLDER_BYTES: usize = 256;

/// A fencing token: grows by one with every grant of a session's lease, never goes back, and
/// survives release, so a stale holder's token is always smaller than the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub u64);

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The session it is for.
    pub session: SessionId,
    /// Who holds it (a host and task, say).
    pub holder: String,
    /// The token to pass with every journal append while holding it.
    pub token: FencingToken,
    /// When it lapses unless renewed, in milliseconds since the Unix epoch (the store's clock).
    pub expires_at_ms: u64,
}

/// Session leases. Times come from the store's clock (the database server's, for PostgreSQL), so
/// hosts with skewed clocks still agree on who holds a session.
#[async_trait]
pub trait SessionLeases: Send + Sync {
    /// Grants `holder` the session's lease for `ttl` with a new, larger token. Refused with
    /// [`StoreError::Busy`] (naming the holder and when its lease lapses) while another holder's
    /// lease is live. The same holder acquiring again gets a new token, which fences its own
    /// earlier incarnation (a restarted host reusing its name).
    async fn acquire_lease(
        &self,
        tenant: &str,
        session: SessionId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// Extends a held lease by `ttl` from now, keeping its token. Refused with
    /// [`StoreError::Fenced`] when the lease was taken over or released since; a lease that
    /// lapsed but that nobody took over can still be renewed.
    async fn renew_lease(
        &self,
        tenant: &str,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// Gives the lease up so another holder need not wait for it to lapse; returns whether it
    /// was still held with this token (false: it had been taken over or released already).
    async fn release_lease(&self, tenant: &str, lease: &Lease) -> Result<bool, StoreError>;

    /// The session's lease as it stands (possibly lapsed), or `None` if never granted or
    /// released.
    async fn current_lease(
        &self,
        tenant: &str,
        session: SessionId,
    ) -> Result<Option<Lease>, StoreError>;

    /// Sessions of any tenant whose status is `running` while no holder's lease on them is
    /// live (it lapsed, or a draining host released it): tasks that no host is running, for a
    /// rescuer to resume. Least recently updated first, at most `limit` (capped at
    /// [`MAX_ORPHANS`]).
    async fn orphaned_sessions(&self, limit: u32) -> Result<Vec<Orphan>, StoreError>;
}

/// The most sessions one [`SessionLeases::orphaned_sessions`] call returns.
pub const MAX_ORPHANS: u32 = 1000;

/// A session left `running` with no live lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its tenant.
    pub tenant: String,
    /// The session.
    pub session: SessionId,
}

/// Refuses a holder id or TTL the store would not grant, and returns the TTL in milliseconds.
pub(crate) fn check_grant(holder: &str, ttl: Duration) -> Result<u64, StoreError> {
    if holder.is_empty() {
        return Err(StoreError::invalid("the lease holder id is empty"));
    }
    if holder.len() > MAX_HOLDER_BYTES {
        return Err(StoreError::invalid(format!(
            "the lease holder id is {} bytes; the most is {MAX_HOLDER_BYTES}",
            holder.len()
        )));
    }
    if holder.contains('\0') {
        return Err(StoreError::invalid(
            "the lease holder id contains a NUL character",
        ));
    }
    if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&ttl) {
        return Err(StoreError::invalid(format!(
            "a lease lasts from {} ms to {} s; {} ms was asked for",
            MIN_LEASE_TTL.as_millis(),
            MAX_LEASE_TTL.as_secs(),
            ttl.as_millis()
        )));
    }
    Ok(ttl.as_millis() as u64)
}

/// A session's lease row as a backend reads it (inside the transaction that will act on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseRow {
    /// `None` once released.
    pub holder: Option<String>,
    /// The last token granted.
    pub token: u64,
    /// When the grant lapses.
    pub expires_at_ms: u64,
}

impl LeaseRow {
    /// The holder, if the lease is held and has not lapsed at `now_ms`.
    fn live_holder(&self, now_ms: u64) -> Option<&str> {
        self.holder
            .as_deref()
            .filter(|_| self.expires_at_ms > now_ms)
    }
}

/// Decides an acquire: the token to grant, or who holds the session. Tokens only grow, also
/// across release (the row is kept), so a stale holder can never match a newer grant.
pub(crate) fn grant(
    current: Option<&LeaseRow>,
    holder: &str,
    now_ms: u64,
) -> Result<FencingToken, StoreError> {
    let Some(row) = current else {
        return Ok(FencingToken(1));
    };
    if let Some(live) = row.live_holder(now_ms)
        && live != holder
    {
        return Err(StoreError::LeaseHeld {
            holder: live.to_string(),
            until_ms: row.expires_at_ms,
        });
    }
    Ok(FencingToken(row.token + 1))
}

/// Decides a renew or a release: only the holder of the newest grant may, lapsed or not.
pub(crate) fn check_holder(current: Option<&LeaseRow>, lease: &Lease) -> Result<(), StoreError> {
    match current {
        Some(row) if row.token == lease.token.0 && row.holder.as_deref() == Some(&lease.holder) => {
            Ok(())
        }
        _ => Err(StoreError::Fenced {
            token: lease.token.0,
            current: current.filter(|r| r.holder.is_some()).map(|r| r.token),
        }),
    }
}

/// Decides whether a journal write under `token` may land: the token must be the newest grant,
/// still held and not lapsed at `now_ms` (a lapsed holder renews first, so a paused host that
/// wakes up after its lease ran out cannot write blind).
pub(crate) fn check_fence(
    current: Option<&LeaseRow>,
    token: FencingToken,
    now_ms: u64,
) -> Result<(), StoreError> {
    match current {
        Some(row) if row.token == token.0 && row.live_holder(now_ms).is_some() => Ok(()),
        _ => Err(StoreError::Fenced {
            token: token.0,
            current: current.filter(|r| r.holder.is_some()).map(|r| r.token),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(holder: &str, token: u64, expires_at_ms: u64) -> LeaseRow {
        LeaseRow {
            holder: Some(holder.into()),
            token,
            expires_at_ms,
        }
    }

    #[test]
    fn a_live_lease_is_refused_to_another_holder_naming_who_holds_it() {
        let err = grant(Some(&held("host-a", 3, 100)), "host-b", 99).unwrap_err();
        assert_eq!(
            err,
            StoreError::LeaseHeld {
                holder: "host-a".into(),
                until_ms: 100
            }
        );
    }

    #[test]
    fn a_lapsed_or_released_lease_is_taken_over_with_a_larger_token() {
        assert_eq!(grant(None, "b", 5).unwrap(), FencingToken(1));
        assert_eq!(
            grant(Some(&held("a", 3, 100)), "b", 100).unwrap(),
            FencingToken(4)
        );
        let released = LeaseRow {
            holder: None,
            token: 7,
            expires_at_ms: 0,
        };
        assert_eq!(grant(Some(&released), "b", 1).unwrap(), FencingToken(8));
    }

    #[test]
    fn a_write_under_a_stale_or_lapsed_token_is_fenced() {
        let row = held("a", 4, 100);
        assert!(check_fence(Some(&row), FencingToken(4), 99).is_ok());
        assert!(matches!(
            check_fence(Some(&row), FencingToken(3), 99),
            Err(StoreError::Fenced {
                token: 3,
                current: Some(4)
            })
        ));
        assert!(check_fence(Some(&row), FencingToken(4), 100).is_err());
        assert!(check_fence(None, FencingToken(1), 0).is_err());
    }
}
