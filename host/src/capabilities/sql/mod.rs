//! The `data` interface's SQL sources: SQLite files and PostgreSQL databases.
//!
//! The three steps of a capability:
//! - **configure** ([`SqlSources::configure`]): every `sqlite` and `postgres` source gets a
//!   connection pool, built once and shared by all calls. A PostgreSQL URL (with its password) is
//!   read from the environment variable named by `url_env` and stays in the host. Pools connect
//!   lazily, so a database that is down does not stop the host: its queries fail clearly.
//! - **open** (per call): the call's effective right is checked, and the plugin gets a handle
//!   (a `SqlHandle` in the call's resource table) that names the source, never a connection.
//! - **query / execute**: each runs on a pooled connection for that one statement.
//!
//! What holds whatever a plugin sends:
//! - Parameters are bound, never spliced into the statement.
//! - `query` runs where the database itself refuses writes: a SQLite connection opened read-only
//!   with `query_only`, a PostgreSQL `READ ONLY` transaction. The host never parses SQL to decide.
//! - `execute` needs a read-write grant (`SOURCE:rw`) and runs in a read-write transaction.
//! - Results stop at the source's row and byte limits, with `truncated` set, and every statement
//!   has a timeout.
//! - Every open, query and execute, and every denial, is audited (capability `sql`, the source
//!   as target, the statement as detail). The audit fails closed: a statement's `allowed` record
//!   is committed before the statement runs, and if it cannot be, the statement does not run and
//!   the plugin gets `failed` naming the audit store. A statement that then fails adds a second
//!   record with what went wrong.
//! - A call holds at most [`MAX_SQL_HANDLES_PER_CALL`] handles at once.

mod postgres;
mod postgres_values;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime_wasi::WasiView;

use crate::bindings::data::{DataError, Host, HostSql, QueryResult, Sql, SqlValue};
use crate::config::{SourceKind, WardenConfig};
use crate::policy::Outcome;
use crate::sandbox::CallState;

/// Rows one query returns when the source sets no `max_rows`.
pub const DEFAULT_MAX_ROWS: u64 = 1000;
/// Bytes of row data one query returns when the source sets no `max_bytes` (1 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;
/// Statement timeout when the source sets no `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// PostgreSQL connections per source when the source sets no `pool_size`.
pub const DEFAULT_POOL_SIZE: u32 = 4;
/// The most `sql` handles one call may hold open at once. A handle holds no connection, but
/// each is an entry in the call's resource table in host memory: without a cap, a plugin could
/// open them by the million. Dropping a handle frees its place.
pub const MAX_SQL_HANDLES_PER_CALL: usize = 64;
/// The most characters of a statement kept in an audit record.
const AUDITED_STATEMENT_CHARS: usize = 1000;

/// Every configured SQL source, by name, with its pool.
#[derive(Default)]
pub struct SqlSources {
    sources: BTreeMap<String, Arc<SqlSource>>,
}

impl std::fmt::Debug for SqlSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a pool's configuration holds credentials.
        f.debug_struct("SqlSources")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SqlSources {
    /// Prepares a pool for every `sqlite` and `postgres` source. Nothing connects yet; an error
    /// here is a configuration problem (an unset variable, a malformed URL), named by its key.
    pub fn configure(config: &WardenConfig) -> Result<SqlSources, String> {
        let mut sources = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, source) in &config.sources {
            let limits = SqlLimits {
                max_rows: source.max_rows.unwrap_or(DEFAULT_MAX_ROWS),
                max_bytes: source.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
                // 0 would mean no timeout at all to PostgreSQL: the shortest is 1 ms.
                timeout: Duration::from_millis(
                    source.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1),
                ),
            };
            let backend = match source.kind {
                SourceKind::Sqlite => {
                    let Some(path) = &source.path else {
                        problems.push(format!(
                            "sources.{name}.path: a sqlite source needs the database file"
                        ));
                        continue;
                    };
                    Backend::Sqlite(sqlite::SqlitePool::new(config.resolve(path), limits))
                }
                SourceKind::Postgres => {
                    let pool_size = source.pool_size.unwrap_or(DEFAULT_POOL_SIZE).max(1);
                    match postgres::PostgresPool::configure(
                        source.url_env.as_deref(),
                        pool_size,
                        limits,
                    ) {
                        Ok(pool) => Backend::Postgres(pool),
                        Err(problem) => {
                            problems.push(format!("sources.{name}.url_env: {problem}"));
                            continue;
                        }
                    }
                }
                SourceKind::Dir | SourceKind::Http => continue,
            };
            let source = SqlSource {
                name: name.clone(),
                backend,
            };
            sources.insert(name.clone(), Arc::new(source));
        }
        if problems.is_empty() {
            Ok(SqlSources { sources })
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The source configured as `name`.
    fn get(&self, name: &str) -> Option<Arc<SqlSource>> {
        self.sources.get(name).cloned()
    }
}

/// The limits of one source, from its config or the defaults.
#[derive(Debug, Clone, Copy)]
struct SqlLimits {
    max_rows: u64,
    max_bytes: u64,
    timeout: Duration,
}

/// One configured source and its pool.
struct SqlSource {
    name: String,
    backend: Backend,
}

enum Backend {
    Sqlite(sqlite::SqlitePool),
    Postgres(postgres::PostgresPool),
}

impl SqlSource {
    async fn query(
        &self,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<QueryResult, DataError> {
        match &self.backend {
            Backend::Sqlite(pool) => pool.query(statement, params).await,
            Backend::Postgres(pool) => pool.query(&statement, &params).await,
        }
        .map_err(|e| self.located(e))
    }

    async fn execute(&self, statement: String, params: Vec<SqlValue>) -> Result<u64, DataError> {
        match &self.backend {
            Backend::Sqlite(pool) => pool.execute(statement, params).await,
            Backend::Postgres(pool) => pool.execute(&statement, &params).await,
        }
        .map_err(|e| self.located(e))
    }

    /// Prefixes an error's message with the source it came from.
    fn located(&self, error: DataError) -> DataError {
        let name = &self.name;
        match error {
            DataError::Denied(m) => DataError::Denied(format!("SQL source `{name}`: {m}")),
            DataError::Invalid(m) => DataError::Invalid(format!("SQL source `{name}`: {m}")),
            DataError::Timeout(m) => DataError::Timeout(format!("SQL source `{name}`: {m}")),
            DataError::Failed(m) => DataError::Failed(format!("SQL source `{name}`: {m}")),
        }
    }
}

/// What a plugin's `sql` handle stands for: the source it opened, checked at `open`. It holds no
/// connection; each statement borrows one from the pool.
pub(crate) struct SqlHandle {
    source: Arc<SqlSource>,
}

/// The `sql` handles a call holds: counted in its own resource table, so a handle dropped by the
/// plugin, or with the table when the call ends, is no longer counted, and no state outlives the
/// call. The table holds at most [`crate::sandbox::MAX_RESOURCES`] entries, so the walk is bounded.
fn open_handles(table: &mut wasmtime::component::ResourceTable) -> usize {
    table
        .iter_mut()
        .filter(|entry| entry.is::<SqlHandle>())
        .count()
}

/// Collects result rows up to a source's row and byte limits.
struct RowCollector {
    max_rows: u64,
    max_bytes: u64,
    bytes: u64,
    rows: Vec<Vec<SqlValue>>,
    truncated: bool,
}

impl RowCollector {
    fn new(limits: &SqlLimits) -> Self {
        RowCollector {
            max_rows: limits.max_rows,
            max_bytes: limits.max_bytes,
            bytes: 0,
            rows: Vec::new(),
            truncated: false,
        }
    }

    /// Whether one more row of `size` bytes (as [`value_size`] counts them) fits the limits,
    /// asked before the row is copied or decoded; if not, the result is marked truncated.
    fn fits(&mut self, size: u64) -> bool {
        if self.rows.len() as u64 >= self.max_rows
            || self.bytes.saturating_add(size) > self.max_bytes
        {
            self.truncated = true;
            return false;
        }
        true
    }

    /// Adds a row, or notes that it was left out. Returns whether more rows may follow.
    fn push(&mut self, row: Vec<SqlValue>) -> bool {
        let size: u64 = row.iter().map(value_size).sum();
        if !self.fits(size) {
            return false;
        }
        self.bytes += size;
        self.rows.push(row);
        true
    }
}

/// The bytes a value counts against `max_bytes`.
fn value_size(value: &SqlValue) -> u64 {
    match value {
        SqlValue::Null | SqlValue::Boolean(_) => 1,
        SqlValue::Integer(_) | SqlValue::Real(_) => 8,
        SqlValue::Text(text) => text.len() as u64,
        SqlValue::Blob(bytes) => bytes.len() as u64,
    }
}

/// The statement as kept in the audit log: whitespace collapsed, and cut at
/// [`AUDITED_STATEMENT_CHARS`].
fn audited_statement(statement: &str) -> String {
    let collapsed = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(AUDITED_STATEMENT_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

fn error_outcome(error: &DataError) -> (Outcome, &str) {
    match error {
        DataError::Denied(m) => (Outcome::Denied, m),
        DataError::Invalid(m) | DataError::Timeout(m) | DataError::Failed(m) => {
            (Outcome::Failed, m)
        }
    }
}

impl CallState {
    /// The source behind a handle the host issued; a handle it never issued traps the guest.
    fn sql_source(&mut self, sql: &Resource<Sql>) -> wasmtime::Result<Arc<SqlSource>> {
        let handle = Resource::<SqlHandle>::new_borrow(sql.rep());
        let handle = self
            .ctx()
            .table
            .get(&handle)
            .map_err(|e| wasmtime::format_err!("sql handle that the host never issued: {e}"))?;
        Ok(handle.source.clone())
    }

    /// Commits the record of a statement about to run. A statement whose record cannot be
    /// committed must not run: the error (naming the audit store) is what the plugin gets.
    async fn audit_before(&mut self, source: &str, what: &str) -> Result<(), DataError> {
        self.audit("sql", source, Outcome::Allowed, what)
            .await
            .map_err(|failure| DataError::Failed(failure.to_string()))
    }

    /// Adds what went wrong to the record of a statement that was refused or failed, and
    /// returns the error the plugin gets: the statement's own, or, if even this record cannot
    /// be committed, the audit store's (the call's output is then withheld anyway).
    async fn audit_error(&mut self, source: &str, what: &str, error: DataError) -> DataError {
        let (outcome, why) = error_outcome(&error);
        let detail = format!("{what} — {why}");
        match self.audit("sql", source, outcome, &detail).await {
            Ok(()) => error,
            Err(failure) => DataError::Failed(failure.to_string()),
        }
    }
}

impl Host for CallState {}

impl HostSql for CallState {
    async fn open(&mut self, source: String) -> wasmtime::Result<Result<Resource<Sql>, DataError>> {
        let access = match self.grants.rights.check_sql(&source, false) {
            Ok(access) => access,
            Err(denial) => {
                let error = DataError::Denied(denial);
                return Ok(Err(self.audit_error(&source, "open", error).await));
            }
        };
        let configured = self
            .grants
            .capabilities
            .as_ref()
            .and_then(|caps| caps.sql.get(&source));
        let Some(configured) = configured else {
            // A granted source is a configured one, so this is a host bug, not a policy answer.
            let reason =
                format!("SQL source `{source}` is granted but was not prepared by this host");
            let error = DataError::Failed(reason);
            return Ok(Err(self.audit_error(&source, "open", error).await));
        };
        if open_handles(&mut self.table) >= MAX_SQL_HANDLES_PER_CALL {
            let error = DataError::Denied(format!(
                "this call already holds {MAX_SQL_HANDLES_PER_CALL} open SQL handles, the most \
                 one call may hold: drop a handle before opening another (one handle runs any \
                 number of statements)"
            ));
            return Ok(Err(self.audit_error(&source, "open", error).await));
        }
        if let Err(failure) = self
            .audit(
                "sql",
                &source,
                Outcome::Allowed,
                &format!("open ({})", access.suffix()),
            )
            .await
        {
            return Ok(Err(DataError::Failed(failure.to_string())));
        }
        let handle = self.ctx().table.push(SqlHandle { source: configured })?;
        Ok(Ok(Resource::new_own(handle.rep())))
    }

    async fn query(
        &mut self,
        sql: Resource<Sql>,
        statement: String,
        params: Vec<SqlValue>,
    ) -> wasmtime::Result<Result<QueryResult, DataError>> {
        let source = self.sql_source(&sql)?;
        let what = format!("query: {}", audited_statement(&statement));
        if let Err(error) = self.audit_before(&source.name, &what).await {
            return Ok(Err(error));
        }
        let result = source.query(statement, params).await;
        Ok(match result {
            Ok(value) => Ok(value),
            Err(e) => Err(self.audit_error(&source.name, &what, e).await),
        })
    }

    async fn execute(
        &mut self,
        sql: Resource<Sql>,
        statement: String,
        params: Vec<SqlValue>,
    ) -> wasmtime::Result<Result<u64, DataError>> {
        let source = self.sql_source(&sql)?;
        let what = format!("execute: {}", audited_statement(&statement));
        // Checked at each write, not at open: any granted source opens, for reading.
        if let Err(denial) = self.grants.rights.check_sql(&source.name, true) {
            let error = DataError::Denied(denial);
            return Ok(Err(self.audit_error(&source.name, &what, error).await));
        }
        if let Err(error) = self.audit_before(&source.name, &what).await {
            return Ok(Err(error));
        }
        let result = source.execute(statement, params).await;
        Ok(match result {
            Ok(value) => Ok(value),
            Err(e) => Err(self.audit_error(&source.name, &what, e).await),
        })
    }

    async fn drop(&mut self, sql: Resource<Sql>) -> wasmtime::Result<()> {
        self.ctx()
            .table
            .delete(Resource::<SqlHandle>::new_own(sql.rep()))
            .map_err(|e| wasmtime::format_err!("sql handle that the host never issued: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_rows: u64, max_bytes: u64) -> SqlLimits {
        SqlLimits {
            max_rows,
            max_bytes,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn rows_stop_at_the_row_limit() {
        let mut rows = RowCollector::new(&limits(2, 1000));
        assert!(rows.push(vec![SqlValue::Integer(1)]));
        assert!(rows.push(vec![SqlValue::Integer(2)]));
        assert!(!rows.push(vec![SqlValue::Integer(3)]));
        assert_eq!(rows.rows.len(), 2);
        assert!(rows.truncated);
    }

    #[test]
    fn rows_stop_before_the_byte_limit() {
        let mut rows = RowCollector::new(&limits(100, 10));
        assert!(rows.push(vec![SqlValue::Text("abcdef".into())]));
        assert!(!rows.push(vec![SqlValue::Text("ghijkl".into())]));
        assert_eq!(rows.rows.len(), 1);
        assert!(rows.truncated);
    }

    #[test]
    fn a_result_within_the_limits_is_not_truncated() {
        let mut rows = RowCollector::new(&limits(2, 100));
        assert!(rows.push(vec![SqlValue::Null, SqlValue::Blob(vec![1, 2])]));
        assert!(!rows.truncated);
    }

    #[test]
    fn audited_statements_are_collapsed_and_cut() {
        assert_eq!(audited_statement("SELECT *\n  FROM t"), "SELECT * FROM t");
        let long = "x".repeat(AUDITED_STATEMENT_CHARS + 10);
        let audited = audited_statement(&long);
        assert_eq!(audited.chars().count(), AUDITED_STATEMENT_CHARS + 1);
        assert!(audited.ends_with('…'));
    }
}
