//! The rescuer: every `[state] rescue_interval_ms`, `warden serve` asks the store for sessions
//! left `running` with no live lease (their host died, or drained and handed them over) and
//! resumes them from their journals. Several hosts may race for one session; the lease decides,
//! and the losers skip it. Correctness rests on the fencing token, not on this timer: a host
//! that only seemed dead finds its writes refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ApiState;
use super::tasks::{Work, launch};
use crate::error::ErrorKind;
use crate::state::sessions::SessionId;

/// How many abandoned sessions one scan takes on.
const SCAN_LIMIT: u32 = 200;
/// The first pause before a session that could not be resumed is tried again; it doubles up
/// to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest pause between two tries of one session.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Sessions this host failed to resume, or resumed lately, and when to try each again.
#[derive(Default)]
struct Backoff {
    next: HashMap<SessionId, Try>,
}

/// The next try of one session.
struct Try {
    at: Instant,
    pause: Duration,
    /// Whether a failure to resume it was reported already.
    reported: bool,
}

impl Backoff {
    fn due(&self, session: SessionId, now: Instant) -> bool {
        self.next.get(&session).is_none_or(|t| now >= t.at)
    }

    /// Forgets sessions whose last try is long past, so one that behaved for a while starts
    /// again from the first pause.
    fn prune(&mut self, now: Instant) {
        self.next
            .retain(|_, t| now.saturating_duration_since(t.at) < MAX_BACKOFF);
    }

    /// Puts the session's next try off, twice as long as the last time.
    fn put_off(&mut self, session: SessionId, now: Instant) -> &mut Try {
        let pause = self
            .next
            .get(&session)
            .map_or(FIRST_BACKOFF, |t| (t.pause * 2).min(MAX_BACKOFF));
        let reported = self.next.get(&session).is_some_and(|t| t.reported);
        self.next.insert(
            session,
            Try {
                at: now + pause,
                pause,
                reported,
            },
        );
        self.next.get_mut(&session).expect("just inserted")
    }

    /// Records a failure to resume; returns whether it is the first reported for this session.
    fn failed(&mut self, session: SessionId, now: Instant) -> bool {
        let t = self.put_off(session, now);
        !std::mem::replace(&mut t.reported, true)
    }

    /// Records a resume: a task that keeps stopping for the store's sake must not be resumed at
    /// every scan. The first take-over is at once; the next waits.
    fn resumed(&mut self, session: SessionId, now: Instant) {
        self.put_off(session, now);
    }
}

/// Starts the rescuer in the background; it stops when the host drains.
pub fn spawn_rescuer(state: Arc<ApiState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let backoff = Arc::new(std::sync::Mutex::new(Backoff::default()));
        loop {
            let interval = state
                .host
                .generation()
                .config()
                .map(|c| c.state.rescue_interval())
                .unwrap_or(Duration::from_secs(2));
            tokio::time::sleep(interval).await;
            if state.runner.is_draining() {
                return;
            }
            scan(&state, &backoff).await;
        }
    })
}

/// One scan: resumes each abandoned session of a tenant this host serves.
async fn scan(state: &Arc<ApiState>, backoff: &Arc<std::sync::Mutex<Backoff>>) {
    let Ok(store) = state.store() else {
        return;
    };
    let generation = state.host.generation();
    let Some(config) = generation.config() else {
        return;
    };
    let orphans = match store.orphaned_sessions(SCAN_LIMIT).await {
        Ok(orphans) => orphans,
        Err(e) => {
            tracing::warn!("looking for abandoned tasks: {e}");
            return;
        }
    };
    let now = Instant::now();
    lock(backoff).prune(now);
    for orphan in orphans {
        // A tenant another host's config has and this one's lacks is that host's to resume.
        if !config.tenants.contains_key(&orphan.tenant) || !lock(backoff).due(orphan.session, now) {
            continue;
        }
        let work = Work::Resume {
            tenant: orphan.tenant.clone(),
            session: orphan.session,
            wait: false,
        };
        let state = state.clone();
        let backoff = backoff.clone();
        let id = orphan.session;
        tokio::spawn(async move {
            match launch(&state, work).await {
                Ok((task, _)) => {
                    lock(&backoff).resumed(id, Instant::now());
                    eprintln!("resuming task {task} of session {id}");
                }
                // Another host (or this one) got there first.
                Err(e) if e.kind() == ErrorKind::Busy => {}
                Err(e) => {
                    if lock(&backoff).failed(id, Instant::now()) {
                        eprintln!("could not resume session {id}: {e}");
                    }
                }
            }
        });
    }
}

fn lock(m: &std::sync::Mutex<Backoff>) -> std::sync::MutexGuard<'_, Backoff> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_session_is_retried_later_and_later_and_said_once() {
        let mut b = Backoff::default();
        let s = SessionId::new();
        let t0 = Instant::now();
        assert!(b.due(s, t0));
        assert!(b.failed(s, t0));
        assert!(!b.due(s, t0 + FIRST_BACKOFF / 2));
        assert!(b.due(s, t0 + FIRST_BACKOFF));
        assert!(!b.failed(s, t0 + FIRST_BACKOFF));
        assert_eq!(b.next[&s].pause, FIRST_BACKOFF * 2);
        for _ in 0..20 {
            b.failed(s, t0);
        }
        assert_eq!(b.next[&s].pause, MAX_BACKOFF);
        assert!(b.due(SessionId::new(), t0));
    }

    #[test]
    fn a_resumed_session_waits_before_the_next_resume_and_its_failure_is_still_said() {
        let mut b = Backoff::default();
        let s = SessionId::new();
        let t0 = Instant::now();
        b.resumed(s, t0);
        assert!(!b.due(s, t0 + FIRST_BACKOFF / 2));
        assert!(b.due(s, t0 + FIRST_BACKOFF));
        assert!(b.failed(s, t0 + FIRST_BACKOFF));
        // Long after, it is forgotten and starts over.
        let later = t0 + FIRST_BACKOFF * 3 + MAX_BACKOFF * 2;
        b.prune(later);
        assert!(b.next.is_empty());
    }
}
