//! SQLite sources: a database file, reached through a small pool of connections.
//!
//! `query` runs on connections opened `SQLITE_OPEN_READ_ONLY` with `PRAGMA query_only`, so SQLite
//! itself refuses any write; `execute` runs on read-write connections inside `BEGIN IMMEDIATE`.
//! Neither mode creates the file. On every connection `ATTACH` is disabled (it, and `VACUUM
//! INTO`, would let a statement open or create any file the host can reach), and defensive mode
//! keeps statements from corrupting the file on purpose.
//!
//! SQLite calls block, so each statement runs on tokio's blocking pool, and a progress handler
//! interrupts it at the source's timeout.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, Statement, ToSql};

use super::{RowCollector, SqlLimits};
use crate::bindings::data::{Column, DataError, QueryResult, SqlValue};

/// Idle connections kept per mode; more are opened when calls overlap, and closed after.
const MAX_IDLE: usize = 4;
/// SQLite VM instructions between two looks at the statement's deadline.
const PROGRESS_INTERVAL: i32 = 1000;

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `query`: the database refuses writes.
    Read,
    /// `execute`.
    Write,
}

/// A SQLite database file and its idle connections.
pub(super) struct SqlitePool {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    limits: SqlLimits,
    readers: Mutex<Vec<Connection>>,
    writers: Mutex<Vec<Connection>>,
}

impl SqlitePool {
    /// A pool for the database at `path`. Nothing is opened until the first statement.
    pub(super) fn new(path: PathBuf, limits: SqlLimits) -> SqlitePool {
        SqlitePool {
            shared: Arc::new(Shared {
                path,
                limits,
                readers: Mutex::new(Vec::new()),
                writers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs a read statement on a read-only connection.
    pub(super) async fn query(
        &self,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<QueryResult, DataError> {
        let shared = self.shared.clone();
        blocking(move || {
            shared.with_connection(Mode::Read, |conn| {
                run_query(conn, &statement, &params, &shared.limits)
            })
        })
        .await
    }

    /// Runs a write statement in a read-write transaction; returns the rows it changed.
    pub(super) async fn execute(
        &self,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<u64, DataError> {
        let shared = self.shared.clone();
        blocking(move || {
            shared.with_connection(Mode::Write, |conn| {
                run_execute(conn, &statement, &params, &shared.limits)
            })
        })
        .await
    }
}

/// Runs SQLite work on the blocking pool, so that it never stalls the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DataError> + Send + 'static,
) -> Result<T, DataError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(DataError::Failed(format!(
            "the statement's worker failed: {e}"
        )))
    })
}

impl Shared {
    /// Runs `work` on a pooled connection of `mode`, and returns the connection to the pool
    /// when it is clean.
    fn with_connection<T>(
        &self,
        mode: Mode,
        work: impl FnOnce(&Connection) -> Result<T, DataError>,
    ) -> Result<T, DataError> {
        let idle = match mode {
            Mode::Read => &self.readers,
            Mode::Write => &self.writers,
        };
        let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.open(mode)?,
        };
        if mode == Mode::Read {
            // At every use, not only at open: a statement may have turned it off (the file
            // stays open read-only regardless).
            conn.pragma_update(None, "query_only", true)
                .map_err(|e| sqlite_error(e, &self.limits))?;
        }
        let deadline = Instant::now() + self.limits.timeout;
        conn.progress_handler(PROGRESS_INTERVAL, Some(move || Instant::now() >= deadline));
        let result = work(&conn);
        conn.progress_handler(0, None::<fn() -> bool>);
        // A statement may have left a transaction open (`BEGIN` through `query`): end it, or
        // drop the connection, so the next call starts clean.
        let clean = conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok();
        if clean {
            let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result
    }

    fn open(&self, mode: Mode) -> Result<Connection, DataError> {
        // Never SQLITE_OPEN_CREATE: a missing file is an error, not a new empty database. No
        // SQLITE_OPEN_URI either: the path is a file name, not a URI with options.
        let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
            | match mode {
                Mode::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
                Mode::Write => OpenFlags::SQLITE_OPEN_READ_WRITE,
            };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| {
            // The path is the operator's business: the host log has it, the plugin does not
            // (rusqlite's message would name it).
            tracing::warn!("cannot open SQLite database {}: {e}", self.path.display());
            let why = match &e {
                rusqlite::Error::SqliteFailure(code, _) => code.to_string(),
                _ => "an unexpected error".to_string(),
            };
            DataError::Failed(format!("cannot open the database file: {why}"))
        })?;
        self.harden(&conn, mode).map_err(|e| {
            DataError::Failed(format!("cannot prepare a connection to the database: {e}"))
        })?;
        Ok(conn)
    }

    fn harden(&self, conn: &Connection, mode: Mode) -> rusqlite::Result<()> {
        conn.busy_timeout(self.limits.timeout)?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        if mode == Mode::Read {
            // No value larger than a whole result may be built in the host's memory.
            let length = self.limits.max_bytes.clamp(1 << 20, 1_000_000_000);
            conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, length as i32)?;
        }
        Ok(())
    }
}

/// Binds a [`SqlValue`] as SQLite sees it: a boolean is the integer 0 or 1.
struct Param<'a>(&'a SqlValue);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Boolean(b) => ValueRef::Integer(i64::from(*b)),
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(r) => ValueRef::Real(*r),
            SqlValue::Text(t) => ValueRef::Text(t.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Prepares one statement and binds its parameters by position.
fn prepare<'c>(
    conn: &'c Connection,
    statement: &str,
    params: &[SqlValue],
    limits: &SqlLimits,
) -> Result<Statement<'c>, DataError> {
    let mut stmt = conn
        .prepare(statement)
        .map_err(|e| sqlite_error(e, limits))?;
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(DataError::Invalid(format!(
            "the statement has {expected} parameter(s) (`?`, `?N` or `:name`) but {} value(s) were given",
            params.len()
        )));
    }
    for (i, value) in params.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, Param(value))
            .map_err(|e| sqlite_error(e, limits))?;
    }
    Ok(stmt)
}

fn run_query(
    conn: &Connection,
    statement: &str,
    params: &[SqlValue],
    limits: &SqlLimits,
) -> Result<QueryResult, DataError> {
    let mut stmt = prepare(conn, statement, params, limits)?;
    let columns: Vec<Column> = stmt
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            type_name: c.decl_type().unwrap_or_default().to_string(),
        })
        .collect();
    let booleans: Vec<bool> = columns
        .iter()
        .map(|c| {
            c.type_name.eq_ignore_ascii_case("boolean") || c.type_name.eq_ignore_ascii_case("bool")
        })
        .collect();
    let mut collector = RowCollector::new(limits);
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(|e| sqlite_error(e, limits))? {
        let mut values = Vec::with_capacity(columns.len());
        for (i, boolean) in booleans.iter().enumerate() {
            let value = row.get_ref(i).map_err(|e| sqlite_error(e, limits))?;
            values.push(from_sqlite(value, *boolean));
        }
        if !collector.push(values) {
            break;
        }
    }
    Ok(QueryResult {
        columns,
        rows: collector.rows,
        truncated: collector.truncated,
    })
}

fn run_execute(
    conn: &Connection,
    statement: &str,
    params: &[SqlValue],
    limits: &SqlLimits,
) -> Result<u64, DataError> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| sqlite_error(e, limits))?;
    let before = conn.total_changes();
    let run = || -> Result<u64, DataError> {
        let mut stmt = prepare(conn, statement, params, limits)?;
        // Stepped to the end, so `INSERT … RETURNING` works too; its rows are not returned.
        let mut rows = stmt.raw_query();
        while rows.next().map_err(|e| sqlite_error(e, limits))?.is_some() {}
        // `changes()` keeps the count of the last INSERT, UPDATE or DELETE, even across a
        // statement that changed nothing (DDL): only trust it when something changed.
        Ok(if conn.total_changes() == before {
            0
        } else {
            conn.changes()
        })
    };
    let result = run();
    if conn.is_autocommit() {
        // The statement itself ended the transaction (`COMMIT` or `ROLLBACK`).
        return result;
    }
    match result {
        Ok(changed) => {
            conn.execute_batch("COMMIT")
                .map_err(|e| sqlite_error(e, limits))?;
            Ok(changed)
        }
        Err(e) => Err(e),
    }
}

fn from_sqlite(value: ValueRef<'_>, boolean: bool) -> SqlValue {
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i @ (0 | 1)) if boolean => SqlValue::Boolean(i == 1),
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(r) => SqlValue::Real(r),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

/// Sorts SQLite's errors into the contract's kinds.
fn sqlite_error(error: rusqlite::Error, limits: &SqlLimits) -> DataError {
    let (code, message) = match &error {
        rusqlite::Error::SqliteFailure(e, message) => (
            Some(e.code),
            message.clone().unwrap_or_else(|| e.to_string()),
        ),
        rusqlite::Error::SqlInputError { error, msg, .. } => (Some(error.code), msg.clone()),
        rusqlite::Error::MultipleStatement => {
            return DataError::Invalid("send one statement at a time".into());
        }
        other => (None, other.to_string()),
    };
    match code {
        Some(ErrorCode::OperationInterrupted) => DataError::Timeout(format!(
            "the statement ran past the source's {} ms timeout (timeout_ms)",
            limits.timeout.as_millis()
        )),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DataError::Timeout(format!(
            "the database stayed locked by another writer for the source's {} ms timeout",
            limits.timeout.as_millis()
        )),
        Some(ErrorCode::ReadOnly) => DataError::Denied(format!(
            "the database refused to write ({message}): `query` runs read-only; writes go through \
             `execute` with a read-write grant"
        )),
        Some(ErrorCode::TooBig) => DataError::Invalid(format!(
            "{message}: a value is larger than the source's max_bytes ({})",
            limits.max_bytes
        )),
        Some(ErrorCode::AuthorizationForStatementDenied) => DataError::Denied(message),
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::NotADatabase
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::SystemIoFailure
            | ErrorCode::PermissionDenied
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory
            | ErrorCode::FileLockingProtocolFailed,
        ) => DataError::Failed(message),
        Some(_) => DataError::Invalid(message),
        None => DataError::Failed(message),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> SqlLimits {
        SqlLimits {
            max_rows: 1000,
            max_bytes: 1 << 20,
            timeout: Duration::from_millis(300),
        }
    }

    fn database() -> (tempfile::TempDir, Shared) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, vip BOOLEAN, score REAL, photo BLOB);
             INSERT INTO customers VALUES (1, 'Ada', 1, 4.5, x'0102'), (2, 'Bob', 0, NULL, NULL);",
        )
        .unwrap();
        let shared = Shared {
            path,
            limits: limits(),
            readers: Mutex::new(Vec::new()),
            writers: Mutex::new(Vec::new()),
        };
        (dir, shared)
    }

    /// Rows as text: the generated `SqlValue` has no `PartialEq`.
    fn shown(rows: &[Vec<SqlValue>]) -> String {
        format!("{rows:?}")
    }

    fn query(shared: &Shared, sql: &str, params: &[SqlValue]) -> Result<QueryResult, DataError> {
        shared.with_connection(Mode::Read, |c| run_query(c, sql, params, &shared.limits))
    }

    fn execute(shared: &Shared, sql: &str, params: &[SqlValue]) -> Result<u64, DataError> {
        shared.with_connection(Mode::Write, |c| run_execute(c, sql, params, &shared.limits))
    }

    #[test]
    fn values_come_back_typed_with_declared_types() {
        let (_dir, db) = database();
        let result = query(
            &db,
            "SELECT * FROM customers WHERE id = ?",
            &[SqlValue::Integer(1)],
        )
        .unwrap();
        let types: Vec<&str> = result
            .columns
            .iter()
            .map(|c| c.type_name.as_str())
            .collect();
        assert_eq!(types, ["INTEGER", "TEXT", "BOOLEAN", "REAL", "BLOB"]);
        assert_eq!(
            shown(&result.rows),
            concat!(
                r#"[[SqlValue::Integer(1), SqlValue::Text("Ada"), SqlValue::Boolean(true), "#,
                r#"SqlValue::Real(4.5), SqlValue::Blob([1, 2])]]"#
            )
        );
    }

    #[test]
    fn a_read_only_connection_refuses_writes() {
        let (_dir, db) = database();
        let err = query(&db, "DELETE FROM customers", &[]).unwrap_err();
        assert!(matches!(err, DataError::Denied(_)), "{err:?}");
        let err = query(&db, "PRAGMA query_only = 0", &[])
            .and_then(|_| query(&db, "DELETE FROM customers", &[]));
        assert!(matches!(err, Err(DataError::Denied(_))), "{err:?}");
        let count = query(&db, "SELECT count(*) FROM customers", &[]).unwrap();
        assert_eq!(shown(&count.rows), "[[SqlValue::Integer(2)]]");
    }

    #[test]
    fn attach_and_vacuum_into_cannot_reach_other_files() {
        let (dir, db) = database();
        let other = dir.path().join("other.db");
        let attach = format!("ATTACH DATABASE '{}' AS other", other.display());
        assert!(execute(&db, &attach, &[]).is_err());
        let vacuum = format!("VACUUM INTO '{}'", other.display());
        assert!(query(&db, &vacuum, &[]).is_err());
        assert!(execute(&db, &vacuum, &[]).is_err());
        assert!(!other.exists());
    }

    #[test]
    fn a_long_statement_times_out() {
        let (_dir, db) = database();
        let err = query(
            &db,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, DataError::Timeout(_)), "{err:?}");
        // The connection went back to the pool and works.
        assert!(query(&db, "SELECT 1", &[]).is_ok());
    }

    #[test]
    fn execute_writes_and_counts_rows() {
        let (_dir, db) = database();
        let changed = execute(
            &db,
            "UPDATE customers SET score = ?1",
            &[SqlValue::Real(1.0)],
        )
        .unwrap();
        assert_eq!(changed, 2);
        assert_eq!(
            execute(&db, "CREATE TABLE notes (body TEXT)", &[]).unwrap(),
            0
        );
        let result = query(&db, "SELECT score FROM customers WHERE id = 2", &[]).unwrap();
        assert_eq!(shown(&result.rows), "[[SqlValue::Real(1.0)]]");
    }

    #[test]
    fn a_transaction_left_open_is_ended() {
        let (_dir, db) = database();
        query(&db, "BEGIN", &[]).unwrap();
        assert_eq!(
            execute(&db, "DELETE FROM customers WHERE id = 2", &[]).unwrap(),
            1
        );
        let count = query(&db, "SELECT count(*) FROM customers", &[]).unwrap();
        assert_eq!(shown(&count.rows), "[[SqlValue::Integer(1)]]");
    }

    #[test]
    fn parameter_counts_must_match() {
        let (_dir, db) = database();
        let err = query(&db, "SELECT * FROM customers WHERE id = ?", &[]).unwrap_err();
        assert!(matches!(err, DataError::Invalid(_)), "{err:?}");
        let err = query(&db, "SELECT 1; SELECT 2", &[]).unwrap_err();
        assert!(matches!(err, DataError::Invalid(_)), "{err:?}");
        let err = query(&db, "SELEC 1", &[]).unwrap_err();
        assert!(matches!(err, DataError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn a_missing_file_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared {
            path: dir.path().join("missing.db"),
            limits: limits(),
            readers: Mutex::new(Vec::new()),
            writers: Mutex::new(Vec::new()),
        };
        let err = query(&shared, "SELECT 1", &[]).unwrap_err();
        assert!(
            matches!(&err, DataError::Failed(m) if !m.contains("missing.db")),
            "{err:?}"
        );
        assert!(matches!(
            execute(&shared, "CREATE TABLE t (x)", &[]),
            Err(DataError::Failed(_))
        ));
        assert!(!dir.path().join("missing.db").exists());
    }
}
