//! Model quotas: calls and tokens per minute and per day, for each agent and each plugin, kept
//! in the state store so that they survive restarts and every process on the store shares them.
//!
//! Windows are fixed: a minute starts on the minute and a day at 00:00 UTC, so "resets at" is
//! exact. A call **reserves** before it goes out: one call, and its reserved tokens (the output
//! limit plus an estimate of the prompt), checked against every quota that applies and added in
//! one `BEGIN IMMEDIATE` transaction. SQLite lets one such transaction write at a time, across
//! threads and processes alike, so two calls can never both take the last tokens. When the
//! backend answers, the reservation is **settled** to the actual usage; when it fails, or the
//! caller goes away, the reservation is **released**. A process that dies mid-call leaves its
//! reservation counted until the window ends: it errs on the side of the quota.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::config::{ModelQuota, WardenConfig};
use crate::state::StateStore;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS model_quota_usage (
    scope           TEXT NOT NULL,
    window          TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    calls           INTEGER NOT NULL,
    tokens          INTEGER NOT NULL,
    PRIMARY KEY (scope, window, window_start_ms)
) WITHOUT ROWID;
";

/// Windows older than this are deleted as new reservations are made.
const KEEP_MS: u64 = 2 * DAY_MS;
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
    Store(String),
}

/// One row a reservation counts in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    scope: String,
    window: Window,
    start_ms: u64,
}

/// Calls and tokens counted in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowUsage {
    /// Calls.
    pub calls: u64,
    /// Tokens.
    pub tokens: u64,
}

/// The usage counters in the state store.
#[derive(Clone)]
pub struct QuotaLedger {
    store: StateStore,
}

impl QuotaLedger {
    /// Opens the ledger, creating its table on first use.
    pub fn open(store: StateStore) -> Result<QuotaLedger, String> {
        store
            .with_conn(|c| c.execute_batch(SCHEMA))
            .map_err(|e| format!("cannot create the quota ledger: {e}"))?;
        Ok(QuotaLedger { store })
    }

    /// Reserves one call and `tokens` in every window of every scope, or nothing at all.
    /// The reservation is released when dropped, unless settled first.
    pub fn reserve(
        &self,
        scopes: &[QuotaScope],
        tokens: u64,
        now_ms: u64,
    ) -> Result<Reservation, ReserveError> {
        let mut counted = Vec::new();
        let mut exceeded: Vec<String> = Vec::new();
        let mut resets_at_ms = 0;
        let result = self.store.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for scope in scopes {
                for (window, call_limit, token_limit) in scope.windows() {
                    let start = window.start(now_ms);
                    let used = read_usage(&tx, &scope.key, window, start)?;
                    let resets = start + window.length_ms();
                    let per = window.as_str();
                    let mut over = |what: String| {
                        exceeded.push(what);
                        resets_at_ms = resets_at_ms.max(resets);
                    };
                    if let Some(limit) = call_limit
                        && used.calls + 1 > limit
                    {
                        over(format!(
                            "{} has made {} of its {limit} model calls per {per} ({}.calls_per_{per})",
                            scope.label, used.calls, scope.config_key
                        ));
                    }
                    if let Some(limit) = token_limit
                        && used.tokens + tokens > limit
                    {
                        over(format!(
                            "{} has used {} of its {limit} model tokens per {per} and this call reserves {tokens} \
                             (its max-tokens plus the prompt) ({}.tokens_per_{per})",
                            scope.label, used.tokens, scope.config_key
                        ));
                    }
                    counted.push(Counted {
                        scope: scope.key.clone(),
                        window,
                        start_ms: start,
                    });
                }
            }
            if !exceeded.is_empty() {
                return Ok(false); // dropping the transaction rolls it back
            }
            for c in &counted {
                tx.execute(
                    "INSERT INTO model_quota_usage (scope, window, window_start_ms, calls, tokens) \
                     VALUES (?1, ?2, ?3, 1, ?4) \
                     ON CONFLICT (scope, window, window_start_ms) \
                     DO UPDATE SET calls = calls + 1, tokens = tokens + excluded.tokens",
                    params![c.scope, c.window.as_str(), c.start_ms as i64, tokens as i64],
                )?;
            }
            tx.execute(
                "DELETE FROM model_quota_usage WHERE window_start_ms < ?1",
                [now_ms.saturating_sub(KEEP_MS) as i64],
            )?;
            tx.commit()?;
            Ok(true)
        });
        match result {
            Ok(true) => Ok(Reservation {
                ledger: self.clone(),
                counted,
                tokens,
                open: true,
                spent: false,
            }),
            Ok(false) => Err(ReserveError::Exceeded(QuotaExceeded {
                message: exceeded.join("; "),
                resets_at_ms,
            })),
            Err(e) => Err(ReserveError::Store(format!(
                "cannot reserve the model quota in the state store: {e}"
            ))),
        }
    }

    /// What `scope` has used in the `window` that contains `now_ms`.
    pub fn usage(&self, scope: &str, window: Window, now_ms: u64) -> Result<WindowUsage, String> {
        self.store
            .with_conn(|conn| read_usage(conn, scope, window, window.start(now_ms)))
            .map_err(|e| format!("cannot read the quota ledger: {e}"))
    }

    /// Adds `calls` and `tokens` (either may be negative) to every row of a reservation.
    fn adjust(&self, counted: &[Counted], calls: i64, tokens: i64) -> Result<(), String> {
        if counted.is_empty() || (calls == 0 && tokens == 0) {
            return Ok(());
        }
        self.store
            .with_conn(|conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                for c in counted {
                    tx.execute(
                        "UPDATE model_quota_usage SET calls = MAX(0, calls + ?1), tokens = MAX(0, tokens + ?2) \
                         WHERE scope = ?3 AND window = ?4 AND window_start_ms = ?5",
                        params![calls, tokens, c.scope, c.window.as_str(), c.start_ms as i64],
                    )?;
                }
                tx.commit()
            })
            .map_err(|e| format!("cannot settle the model quota in the state store: {e}"))
    }
}

fn read_usage(
    conn: &rusqlite::Connection,
    scope: &str,
    window: Window,
    start_ms: u64,
) -> rusqlite::Result<WindowUsage> {
    let row: Option<(i64, i64)> = conn
        .query_row(
            "SELECT calls, tokens FROM model_quota_usage WHERE scope = ?1 AND window = ?2 AND window_start_ms = ?3",
            params![scope, window.as_str(), start_ms as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (calls, tokens) = row.unwrap_or_default();
    Ok(WindowUsage {
        calls: calls.max(0) as u64,
        tokens: tokens.max(0) as u64,
    })
}

/// Calls and tokens held for one model call. Settle it with the actual usage. Unsettled, it
/// gives everything back only if no request went out: once one may have reached a provider
/// (see [`Reservation::mark_spent`]), the call counts at the reserved amount, even when the
/// caller stopped waiting, because the provider may serve and bill it all the same.
pub struct Reservation {
    ledger: QuotaLedger,
    counted: Vec<Counted>,
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
    pub fn settle(mut self, actual: u64) {
        self.open = false;
        let delta = actual as i64 - self.tokens as i64;
        if let Err(e) = self.ledger.adjust(&self.counted, 0, delta) {
            tracing::error!("{e}");
        }
    }

    /// Whether a request may have gone out to a provider; set before each attempt is sent.
    pub fn mark_spent(&mut self, spent: bool) {
        self.spent = spent;
    }

    /// Ends a call that got no answer: it keeps counting at the reserved amount if a request
    /// went out, and is given back otherwise.
    pub fn finish_unanswered(mut self) {
        self.give_back();
    }

    /// Gives the call and its tokens back, unless a request went out.
    fn give_back(&mut self) {
        if !std::mem::take(&mut self.open) || self.spent {
            return;
        }
        if let Err(e) = self.ledger.adjust(&self.counted, -1, -(self.tokens as i64)) {
            tracing::error!("{e}");
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateUrl;

    const NOON: u64 = 1_750_000_000_000 - 1_750_000_000_000 % DAY_MS + DAY_MS / 2;

    fn ledger(dir: &tempfile::TempDir) -> QuotaLedger {
        let store = StateStore::open(&StateUrl::Sqlite(dir.path().join("s.db"))).unwrap();
        QuotaLedger::open(store).unwrap()
    }

    fn scope(limits: ModelQuota) -> QuotaScope {
        QuotaScope {
            key: "agent:a".into(),
            label: "agent `a`".into(),
            config_key: "agents.a.limits.quota".into(),
            limits,
        }
    }

    #[test]
    fn calls_past_the_limit_are_refused_until_the_window_resets() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let s = [scope(ModelQuota {
            calls_per_minute: Some(2),
            ..ModelQuota::default()
        })];
        let a = ledger.reserve(&s, 10, NOON + 1_000).unwrap();
        let b = ledger.reserve(&s, 10, NOON + 2_000).unwrap();
        let Err(ReserveError::Exceeded(e)) = ledger.reserve(&s, 10, NOON + 3_000) else {
            panic!("the third call was allowed");
        };
        assert_eq!(e.resets_at_ms, NOON + MINUTE_MS);
        assert!(
            e.message.contains("2 of its 2 model calls per minute")
                && e.message.contains("agents.a.limits.quota.calls_per_minute"),
            "{}",
            e.message
        );
        a.settle(5);
        b.settle(5);
        ledger.reserve(&s, 10, NOON + MINUTE_MS).unwrap().settle(1);
    }

    #[test]
    fn settling_replaces_the_reservation_with_the_actual_usage() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let s = [scope(ModelQuota {
            tokens_per_day: Some(100),
            ..ModelQuota::default()
        })];
        let r = ledger.reserve(&s, 80, NOON).unwrap();
        assert!(ledger.reserve(&s, 30, NOON).is_err());
        r.settle(20);
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).unwrap(),
            WindowUsage {
                calls: 1,
                tokens: 20
            }
        );
        ledger.reserve(&s, 30, NOON).unwrap().settle(30);
    }

    #[test]
    fn a_dropped_reservation_gives_everything_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let s = [scope(ModelQuota {
            calls_per_day: Some(1),
            tokens_per_day: Some(100),
            ..ModelQuota::default()
        })];
        drop(ledger.reserve(&s, 100, NOON).unwrap());
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).unwrap(),
            WindowUsage::default()
        );
        ledger.reserve(&s, 100, NOON).unwrap().finish_unanswered();
        ledger.reserve(&s, 100, NOON).unwrap().settle(100);
    }

    #[test]
    fn a_reservation_whose_request_went_out_is_never_refunded() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let s = [scope(ModelQuota {
            calls_per_day: Some(5),
            tokens_per_day: Some(1000),
            ..ModelQuota::default()
        })];
        let counted = |calls, tokens| WindowUsage { calls, tokens };
        // Dropped mid-request, as when the plugin's call runs out of time.
        let mut dropped = ledger.reserve(&s, 100, NOON).unwrap();
        dropped.mark_spent(true);
        drop(dropped);
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).unwrap(),
            counted(1, 100)
        );
        // Ended without an answer after a request went out.
        let mut failed = ledger.reserve(&s, 50, NOON).unwrap();
        failed.mark_spent(true);
        failed.finish_unanswered();
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).unwrap(),
            counted(2, 150)
        );
        // Nothing went out (the backend could not be reached): given back.
        let mut unreached = ledger.reserve(&s, 70, NOON).unwrap();
        unreached.mark_spent(true);
        unreached.mark_spent(false);
        unreached.finish_unanswered();
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).unwrap(),
            counted(2, 150)
        );
    }

    #[test]
    fn nothing_is_counted_when_one_scope_refuses() {
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
        let err = ledger.reserve(&[agent, plugin], 6, NOON).err().unwrap();
        assert!(
            matches!(err, ReserveError::Exceeded(e) if e.message.contains("plugins.p.quota.tokens_per_minute"))
        );
        assert_eq!(
            ledger.usage("agent:a", Window::Day, NOON).unwrap(),
            WindowUsage::default()
        );
    }

    #[test]
    fn two_connections_to_one_file_never_overspend() {
        let dir = tempfile::tempdir().unwrap();
        let ledgers: Vec<QuotaLedger> = (0..4).map(|_| ledger(&dir)).collect();
        let s = scope(ModelQuota {
            calls_per_day: Some(25),
            ..ModelQuota::default()
        });
        let granted: usize = std::thread::scope(|t| {
            let handles: Vec<_> = ledgers
                .iter()
                .map(|l| {
                    let s = [s.clone()];
                    t.spawn(move || {
                        (0..20)
                            .filter(|_| match l.reserve(&s, 1, NOON) {
                                Ok(r) => {
                                    r.settle(1);
                                    true
                                }
                                Err(_) => false,
                            })
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 25);
    }
}
