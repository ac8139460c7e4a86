//! State stores: what the host keeps between calls and across restarts, behind async traits
//! with two backends. SQLite ([`sqlite`]) is the embedded default: one file, WAL, written by one
//! writer thread with group commit. PostgreSQL ([`postgres`]) serves several hosts. Each
//! backend has its own numbered migrations, applied at open; a store written by a newer binary
//! is refused rather than misread.
//!
//! The traits cover the audit log's storage ([`AuditStore`]) and the model quota ledger
//! ([`QuotaStore`]); the hashing of audit records stays in [`crate::policy::audit`] and the
//! quota arithmetic in [`crate::models::quota`].

pub mod agents;
pub mod hosts;
pub mod journal;
pub mod leases;
pub mod memory;
pub mod postgres;
pub mod sessions;
pub mod sqlite;
#[doc(hidden)]
pub mod testing;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::policy::audit::AuditRecord;

/// How long one write waits for another process's lock on the store before it gives up, in
/// milliseconds. A group commit holds the write lock for about one fsync, so this covers a crowd
/// of concurrent writers; a store locked for longer is stuck (or held on purpose), and the
/// capability use is then refused (fail closed). A call makes several audit writes, each of
/// which may wait this long, so the bound stays small next to the default 10 s call limit.
pub const BUSY_TIMEOUT_MS: u64 = 500;

/// What went wrong in a state store, by kind, so callers can branch on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap lost: the entry is now at `current_version`.
    #[error(
        "the entry changed meanwhile: it is now at version {current_version}; read it again and retry"
    )]
    Conflict {
        /// The version the entry has now.
        current_version: i64,
    },
    /// Another writer held the store for longer than [`BUSY_TIMEOUT_MS`].
    #[error(
        "the state store is locked by another connection or process ({0}); wait for it to finish, or find what holds it"
    )]
    Busy(String),
    /// The store cannot be reached or opened.
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    /// The store was migrated by a newer Warden.
    #[error(
        "the state store is at schema version {store}, newer than this binary's {binary}: it was \
         migrated by a newer Warden; run that version (in a rolling upgrade, give this host the \
         new binary), or point [state] url at another store"
    )]
    SchemaTooNew {
        /// The store's schema version.
        store: u32,
        /// The newest version this binary knows.
        binary: u32,
    },
    /// The store refused the write: a constraint or trigger (the audit log is append-only).
    #[error("the state store refused the write: {0}")]
    Refused(String),
    /// No entry has that key.
    #[error("not found: {0}")]
    NotFound(String),
    /// A database error of another kind.
    #[error("state store error: {0}")]
    Database(String),
    /// The store's writer has stopped (the host is shutting down, or it panicked).
    #[error("the state store's writer has stopped; restart Warden")]
    Closed,
    /// The request was malformed or too big; the message says what to change.
    #[error("the state store refused the request: {0}")]
    Invalid(String),
    /// Another holder's lease on the session is live (see [`leases`]).
    #[error(
        "the session is busy: `{holder}` holds its lease until {until_ms} ms since the epoch; \
         wait for its task to finish or for the lease to lapse"
    )]
    LeaseHeld {
        /// Who holds the lease.
        holder: String,
        /// When it lapses unless renewed, in milliseconds since the Unix epoch.
        until_ms: u64,
    },
    /// A write under a fencing token that is no longer the session's live lease: another holder
    /// took the session over, or the lease was released or lapsed (see [`leases`]).
    #[error(
        "fencing token {token} no longer holds the session (another holder took it over, or the \
         lease was released or lapsed); stop, and acquire the lease again before writing"
    )]
    Fenced {
        /// The token the write carried.
        token: u64,
        /// The session's newest token, if its lease is held.
        current: Option<u64>,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Busy(e.to_string())
            }
            Some(ErrorCode::ConstraintViolation) => StoreError::Refused(e.to_string()),
            Some(
                ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(db) = e.as_db_error() else {
            return if e.is_closed() {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Database(e.to_string())
            };
        };
        let code = db.code();
        let message = db.message().to_string();
        if *code == SqlState::RAISE_EXCEPTION
            || code.code().starts_with("23")
            || *code == SqlState::INSUFFICIENT_PRIVILEGE
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        {
            StoreError::Refused(message)
        } else if *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            StoreError::Busy(message)
        } else {
            StoreError::Database(message)
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => match StoreError::from(e) {
                StoreError::Database(m) => StoreError::Unavailable(m),
                other => other,
            },
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// One numbered schema change; migration `version` is applied once, in order, at open.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// 1, 2, 3…: the schema version once applied.
    pub version: u32,
    /// What it does, for messages.
    pub name: &'static str,
    /// The SQL, run in the opening transaction.
    pub sql: &'static str,
}

/// The newest version in `migrations`: the schema this binary writes.
pub fn latest_version(migrations: &[Migration]) -> u32 {
    migrations.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Where state is kept: parsed with the config, whose data it is; opened here.
pub use crate::config::{StateUrl, redact_url};

impl StateUrl {
    /// The state URL of `config`: `[state] url_env`'s variable when set, else `[state] url`.
    pub fn from_config(config: &crate::config::WardenConfig) -> Result<StateUrl, StoreError> {
        match &config.state.url_env {
            Some(var) => {
                let url = std::env::var(var).map_err(|_| {
                    StoreError::Unavailable(format!(
                        "state.url_env names the environment variable {var}, which is not set; \
                         set it to the store's URL (postgres://… or sqlite://PATH)"
                    ))
                })?;
                StateUrl::parse(&url, &config.base_dir).map_err(StoreError::Unavailable)
            }
            None => StateUrl::parse(&config.state.url, &config.base_dir)
                .map_err(StoreError::Unavailable),
        }
    }

    /// The URL for messages, without a password.
    pub fn describe(&self) -> String {
        match self {
            StateUrl::Sqlite(path) => path.display().to_string(),
            StateUrl::Postgres(url) => redact_url(url),
        }
    }
}

/// Computes a record's hash once the store has given it its sequence number and link; supplied
/// by [`crate::policy::audit`], which owns the hashing and the key.
pub type AuditSealer = Arc<dyn Fn(&AuditRecord) -> String + Send + Sync>;

/// Storage for the hash-chained audit log. Appends are serialised across every process on the
/// store, so the log stays one chain.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends `record` after the current head: the store sets `seq` and `prev_hash`, calls
    /// `seal` for the hash, and commits durably before it returns the sequence number.
    async fn append(&self, record: AuditRecord, seal: AuditSealer) -> Result<i64, StoreError>;
    /// Queues an append without waiting for it (for Drop paths); a failure is logged.
    fn append_detached(&self, record: AuditRecord, seal: AuditSealer);
    /// Records with `seq` in `from..=to`, oldest first.
    async fn range(&self, from: i64, to: i64) -> Result<Vec<AuditRecord>, StoreError>;
    /// The last `n` records, oldest first.
    async fn tail(&self, n: usize) -> Result<Vec<AuditRecord>, StoreError>;
    /// The last `n` records of one tenant, oldest first.
    async fn tail_for_tenant(&self, tenant: &str, n: usize)
    -> Result<Vec<AuditRecord>, StoreError>;
}

/// How long settled usage and old reservations are kept: past the longest window (a day).
pub const QUOTA_KEEP_MS: u64 = 2 * 86_400_000;

/// One row a reservation counts in: a scope's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaWindowKey {
    /// `agent:NAME` or `plugin:NAME`.
    pub scope: String,
    /// `minute` or `day`.
    pub window: &'static str,
    /// When the window starts, ms since the epoch.
    pub start_ms: u64,
}

/// A limit to check in one window: `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCheck {
    /// The window.
    pub key: QuotaWindowKey,
    /// Calls allowed in it.
    pub call_limit: Option<u64>,
    /// Tokens allowed in it.
    pub token_limit: Option<u64>,
}

/// Calls and tokens counted in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowUsage {
    /// Calls.
    pub calls: u64,
    /// Tokens.
    pub tokens: u64,
}

/// What [`QuotaStore::reserve`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Reserved: the reservation's id.
    Reserved(i64),
    /// Refused: the usage found in each window (in the order of the checks) at the time.
    Refused(Vec<WindowUsage>),
}

/// Storage for model quotas. A reservation is a row that counts until it is settled, given
/// back, or (unsettled, its request never sent) it expires; settled and spent calls count
/// until their window ends.
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// Atomically across processes: if one call and `tokens` fit every check at `now_ms`, holds
    /// them until `expires_at_ms` and returns the reservation; otherwise changes nothing.
    async fn reserve(
        &self,
        checks: &[QuotaCheck],
        tokens: u64,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<ReserveOutcome, StoreError>;
    /// Marks whether a request of the reservation may have gone out; once spent it counts at
    /// its reserved amount and never expires. `expires_at_ms` renews the hold when unspent.
    async fn mark_spent(&self, id: i64, spent: bool, expires_at_ms: u64) -> Result<(), StoreError>;
    /// Replaces the reservation with the actual usage: one call and `tokens`.
    async fn settle(&self, id: i64, tokens: u64) -> Result<(), StoreError>;
    /// Gives the reservation back, unless it is spent.
    async fn release(&self, id: i64) -> Result<(), StoreError>;
    /// Queues [`QuotaStore::release`] without waiting (for Drop paths); a failure is logged.
    fn release_detached(&self, id: i64);
    /// What is counted in one window at `now_ms`: settled and spent usage plus live holds.
    async fn usage(&self, key: &QuotaWindowKey, now_ms: u64) -> Result<WindowUsage, StoreError>;
}

/// An open state store, shared by every part of the host.
#[derive(Clone)]
pub struct StateStore {
    backend: Backend,
    location: Arc<str>,
}

/// The backend behind a [`StateStore`].
#[derive(Clone)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite(Arc<sqlite::SqliteStore>),
    /// A PostgreSQL database.
    Postgres(Arc<postgres::PgStore>),
}

impl StateStore {
    /// Opens (creating and migrating if needed) the store at `url`.
    pub async fn open(url: &StateUrl) -> Result<StateStore, StoreError> {
        match url {
            StateUrl::Sqlite(path) => Self::open_sqlite(path),
            StateUrl::Postgres(pg) => Ok(StateStore {
                backend: Backend::Postgres(Arc::new(postgres::PgStore::open(pg).await?)),
                location: Arc::from(redact_url(pg)),
            }),
        }
    }

    /// Opens the store from synchronous code: SQLite on this thread, PostgreSQL's migrations on
    /// a helper thread (its pool connects lazily, on the runtime that uses it).
    pub fn open_blocking(url: &StateUrl) -> Result<StateStore, StoreError> {
        match url {
            StateUrl::Sqlite(path) => Self::open_sqlite(path),
            StateUrl::Postgres(pg) => Ok(StateStore {
                backend: Backend::Postgres(Arc::new(postgres::PgStore::open_blocking(pg)?)),
                location: Arc::from(redact_url(pg)),
            }),
        }
    }

    fn open_sqlite(path: &Path) -> Result<StateStore, StoreError> {
        Ok(StateStore {
            backend: Backend::Sqlite(Arc::new(sqlite::SqliteStore::open(path)?)),
            location: Arc::from(path.display().to_string()),
        })
    }

    /// Where the store is, for messages: the file, or the URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The backend, for the stores built on its primitives.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The SQLite store, if that is the backend.
    pub fn sqlite(&self) -> Option<&Arc<sqlite::SqliteStore>> {
        match &self.backend {
            Backend::Sqlite(s) => Some(s),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL store, if that is the backend.
    pub fn postgres(&self) -> Option<&Arc<postgres::PgStore>> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    /// The audit log's storage.
    pub fn audit(&self) -> Arc<dyn AuditStore> {
        match &self.backend {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(p) => p.clone(),
        }
    }

    /// The quota ledger's storage.
    pub fn quotas(&self) -> Arc<dyn QuotaStore> {
        match &self.backend {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(p) => p.clone(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_of_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=secret&x=1"),
            "postgres://h/db?user=u&password=***&x=1"
        );
    }
}
