//! PostgreSQL sources: a pool of connections per source (deadpool), opened on first use.
//!
//! The connection URL, with its password, comes from the environment variable the source names
//! (`url_env`), is read once at configure time, and never leaves the host.
//!
//! Every statement runs in a transaction of its own:
//! - `query`: `START TRANSACTION READ ONLY`, then a snapshot is taken at once, after which
//!   PostgreSQL refuses to switch the transaction to read-write. The statement reads through a
//!   portal, one row per fetch, so only the rows within the limits are ever fetched, and no
//!   batch of rows is held before the byte budget sees it: each row's values are sized as they
//!   arrived, before any is decoded, and a row past `max_bytes` is dropped undecoded. (One row
//!   is received whole, as the protocol sends it, so a single huge value is held once while it
//!   is measured; PostgreSQL caps a value at 1 GB.) The transaction is rolled back, which also
//!   undoes any `SET` the statement made.
//! - `execute`: `START TRANSACTION READ WRITE`, committed when the statement succeeds.
//!
//! Both set `statement_timeout` for their transaction only (`SET LOCAL`). If the server does not
//! stop in time anyway, the host cancels the statement and drops the connection. A connection
//! goes back to the pool only after a reset (`RecyclingMethod::Clean`), so no session state a
//! plugin set reaches the next call.
//!
//! What a statement can reach inside the database is the connecting role's privileges: give a
//! source a role that may read (and, for `:rw` grants, write) only what it should expose, never a
//! superuser, whose functions reach the server's files and programs even in a read-only
//! transaction.
//!
//! Connections are plain TCP or a Unix socket (no TLS yet): a source on another machine belongs
//! on a private network or behind a local TLS tunnel.

use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use super::postgres_values::{PgCell, PgParam, PgRawSize};
use super::{RowCollector, SqlLimits};
use crate::bindings::data::{Column, DataError, QueryResult, SqlValue};

/// Rows fetched per round trip from a query's portal. One: a batch is buffered whole by the
/// client before any of its rows can be measured, and rows can be of any size.
const FETCH_BATCH: i32 = 1;
/// How long past the statement timeout the host waits for the server before cancelling itself.
const SERVER_GRACE: Duration = Duration::from_secs(1);

/// Parses a PostgreSQL URL or connection string. The error names what is wrong, never the text,
/// which may hold a password.
pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    url.parse()
}

/// A PostgreSQL database and its connection pool.
pub(super) struct PostgresPool {
    pool: Pool,
    limits: SqlLimits,
}

impl PostgresPool {
    /// Builds the pool from the URL in the environment variable `var`. Nothing connects yet.
    pub(super) fn configure(
        var: &str,
        pool_size: u32,
        limits: SqlLimits,
    ) -> Result<PostgresPool, String> {
        let url = std::env::var(var)
            .map_err(|_| format!("the environment variable `{var}` is not set"))?;
        let mut config = parse_url(&url).map_err(|e| {
            format!("the value of `{var}` is not a PostgreSQL URL or connection string: {e}")
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(limits.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("warden");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Clean,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size as usize)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(limits.timeout))
            .create_timeout(Some(limits.timeout))
            .recycle_timeout(Some(limits.timeout))
            .build()
            .map_err(|e| format!("cannot build the connection pool: {e}"))?;
        Ok(PostgresPool { pool, limits })
    }

    /// Runs a read statement in a read-only transaction.
    pub(super) async fn query(
        &self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, DataError> {
        let mut client = self.connection().await?;
        let cancel = client.cancel_token();
        let work = run_query(&mut client, statement, params, &self.limits);
        let outcome = tokio::time::timeout(self.limits.timeout + SERVER_GRACE, work).await;
        self.settle(client, cancel, outcome)
    }

    /// Runs a write statement in a read-write transaction; returns the rows it changed.
    pub(super) async fn execute(
        &self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<u64, DataError> {
        let mut client = self.connection().await?;
        let cancel = client.cancel_token();
        let work = run_execute(&mut client, statement, params, &self.limits);
        let outcome = tokio::time::timeout(self.limits.timeout + SERVER_GRACE, work).await;
        self.settle(client, cancel, outcome)
    }

    async fn connection(&self) -> Result<Object, DataError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) => DataError::Failed(format!(
                "no connection to the database within {} ms: it is slow to answer, or all {} \
                 pooled connections are busy (pool_size)",
                self.limits.timeout.as_millis(),
                self.pool.status().max_size
            )),
            PoolError::Backend(e) => {
                DataError::Failed(format!("cannot connect to the database: {e}"))
            }
            other => DataError::Failed(format!("cannot connect to the database: {other}")),
        })
    }

    /// Turns a statement's outcome into its result. A statement the server did not stop in
    /// time is cancelled, and its connection is closed instead of pooled.
    fn settle<T>(
        &self,
        client: Object,
        cancel: tokio_postgres::CancelToken,
        outcome: Result<Result<T, DataError>, tokio::time::error::Elapsed>,
    ) -> Result<T, DataError> {
        match outcome {
            Ok(result) => result,
            Err(_) => {
                tokio::spawn(async move {
                    let _ = cancel.cancel_query(NoTls).await;
                });
                drop(Object::take(client));
                Err(timed_out(&self.limits))
            }
        }
    }
}

fn timed_out(limits: &SqlLimits) -> DataError {
    DataError::Timeout(format!(
        "the statement ran past the source's {} ms timeout (timeout_ms)",
        limits.timeout.as_millis()
    ))
}

/// Prepares a statement and checks that it gets as many values as it has parameters.
async fn prepare(
    tx: &tokio_postgres::Transaction<'_>,
    statement: &str,
    params: &[SqlValue],
    limits: &SqlLimits,
) -> Result<Statement, DataError> {
    let prepared = tx
        .prepare(statement)
        .await
        .map_err(|e| pg_error(e, limits))?;
    let expected = prepared.params().len();
    if expected != params.len() {
        return Err(DataError::Invalid(format!(
            "the statement has {expected} parameter(s) ($1, $2, …) but {} value(s) were given",
            params.len()
        )));
    }
    Ok(prepared)
}

fn bound(params: &[SqlValue]) -> Vec<PgParam<'_>> {
    params.iter().map(PgParam).collect()
}

fn refs<'a>(bound: &'a [PgParam<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

async fn run_query(
    client: &mut Object,
    statement: &str,
    params: &[SqlValue],
    limits: &SqlLimits,
) -> Result<QueryResult, DataError> {
    let err = |e| pg_error(e, limits);
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(err)?;
    // The SELECT takes the transaction's snapshot: from then on PostgreSQL refuses
    // `SET TRANSACTION READ WRITE`, so no statement can lift the read-only mode.
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}; SELECT 1",
        limits.timeout.as_millis()
    ))
    .await
    .map_err(err)?;
    let prepared = prepare(&tx, statement, params, limits).await?;
    let columns: Vec<Column> = prepared
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            type_name: c.type_().name().to_string(),
        })
        .collect();
    let values = bound(params);
    let portal = tx.bind(&prepared, &refs(&values)).await.map_err(err)?;
    let mut collector = RowCollector::new(limits);
    // Until the portal runs dry, or one row past a limit, to learn whether any were left out.
    loop {
        let rows = tx.query_portal(&portal, FETCH_BATCH).await.map_err(err)?;
        let Some(row) = rows.first() else {
            break;
        };
        if !collector.fits(raw_size(row)) || !collector.push(row_values(row, &columns)?) {
            break;
        }
    }
    // Nothing to keep from a read; rolling back also undoes any `SET` the statement made.
    tx.rollback().await.map_err(err)?;
    Ok(QueryResult {
        columns,
        rows: collector.rows,
        truncated: collector.truncated,
    })
}

/// The bytes of a row's values as they arrived, read without decoding them.
fn raw_size(row: &Row) -> u64 {
    (0..row.len())
        .map(|i| row.try_get::<_, PgRawSize>(i).map_or(0, |size| size.0))
        .sum()
}

fn row_values(row: &Row, columns: &[Column]) -> Result<Vec<SqlValue>, DataError> {
    (0..row.len())
        .map(|i| {
            row.try_get::<_, PgCell>(i).map(|cell| cell.0).map_err(|e| {
                let column = &columns[i];
                let cause = std::error::Error::source(&e).map_or(e.to_string(), |c| c.to_string());
                DataError::Invalid(format!(
                    "column `{}` of type `{}` cannot be returned ({cause}); cast it in the \
                     statement, e.g. `{}::text`",
                    column.name, column.type_name, column.name
                ))
            })
        })
        .collect()
}

async fn run_execute(
    client: &mut Object,
    statement: &str,
    params: &[SqlValue],
    limits: &SqlLimits,
) -> Result<u64, DataError> {
    let err = |e| pg_error(e, limits);
    let tx = client
        .build_transaction()
        .read_only(false)
        .start()
        .await
        .map_err(err)?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        limits.timeout.as_millis()
    ))
    .await
    .map_err(err)?;
    let prepared = prepare(&tx, statement, params, limits).await?;
    let values = bound(params);
    let changed = tx.execute(&prepared, &refs(&values)).await.map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(changed)
}

/// Sorts PostgreSQL's errors into the contract's kinds, with the server's message.
fn pg_error(error: tokio_postgres::Error, limits: &SqlLimits) -> DataError {
    let Some(db) = error.as_db_error() else {
        return if error.is_closed() {
            DataError::Failed(format!("the connection to the database was lost: {error}"))
        } else {
            DataError::Failed(error.to_string())
        };
    };
    let mut message = db.message().to_string();
    if let Some(detail) = db.detail() {
        message.push_str(&format!(" ({detail})"));
    }
    if let Some(hint) = db.hint() {
        message.push_str(&format!("; hint: {hint}"));
    }
    let code = db.code();
    if *code == SqlState::QUERY_CANCELED {
        return timed_out(limits);
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return DataError::Denied(format!(
            "the database refused to write ({message}): `query` runs read-only; writes go \
             through `execute` with a read-write grant"
        ));
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return DataError::Denied(format!("the database refused: {message}"));
    }
    // Connection trouble, resources, shutdowns, system and internal errors, and conflicts
    // worth retrying are the source's failure; everything else is about the statement.
    match &code.code()[..2] {
        "08" | "40" | "53" | "57" | "58" | "XX" => DataError::Failed(message),
        _ => DataError::Invalid(message),
    }
}
