//! Model quotas: calls and tokens per minute and per day, for each agent and each plugin, kept
//! in the state store so that they survive restarts and every process on the store shares them.
//!
//! Windows are fixed: a minute starts on the minute and a day at 00:00 UTC, so "resets at" is
//! exact. A call **reserves** before it goes out: one call, and its reserved tokens (the output
//! limit plus an estimate of the prompt), checked against every quota that applies and held in
//! one atomic step of the store ([`crate::state::QuotaStore`]), so two calls can never both take
//! the last tokens, from one process or several. When the backend answers, the reservation is
//! **settled** to the actual usage; when it fails, or the caller goes away, the reservation is
//! **released**. A reservation left behind by a process that died before its request went out
//! **expires** after [`RESERVATION_TTL_MS`]; once a request may have gone out it is recorded as
//! spent (before the request is sent) and counts at the reserved amount until its window ends.

use std::sync::Arc;

use crate::config::{ModelQuota, WardenConfig};
pub use crate::state::WindowUsage;
use crate::state::{
    QuotaCheck, QuotaStore, QuotaWindowKey, ReserveOutcome, StateStore, StoreError,
};

/// How long an unsettled reservation whose request never went out keeps counting: long past
/// the moment a live call marks it spent (just before its request is sent), short enough that a
/// crashed process's holds come back soon.
pub const RESERVATION_TTL_MS: u64 = 5 * 60_000;
const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

/// A quota window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// A minute, from :00.
    Minute,
    /// A day, from 00:00 UTC.
    Day,
}

impl Window {
    /// `minute` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Day => "day",
        }
    }

    fn length_ms(self) -> u64 {
        match self {
            Window::Minute => MINUTE_MS,
            Window::Day => DAY_MS,
        }
    }

    /// The start of the window that contains `now_ms`.
    pub fn start(self, now_ms: u64) -> u64 {
        now_ms - now_ms % self.length_ms()
    }
}

/// Whose quota: an agent's or a plugin's, with its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaScope {
    /// The key in the store: `agent:NAME` or `plugin:NAME`.
    pub key: String,
    /// In words: agent `NAME`.
    pub label: String,
    /// Where the limits are configured, for messages.
    pub config_key: String,
    /// The limits.
    pub limits: ModelQuota,
}

impl QuotaScope {
    /// The quota of agent `agent`, if the config gives it one.
    pub fn agent(config: &WardenConfig, agent: &str) -> Option<QuotaScope> {
        let limits = &config.agents.get(agent)?.limits;
        let mut quota = limits.quota.unwrap_or_default();
        quota.tokens_per_day = quota.tokens_per_day.or(limits.tokens_per_day);
        let config_key = if limits.quota.is_some() {
            format!("agents.{agent}.limits.quota")
        } else {
            format!("agents.{agent}.limits")
        };
        Self::limited(
            format!("agent:{agent}"),
            format!("agent `{agent}`"),
            config_key,
            quota,
        )
    }

    /// The quota of plugin `plugin`, if the config gives it one.
    pub fn plugin(config: &WardenConfig, plugin: &str) -> Option<QuotaScope> {
        let quota = config.plugins.get(plugin)?.quota?;
        Self::limited(
            format!("plugin:{plugin}"),
            format!("plugin `{plugin}`"),
            format!("plugins.{plugin}.quota"),
            quota,
        )
    }

    fn limited(key: String, label: String, config_key: String, limits: ModelQuota) -> Option<Self> {
        let any = limits.calls_per_minute.is_some()
            || limits.tokens_per_minute.is_some()
            || limits.calls_per_day.is_some()
            || limits.tokens_per_day.is_some();
        any.then_some(QuotaScope {
            key,
            label,
            config_key,
            limits,
        })
    }

    fn windows(&self) -> impl Iterator<Item = (Window, Option<u64>, Option<u64>)> + '_ {
        let l = &self.limits;
        [
            (Window::Minute, l.calls_per_minute, l.tokens_per_minute),
            (Window::Day, l.calls_per_day, l.tokens_per_day),
        ]
        .into_iter()
        .filter(|(_, calls, tokens)| calls.is_some() || tokens.is_some())
    }
}

/// A quota that would be exceeded, and when the last of the exceeded ones resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// Every quota the call would exceed, in words, with the key that sets it.
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub resets_at_ms: u64,
}

/// Why a reservation could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveError {
    /// A quota would be exceeded.
    Exceeded(QuotaExceeded),
    /// The state store failed.
    Store(StoreError),
}

/// The usage counters in the state store.
#[derive(Clone)]
pub struct QuotaLedger {
    store: Arc<dyn QuotaStore>,
    ttl_ms: u64,
}

impl QuotaLedger {
    /// The ledger in `store` (whose migrations created its tables).
    pub fn open(store: &StateStore) -> QuotaLedger {
        QuotaLedger {
            store: store.quotas(),
            ttl_ms: RESERVATION_TTL_MS,
        }
    }

    /// The same ledger with unsent reservations expiring after `ttl_ms` instead.
    pub fn with_reservation_ttl(mut self, ttl_ms: u64) -> QuotaLedger {
        self.ttl_ms = ttl_ms;
        self
    }

    /// Reserves one call and `tokens` in every window of every scope, or nothing at all.
    /// The reservation is released when dropped, unless settled first.
    pub async fn reserve(
        &self,
        scopes: &[QuotaScope],
        tokens: u64,
        now_ms: u64,
    ) -> Result<Reservation, ReserveError> {
        let mut checks = Vec::new();
        let mut labels = Vec::new();
        for scope in scopes {
            for (window, call_limit, token_limit) in scope.windows() {
                checks.push(QuotaCheck {
                    key: QuotaWindowKey {
                        scope: scope.key.clone(),
                        window: window.as_str(),
                        start_ms: window.start(now_ms),
                    },
                    call_limit,
                    token_limit,
                });
                labels.push((scope, window));
            }
        }
        let outcome = self
            .store
            .reserve(&checks, tokens, now_ms, now_ms + self.ttl_ms)
            .await
            .map_err(ReserveError::Store)?;
        let usages = match outcome {
            ReserveOutcome::Reserved(id) => {
                return Ok(Reservation {
                    ledger: self.clone(),
                    id,
                    tokens,
                    open: true,
                    spent: false,
                });
            }
            ReserveOutcome::Refused(usages) => usages,
        };
        let mut exceeded = Vec::new();
        let mut resets_at_ms = 0;
        for ((check, (scope, window)), used) in checks.iter().zip(&labels).zip(&usages) {
            let resets = check.key.start_ms + window.length_ms();
            let per = window.as_str();
            let mut over = |what: String| {
                exceeded.push(what);
                resets_at_ms = resets_at_ms.max(resets);
            };
            if let Some(limit) = check.call_limit
                && used.calls + 1 > limit
            {
                over(format!(
                    "{} has made {} of its {limit} model calls per {per} ({}.calls_per_{per})",
                    scope.label, used.calls, scope.config_key
                ));
            }
            if let Some(limit) = check.token_limit
                && used.tokens + tokens > limit
            {
                over(format!(
                    "{} has used {} of its {limit} model tokens per {per} and this call reserves {tokens} \
                     (its max-tokens plus the prompt) ({}.tokens_per_{per})",
                    scope.label, used.tokens, scope.config_key
                ));
            }
        }
        Err(ReserveError::Exceeded(QuotaExceeded {
            message: exceeded.join("; "),
            resets_at_ms,
        }))
    }

    /// What `scope` has used in the `window` that contains `now_ms`: settled and spent calls,
    /// and the reservations still held.
    pub async fn usage(
        &self,
        scope: &str,
        window: Window,
        now_ms: u64,
    ) -> Result<WindowUsage, StoreError> {
        let key = QuotaWindowKey {
            scope: scope.to_string(),
            window: window.as_str(),
            start_ms: window.start(now_ms),
        };
        self.store.usage(&key, now_ms).await
    }
}

/// Calls and tokens held for one model call. Settle it with the actual usage. Unsettled, it
/// gives everything back only if no request went out: once one may have reached a provider
/// (see [`Reservation::mark_spent`]), the call counts at the reserved amount, even when the
/// caller stopped waiting, because the provider may serve and bill it all the same.
pub struct Reservation {
    ledger: QuotaLedger,
    id: i64,
    tokens: u64,
    open: bool,
    spent: bool,
}

impl Reservation {
    /// The tokens reserved.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Replaces the reserved tokens with `actual` ones; the call stays counted.
    pub async fn settle(mut self, actual: u64) {
        self.open = false;
        if let Err(e) = self.ledger.store.settle(self.id, actual).await {
            tracing::error!("cannot settle the model quota in the state store: {e}");
        }
    }

    /// Records whether a request may have gone out to a provider; called before each attempt
    /// is sent, and it returns only once that is durable, so a process that dies mid-request
    /// leaves the call counted. An error means the request must not be sent.
    pub async fn mark_spent(&mut self, spent: bool) -> Result<(), StoreError> {
        // Set first: if the caller stops waiting mid-write, Drop must not give back a call
        // whose request may still go out.
        self.spent = spent;
        let expires = crate::state::now_ms() + self.ledger.ttl_ms;
        self.ledger.store.mark_spent(self.id, spent, expires).await
    }

    /// Ends a call that got no answer: it keeps counting at the reserved amount if a request
    /// went out, and is given back otherwise.
    pub async fn finish_unanswered(mut self) {
        if std::mem::take(&mut self.open)
            && let Err(e) = self.ledger.store.release(self.id).await
        {
            tracing::error!("cannot give back a model quota reservation: {e}");
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // The store keeps a spent reservation counted; an unspent one is given back.
        if std::mem::take(&mut self.open) {
            self.ledger.store.release_detached(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateUrl;

    const NOON: u64 = 1_750_000_000_000 - 1_750_000_000_000 % DAY_MS + DAY_MS / 2;

    fn ledger(dir: &tempfile::TempDir) -> QuotaLedger {
        let store = StateStore::open_blocking(&StateUrl::Sqlite(dir.path().join("s.db"))).unwrap();
        QuotaLedger::open(&store)
    }

    fn scope(limits: ModelQuota) -> QuotaScope {
        QuotaScope {
            key: "agent:a".into(),
            label: "agent `a`".into(),
            config_key: "agents.a.limits.quota".into(),
            limits,
        }
    }

    #[tokio::test]
    async fn calls_past_the_limit_are_refused_until_the_window_resets() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let s = [scope(ModelQuota {
            calls_per_minute: Some(2),
            ..ModelQuota::default()
        })];
        let a = ledger.reserve(&s, 10, NOON + 1_000).await.unwrap();
        let b = ledger.reserve(&s, 10, NOON + 2_000).await.unwrap();
        let Err(ReserveError::Exceeded(e)) = ledger.reserve(&s, 10, NOON + 3_000).await else {
            panic!("the third call was allowed");
        };
        assert_eq!(e.resets_at_ms, NOON + MINUTE_MS);
        assert!(
            e.message.contains("2 of its 2 model calls per minute")
                && e.message.contains("agents.a.limits.quota.calls_per_minute"),
            "{}",
            e.message
        );
        a.settle(5).await;
        b.settle(5).await;
        ledger
            .reserve(&s, 10, NOON + MINUTE_MS)
            .await
            .unwrap()
            .settle(1)
            .await;
    }

    #[tokio::test]
    async fn settling_replaces_the_reservation_with_the_actual_usage() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let s = [scope(ModelQuota {
            tokens_per_day: Some(100),
            ..ModelQuota::default()
        })];
        let r = ledger.reserve(&s, 80, NOON).await.unwrap();
        assert!(ledger.reserve(&s, 30, NOON).await.is_err());
        r.settle(20).await;
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).await.unwrap(),
            WindowUsage {
                calls: 1,
                tokens: 20
            }
        );
        ledger.reserve(&s, 30, NOON).await.unwrap().settle(30).await;
    }

    #[tokio::test]
    async fn a_dropped_reservation_gives_everything_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let s = [scope(ModelQuota {
            calls_per_day: Some(1),
            tokens_per_day: Some(100),
            ..ModelQuota::default()
        })];
        drop(ledger.reserve(&s, 100, NOON).await.unwrap());
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).await.unwrap(),
            WindowUsage::default()
        );
        ledger
            .reserve(&s, 100, NOON)
            .await
            .unwrap()
            .finish_unanswered()
            .await;
        ledger
            .reserve(&s, 100, NOON)
            .await
            .unwrap()
            .settle(100)
            .await;
    }

    #[tokio::test]
    async fn a_reservation_whose_request_went_out_is_never_refunded() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let s = [scope(ModelQuota {
            calls_per_day: Some(5),
            tokens_per_day: Some(1000),
            ..ModelQuota::default()
        })];
        let counted = |calls, tokens| WindowUsage { calls, tokens };
        // Dropped mid-request, as when the plugin's call runs out of time.
        let mut dropped = ledger.reserve(&s, 100, NOON).await.unwrap();
        dropped.mark_spent(true).await.unwrap();
        drop(dropped);
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).await.unwrap(),
            counted(1, 100)
        );
        // Ended without an answer after a request went out.
        let mut failed = ledger.reserve(&s, 50, NOON).await.unwrap();
        failed.mark_spent(true).await.unwrap();
        failed.finish_unanswered().await;
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).await.unwrap(),
            counted(2, 150)
        );
        // Nothing went out (the backend could not be reached): given back.
        let mut unreached = ledger.reserve(&s, 70, NOON).await.unwrap();
        unreached.mark_spent(true).await.unwrap();
        unreached.mark_spent(false).await.unwrap();
        unreached.finish_unanswered().await;
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).await.unwrap(),
            counted(2, 150)
        );
    }

    #[tokio::test]
    async fn nothing_is_counted_when_one_scope_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let agent = scope(ModelQuota {
            calls_per_day: Some(10),
            ..ModelQuota::default()
        });
        let plugin = QuotaScope {
            key: "plugin:p".into(),
            label: "plugin `p`".into(),
            config_key: "plugins.p.quota".into(),
            limits: ModelQuota {
                tokens_per_minute: Some(5),
                ..ModelQuota::default()
            },
        };
        let err = ledger
            .reserve(&[agent, plugin], 6, NOON)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ReserveError::Exceeded(e) if e.message.contains("plugins.p.quota.tokens_per_minute"))
        );
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).await.unwrap(),
            WindowUsage::default()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_connections_to_one_file_never_overspend() {
        let dir = tempfile::tempdir().unwrap();
        let ledgers: Vec<QuotaLedger> = (0..4).map(|_| ledger(&dir)).collect();
        let s = scope(ModelQuota {
            calls_per_day: Some(25),
            ..ModelQuota::default()
        });
        let tasks: Vec<_> = ledgers
            .into_iter()
            .map(|l| {
                let s = [s.clone()];
                tokio::spawn(async move {
                    let mut granted = 0;
                    for _ in 0..20 {
                        if let Ok(r) = l.reserve(&s, 1, NOON).await {
                            r.settle(1).await;
                            granted += 1;
                        }
                    }
                    granted
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            granted += t.await.unwrap();
        }
        assert_eq!(granted, 25);
    }

    #[tokio::test]
    async fn an_abandoned_reservation_stops_counting_after_its_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let s = [scope(ModelQuota {
            calls_per_day: Some(1),
            ..ModelQuota::default()
        })];
        // A process that dies between reserving and sending never releases: forget skips it.
        std::mem::forget(ledger.reserve(&s, 10, NOON).await.unwrap());
        assert!(ledger.reserve(&s, 10, NOON + 1_000).await.is_err());
        assert!(
            ledger
                .reserve(&s, 10, NOON + RESERVATION_TTL_MS - 1)
                .await
                .is_err(),
            "it counts until its TTL"
        );
        ledger
            .reserve(&s, 10, NOON + RESERVATION_TTL_MS)
            .await
            .unwrap()
            .settle(10)
            .await;
    }
}
