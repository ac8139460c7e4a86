//! The PostgreSQL store, for several hosts on one set of agents: a deadpool connection pool,
//! numbered migrations applied at open (under an advisory lock, so two hosts starting at once
//! migrate once), and writes that serialise across processes where they must (the audit
//! chain's head, quota reservations) with transaction-scoped advisory locks.

mod agents;
mod audit;
pub(crate) mod hosts;
pub mod migrations;
mod quota;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::{Migration, StoreError, latest_version, redact_url};

/// How long to wait for a connection, or for a lock another process holds, before the use is
/// refused (fail closed).
pub const PG_TIMEOUT: Duration = Duration::from_secs(2);
/// The server-side bound on a transaction left idle by its client; below [`PG_TIMEOUT`], so the
/// hosts waiting for its locks get them before they give up.
const IDLE_IN_TRANSACTION: &str = "-c idle_in_transaction_session_timeout=1000";
/// Connections in the pool.
const POOL_SIZE: usize = 16;
/// Advisory lock keys (`pg_advisory_xact_lock`), one per serialised thing.
pub(crate) const LOCK_MIGRATE: i64 = 0x5741_5244_0001;
/// The audit chain's head: every host's appends take it, in one transaction per batch.
pub const LOCK_AUDIT: i64 = 0x5741_5244_0002;
pub(crate) const LOCK_QUOTA: i64 = 0x5741_5244_0003;

/// The PostgreSQL backend: its pool, and the URL (without password) for messages.
pub struct PgStore {
    pool: Pool,
    location: String,
    /// The audit writer's queue, started on first use.
    audit_queue: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<audit::PendingAppend>>>,
}

impl PgStore {
    /// Connects to `url`, applies the migrations it lacks, and keeps a pool.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let (config, location) = parse(url)?;
        migrate_at(&config, &location, &migrations::all()).await?;
        Self::with_pool(config, location)
    }

    /// Like [`PgStore::open`], from synchronous code: the migrations run on a helper thread
    /// with its own runtime; the pool connects lazily, on the runtime that first uses it.
    pub fn open_blocking(url: &str) -> Result<PgStore, StoreError> {
        let (config, location) = parse(url)?;
        let migrate_config = config.clone();
        let migrate_location = location.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Unavailable(format!("cannot start a runtime: {e}")))?;
                runtime.block_on(migrate_at(
                    &migrate_config,
                    &migrate_location,
                    &migrations::all(),
                ))
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Database("the migration thread panicked".into())))
        })?;
        Self::with_pool(config, location)
    }

    fn with_pool(config: tokio_postgres::Config, location: String) -> Result<PgStore, StoreError> {
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(PG_TIMEOUT))
            .create_timeout(Some(PG_TIMEOUT))
            .recycle_timeout(Some(PG_TIMEOUT))
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot build the pool for {location}: {e}"))
            })?;
        Ok(PgStore {
            pool,
            location,
            audit_queue: std::sync::Mutex::new(None),
        })
    }

    /// The connection pool, for the stores built on it.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The URL without its password, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A pooled connection, or [`StoreError::Unavailable`] naming the store.
    pub async fn connection(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to the PostgreSQL state store {}: {}",
                self.location,
                StoreError::from(e)
            ))
        })
    }
}

/// Parses the URL, with a connect timeout and an application name unless it sets them.
fn parse(url: &str) -> Result<(tokio_postgres::Config, String), StoreError> {
    let location = redact_url(url);
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
        StoreError::Unavailable(format!(
            "[state] url {location} is not a PostgreSQL URL: {e}"
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(PG_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("warden");
    }
    // A host that stops inside a transaction (SIGSTOP, a VM paused) would hold its locks, the
    // audit chain's head among them, and stall every host: PostgreSQL ends such a transaction
    // and frees them well before the others' lock timeout.
    let options = match config.get_options() {
        Some(given) if given.contains("idle_in_transaction_session_timeout") => given.to_string(),
        Some(given) => format!("{given} {IDLE_IN_TRANSACTION}"),
        None => IDLE_IN_TRANSACTION.to_string(),
    };
    config.options(&options);
    Ok((config, location))
}

/// Connects once and applies the migrations the database lacks.
async fn migrate_at(
    config: &tokio_postgres::Config,
    location: &str,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot connect to the PostgreSQL state store {location}: {}; check that the server \
             is up and that [state] url names the right host, database, user and password",
            pg_reason(&e)
        ))
    })?;
    let driver = tokio::spawn(connection);
    let result = migrate(&mut client, migrations).await.map_err(|e| match e {
        StoreError::SchemaTooNew { .. } => e,
        other => StoreError::Unavailable(format!(
            "cannot prepare the PostgreSQL state store {location}: {other}"
        )),
    });
    drop(client);
    let _ = driver.await;
    result
}

/// The server's message for `e` when it sent one, else the client's.
fn pg_reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// Applies the migrations the schema lacks, in one transaction; refuses a newer schema.
pub(crate) async fn migrate(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let binary = latest_version(migrations);
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS warden_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)",
    )
    .await?;
    let current: Option<i32> = tx
        .query_one("SELECT MAX(version) FROM warden_schema", &[])
        .await?
        .get(0);
    let current = current.unwrap_or(0).max(0) as u32;
    if current > binary {
        return Err(StoreError::SchemaTooNew {
            store: current,
            binary,
        });
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).await.map_err(|e| {
            StoreError::Database(format!(
                "migration {} ({}) failed: {}",
                m.version,
                m.name,
                pg_reason(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO warden_schema (version, name, applied_at_ms) VALUES ($1, $2, $3)",
            &[
                &(m.version as i32),
                &m.name,
                &(crate::state::now_ms() as i64),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
