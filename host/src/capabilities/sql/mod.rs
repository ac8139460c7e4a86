//! The `data` interface's SQL sources (SQLite files and PostgreSQL).
//!
//! Placeholder until the SQL capability lands: every source is denied, naming the grant, and no
//! handle is ever created.

use wasmtime::component::Resource;

use crate::bindings::data::{DataError, Host, HostSql, QueryResult, Sql, SqlValue};
use crate::config::WardenConfig;
use crate::policy::Outcome;
use crate::sandbox::CallState;

/// Every configured SQL source.
#[derive(Debug, Default)]
pub struct SqlSources {}

impl SqlSources {
    /// Prepares the configured SQL sources.
    pub fn configure(_config: &WardenConfig) -> Result<SqlSources, String> {
        Ok(SqlSources {})
    }
}

fn forged() -> wasmtime::Error {
    wasmtime::format_err!("sql handle that the host never issued")
}

impl Host for CallState {}

impl HostSql for CallState {
    async fn open(&mut self, source: String) -> wasmtime::Result<Result<Resource<Sql>, DataError>> {
        if let Err(denial) = self.grants.rights.check_sql(&source, false) {
            self.audit("sql", &source, Outcome::Denied, &denial);
            return Ok(Err(DataError::Denied(denial)));
        }
        let reason = "this host does not serve SQL sources yet";
        self.audit("sql", &source, Outcome::Failed, reason);
        Ok(Err(DataError::Failed(format!(
            "SQL source `{source}`: {reason}"
        ))))
    }

    async fn query(
        &mut self,
        _sql: Resource<Sql>,
        _statement: String,
        _params: Vec<SqlValue>,
    ) -> wasmtime::Result<Result<QueryResult, DataError>> {
        Err(forged())
    }

    async fn execute(
        &mut self,
        _sql: Resource<Sql>,
        _statement: String,
        _params: Vec<SqlValue>,
    ) -> wasmtime::Result<Result<u64, DataError>> {
        Err(forged())
    }

    async fn drop(&mut self, _sql: Resource<Sql>) -> wasmtime::Result<()> {
        Ok(())
    }
}
