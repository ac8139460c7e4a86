//! The `data` interface's SQL sources. Sources and grants come with the operator's config;
//! until then every source is denied, naming the grant, and no handle is ever created.

use wasmtime::component::Resource;

use super::not_granted;
use crate::bindings::data::{DataError, Host, HostSql, QueryResult, Sql, SqlValue};
use crate::sandbox::CallState;

fn forged() -> wasmtime::Error {
    wasmtime::format_err!("sql handle that the host never issued")
}

impl Host for CallState {}

impl HostSql for CallState {
    async fn open(&mut self, source: String) -> wasmtime::Result<Result<Resource<Sql>, DataError>> {
        Ok(Err(DataError::Denied(not_granted(
            &format!("data source `{source}`"),
            &format!("{source}:ro"),
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
