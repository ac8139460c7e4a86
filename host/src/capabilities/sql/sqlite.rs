//! SQLite sources: a database file, reached through a small pool of connections.
//!
//! `query` runs on connections opened `SQLITE_OPEN_READ_ONLY` with `PRAGMA query_only`, so SQLite
//! itself refuses any write; `execute` runs on read-write connections inside `BEGIN IMMEDIATE`.
//! Neither mode creates the file, nor follows a symbolic link to it (a plugin with a read-write
//! directory grant could plant one, e.g. to Warden's own state store). On every connection
//! `ATTACH` is disabled (it, and `VACUUM INTO`, would let a statement open or create any file the
//! host can reach), and defensive mode keeps statements from corrupting the file on purpose.
//!
//! SQLite is linked once into the host, and the audit log is a SQLite database too: a setting
//! that is process-wide (`PRAGMA hard_heap_limit`, `soft_heap_limit`, `temp_store_directory`…)
//! set by a plugin's statement would reach the audit writes. So an authorizer refuses every
//! `PRAGMA` but a short list of read-only ones ([`READ_PRAGMAS`], [`NAME_PRAGMAS`]), `ATTACH`,
//! `DETACH`, and the SQL functions that load code ([`REFUSED_FUNCTIONS`]). The host registers no
//! SQL functions of its own on a source's connections.
//!
//! Results are counted while they are read: each value's size is looked up
//! (`sqlite3_column_bytes`) before it is copied, and a row that would go past `max_bytes` is
//! never copied. `SQLITE_LIMIT_LENGTH` keeps any single value (built or read) at about the
//! source's `max_bytes`, so a statement cannot make SQLite itself hold a huge one.
//!
//! SQLite calls block, so each statement runs on tokio's blocking pool, and a progress handler
//! interrupts it at the source's timeout.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::config::DbConfig;
use rusqlite::ffi;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, Statement, ToSql};

use super::{RowCollector, SqlLimits};
use crate::bindings::data::{Column, DataError, QueryResult, SqlValue};

/// Idle connections kept per mode; more are opened when calls overlap, and closed after.
const MAX_IDLE: usize = 4;
/// SQLite VM instructions between two looks at the statement's deadline.
const PROGRESS_INTERVAL: i32 = 1000;
/// The fewest result columns a statement may have on a source, whatever its tables: SQLite
/// builds a whole row in its own memory before the host can look at it, and each value may be
/// as large as `SQLITE_LIMIT_LENGTH`, so the column count bounds that memory. A source whose
/// widest table has more columns allows that many (a lower limit would make SQLite call the
/// schema malformed).
pub(super) const MIN_RESULT_COLUMNS: i64 = 128;
/// SQLite's own cap on columns, which no source goes past.
const MAX_RESULT_COLUMNS: i64 = 2000;
/// The column count of the widest table in the database file. Tables only: a view is checked
/// against the limit when it is read, and one that refers to a missing table would fail this.
const WIDEST_TABLE: &str = "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n \
    FROM sqlite_schema AS s JOIN pragma_table_info(s.name) \
    WHERE s.type = 'table' GROUP BY s.name)";
/// PRAGMAs a statement may run without a value: each only reads the database's own schema or
/// header. Every other PRAGMA is refused, whether it reads or sets.
pub(super) const READ_PRAGMAS: &[&str] = &[
    "application_id",
    "collation_list",
    "data_version",
    "encoding",
    "freelist_count",
    "page_count",
    "page_size",
    "schema_version",
    "table_list",
    "user_version",
];
/// PRAGMAs whose value is the name of a table or index to describe (`PRAGMA table_info(t)`,
/// `pragma_table_info(t)`): read-only whatever the name.
pub(super) const NAME_PRAGMAS: &[&str] = &[
    "foreign_key_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "table_info",
    "table_xinfo",
];
/// SQL functions refused at prepare time: they load native code or register a tokenizer by
/// pointer. (Both are also off by SQLite's defaults; this holds if a default changes.)
pub(super) const REFUSED_FUNCTIONS: &[&str] = &["load_extension", "fts3_tokenizer"];

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
        // At every open, not once at configure: a plugin with a read-write grant on the folder
        // may have replaced the file (or a folder on its path) with a link since.
        refuse_links(&self.path)?;
        // Never SQLITE_OPEN_CREATE: a missing file is an error, not a new empty database. No
        // SQLITE_OPEN_URI either: the path is a file name, not a URI with options.
        // SQLITE_OPEN_NOFOLLOW: SQLite itself refuses a link as the file, which closes the gap
        // between the check above and the open.
        let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | match mode {
                Mode::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
                Mode::Write => OpenFlags::SQLITE_OPEN_READ_WRITE,
            };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| {
            // The path is the operator's business: the host log has it, the plugin does not
            // (rusqlite's message would name it).
            tracing::warn!("cannot open SQLite database {}: {e}", self.path.display());
            let why = match &e {
                rusqlite::Error::SqliteFailure(code, _)
                    if code.extended_code == SQLITE_CANTOPEN_SYMLINK =>
                {
                    LINK_REFUSED.to_string()
                }
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
        // Functions named in a schema (views, triggers, defaults) that the file brings along
        // only run if SQLite deems them harmless: the file may have been written by a plugin.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
        // No value larger than a whole result may be built in the host's memory, in either
        // mode: a write could build one as well as a read (`randomblob`, `replace`), and one
        // stored larger could not be read back through `query` anyway.
        let length = self.limits.max_bytes.clamp(1 << 20, 1_000_000_000);
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, length as i32)?;
        // A lower column limit than a table's would make SQLite call the schema malformed. A
        // schema this cannot read gets SQLite's own cap, and its statements their own errors.
        let widest: i64 = conn
            .query_row(WIDEST_TABLE, [], |row| row.get(0))
            .unwrap_or(MAX_RESULT_COLUMNS);
        let columns = widest.clamp(MIN_RESULT_COLUMNS, MAX_RESULT_COLUMNS);
        conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, columns as i32)?;
        if mode == Mode::Read {
            conn.pragma_update(None, "query_only", true)?;
        }
        // Last: the host's own PRAGMAs above go through before it, a plugin's never after.
        conn.authorizer(Some(authorize));
        Ok(())
    }
}

/// SQLite's extended code for a file that is a symbolic link, refused under `NOFOLLOW`.
const SQLITE_CANTOPEN_SYMLINK: i32 = ffi::SQLITE_CANTOPEN | (6 << 8);
/// What the plugin hears about a source file reached through a link (the path stays in the log).
const LINK_REFUSED: &str = "the source's file, or a folder on its path, is a symbolic link, \
    which Warden does not follow: point the source's `path` at the real file, and keep links out \
    of folders that plugins may write";

/// Refuses a path that is a symbolic link, or that leads through one: the path as configured
/// (made absolute, `.` and `..` resolved as written) must be the path the system resolves.
fn refuse_links(path: &Path) -> Result<(), DataError> {
    let refused = || {
        tracing::warn!(
            "SQLite source {} is, or leads through, a symbolic link: refused",
            path.display()
        );
        DataError::Failed(format!("cannot open the database file: {LINK_REFUSED}"))
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(refused());
    }
    let written = match std::path::absolute(path) {
        Ok(absolute) => lexically_normal(&absolute),
        Err(_) => return Ok(()),
    };
    // A missing file is SQLite's to report, as "cannot open".
    match std::fs::canonicalize(&written) {
        Ok(real) if real != written => Err(refused()),
        _ => Ok(()),
    }
}

/// `path` with `.` left out and each `..` taking away the component before it, as written,
/// without asking the file system.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// The authorizer of every source connection: refuses what would reach past the one database
/// file or change SQLite's state in the whole process (see the module's documentation).
fn authorize(context: AuthContext<'_>) -> Authorization {
    match context.action {
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let allowed = match pragma_value {
                None => {
                    READ_PRAGMAS.contains(&name.as_str()) || NAME_PRAGMAS.contains(&name.as_str())
                }
                Some(_) => NAME_PRAGMAS.contains(&name.as_str()),
            };
            if allowed {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        // rusqlite names an action only when SQLite passes all its arguments: `ATTACH ?` (a
        // bound file name) arrives as Unknown. Refused by its code, as named ones are.
        AuthAction::Unknown {
            code:
                ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH | ffi::SQLITE_PRAGMA | ffi::SQLITE_FUNCTION,
            ..
        } => Authorization::Deny,
        AuthAction::Function { function_name }
            if REFUSED_FUNCTIONS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
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
    let raw = live_statement(conn)?;
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(|e| sqlite_error(e, limits))? {
        // Sized before anything is copied (or a zeroblob expanded): a row past the budget is
        // left out without ever being held in the host's memory.
        let size: u64 = (0..columns.len()).map(|i| stored_size(raw, i as i32)).sum();
        if !collector.fits(size) {
            break;
        }
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

/// The one prepared statement on `conn`: the statement being read. rusqlite does not hand out
/// its raw pointer, and each connection runs one statement at a time (no statement cache is
/// used), so the connection's list holds exactly it; anything else is refused, not guessed.
fn live_statement(conn: &Connection) -> Result<*mut ffi::sqlite3_stmt, DataError> {
    // SAFETY: `conn` is borrowed for the call, so its handle is valid; `sqlite3_next_stmt` only
    // walks the connection's list of statements.
    let (first, second) = unsafe {
        let db = conn.handle();
        let first = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
        let second = if first.is_null() {
            first
        } else {
            ffi::sqlite3_next_stmt(db, first)
        };
        (first, second)
    };
    if first.is_null() || !second.is_null() {
        return Err(DataError::Failed(
            "the connection holds an unexpected number of statements; the query was not read"
                .into(),
        ));
    }
    Ok(first)
}

/// The bytes column `column` of the current row counts against `max_bytes` (see
/// `value_size`), read without converting or copying it: `sqlite3_column_bytes` of a text or
/// blob, taken right after its type, does neither (a zeroblob stays unexpanded).
fn stored_size(raw: *mut ffi::sqlite3_stmt, column: i32) -> u64 {
    // SAFETY: `raw` is the statement being stepped, positioned on a row, and `column` is below
    // its column count.
    unsafe {
        match ffi::sqlite3_column_type(raw, column) {
            ffi::SQLITE_NULL => 1,
            ffi::SQLITE_INTEGER | ffi::SQLITE_FLOAT => 8,
            _ => ffi::sqlite3_column_bytes(raw, column).max(0) as u64,
        }
    }
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
        Some(ErrorCode::AuthorizationForStatementDenied) => DataError::Denied(format!(
            "{message}: statements may not run PRAGMAs that set anything (or read outside the \
             schema), ATTACH or DETACH a database, or load extensions"
        )),
        Some(_) if message.starts_with("too many columns") => DataError::Invalid(format!(
            "{message}: a result on this source may have as many columns as its widest table, \
             and at least {MIN_RESULT_COLUMNS}; select fewer columns"
        )),
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
    fn a_process_wide_pragma_is_refused_and_changes_nothing() {
        let (_dir, db) = database();
        // SAFETY: a negative argument only reads the process's limit.
        let limit = || unsafe { ffi::sqlite3_hard_heap_limit64(-1) };
        let before = limit();
        // A harmless value, should the refusal ever break: other tests share the process.
        let result = query(&db, "PRAGMA hard_heap_limit = 8000000000", &[]);
        let after = limit();
        if after != before {
            // SAFETY: puts back the process's limit as it was.
            unsafe { ffi::sqlite3_hard_heap_limit64(before) };
        }
        assert!(matches!(result, Err(DataError::Denied(_))), "{result:?}");
        assert_eq!(
            after, before,
            "a plugin's PRAGMA changed the process's heap limit"
        );
        let result = execute(&db, "PRAGMA soft_heap_limit = 8000000000", &[]);
        assert!(matches!(result, Err(DataError::Denied(_))), "{result:?}");
    }

    fn authorized(action: AuthAction<'_>) -> Authorization {
        authorize(AuthContext {
            action,
            database_name: None,
            accessor: None,
        })
    }

    #[test]
    fn the_authorizer_allows_only_schema_reading_pragmas() {
        let pragma = |name, value| AuthAction::Pragma {
            pragma_name: name,
            pragma_value: value,
        };
        assert_eq!(
            authorized(pragma("table_info", Some("t"))),
            Authorization::Allow
        );
        assert_eq!(
            authorized(pragma("user_version", None)),
            Authorization::Allow
        );
        assert_eq!(
            authorized(pragma("user_version", Some("7"))),
            Authorization::Deny
        );
        for name in [
            "hard_heap_limit",
            "soft_heap_limit",
            "mmap_size",
            "temp_store_directory",
        ] {
            assert_eq!(
                authorized(pragma(name, None)),
                Authorization::Deny,
                "{name}"
            );
            assert_eq!(
                authorized(pragma(name, Some("1"))),
                Authorization::Deny,
                "{name}"
            );
        }
    }

    #[test]
    fn the_authorizer_refuses_attach_and_code_loading_functions() {
        assert_eq!(
            authorized(AuthAction::Attach { filename: "x.db" }),
            Authorization::Deny
        );
        assert_eq!(
            authorized(AuthAction::Unknown {
                code: ffi::SQLITE_ATTACH,
                arg1: None,
                arg2: None
            }),
            Authorization::Deny
        );
        for function in ["load_extension", "LOAD_EXTENSION", "fts3_tokenizer"] {
            let action = AuthAction::Function {
                function_name: function,
            };
            assert_eq!(authorized(action), Authorization::Deny, "{function}");
        }
        let action = AuthAction::Function {
            function_name: "length",
        };
        assert_eq!(authorized(action), Authorization::Allow);
    }

    #[test]
    fn a_linked_path_is_refused() {
        let (dir, db) = database();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink("crm.db", &link).unwrap();
        let linked = Shared {
            path: link,
            limits: limits(),
            readers: Mutex::new(Vec::new()),
            writers: Mutex::new(Vec::new()),
        };
        let err = query(&linked, "SELECT 1", &[]).unwrap_err();
        assert!(
            matches!(&err, DataError::Failed(m) if m.contains("symbolic link")),
            "{err:?}"
        );
        assert!(query(&db, "SELECT 1", &[]).is_ok());
        assert_eq!(
            lexically_normal(Path::new("/a/./b/../c")),
            PathBuf::from("/a/c")
        );
    }

    #[test]
    fn a_wide_table_and_a_broken_view_leave_the_source_readable() {
        let (_dir, db) = database();
        let columns: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
        let conn = Connection::open(&db.path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE wide ({}); CREATE VIEW broken AS SELECT * FROM customers;
             PRAGMA legacy_alter_table = ON; DROP TABLE customers;",
            columns.join(", ")
        ))
        .unwrap();
        drop(conn);
        let result = query(&db, "SELECT * FROM wide", &[]).unwrap();
        assert_eq!(result.columns.len(), 300);
        let too_wide = format!("SELECT {}", vec!["1"; 400].join(", "));
        let err = query(&db, &too_wide, &[]).unwrap_err();
        assert!(
            matches!(&err, DataError::Invalid(m) if m.contains("select fewer columns")),
            "{err:?}"
        );
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
