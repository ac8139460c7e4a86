//! SQL data sources configured by the operator (SQLite or PostgreSQL).
//!
//! Granted directories are not here: they are WASI preopens, read with `std::fs`. Outbound HTTP
//! is `wasi:http`.

use std::fmt;

use crate::__private::bindings::warden::plugin::data as wit;

/// Why a data operation did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataError {
    /// The source, or writing to it, was not granted; the message names the grant.
    Denied(String),
    /// The statement or its parameters were rejected.
    Invalid(String),
    /// The statement ran past the source's statement timeout.
    Timeout(String),
    /// The source failed or could not be reached.
    Failed(String),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Denied(message) => write!(f, "data access denied: {message}"),
            DataError::Invalid(message) => write!(f, "invalid statement: {message}"),
            DataError::Timeout(message) => write!(f, "statement timed out: {message}"),
            DataError::Failed(message) => write!(f, "data source failed: {message}"),
        }
    }
}

impl std::error::Error for DataError {}

impl From<wit::DataError> for DataError {
    fn from(error: wit::DataError) -> Self {
        match error {
            wit::DataError::Denied(message) => DataError::Denied(message),
            wit::DataError::Invalid(message) => DataError::Invalid(message),
            wit::DataError::Timeout(message) => DataError::Timeout(message),
            wit::DataError::Failed(message) => DataError::Failed(message),
        }
    }
}

/// One SQL value: a bound parameter or a cell of a result row.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A 64-bit integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<bool> for SqlValue {
    fn from(value: bool) -> Self {
        SqlValue::Boolean(value)
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        SqlValue::Integer(value)
    }
}

impl From<f64> for SqlValue {
    fn from(value: f64) -> Self {
        SqlValue::Real(value)
    }
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        SqlValue::Text(value.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        SqlValue::Text(value)
    }
}

impl From<Vec<u8>> for SqlValue {
    fn from(value: Vec<u8>) -> Self {
        SqlValue::Blob(value)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(SqlValue::Null, Into::into)
    }
}

impl From<wit::SqlValue> for SqlValue {
    fn from(value: wit::SqlValue) -> Self {
        match value {
            wit::SqlValue::Null => SqlValue::Null,
            wit::SqlValue::Boolean(value) => SqlValue::Boolean(value),
            wit::SqlValue::Integer(value) => SqlValue::Integer(value),
            wit::SqlValue::Real(value) => SqlValue::Real(value),
            wit::SqlValue::Text(value) => SqlValue::Text(value),
            wit::SqlValue::Blob(value) => SqlValue::Blob(value),
        }
    }
}

fn to_wit(value: &SqlValue) -> wit::SqlValue {
    match value {
        SqlValue::Null => wit::SqlValue::Null,
        SqlValue::Boolean(value) => wit::SqlValue::Boolean(*value),
        SqlValue::Integer(value) => wit::SqlValue::Integer(*value),
        SqlValue::Real(value) => wit::SqlValue::Real(*value),
        SqlValue::Text(value) => wit::SqlValue::Text(value.clone()),
        SqlValue::Blob(value) => wit::SqlValue::Blob(value.clone()),
    }
}

/// A result column: its name and the type the database declared for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// The type the database declared, e.g. `INTEGER` or `text`.
    pub type_name: String,
}

/// The rows of a query, cut at the host's row and byte limits.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The result's columns, in order.
    pub columns: Vec<Column>,
    /// The rows; each has one value per column.
    pub rows: Vec<Vec<SqlValue>>,
    /// True when rows were left out because of a limit.
    pub truncated: bool,
}

/// A SQL source, opened by its configured name.
#[derive(Debug)]
pub struct Sql {
    inner: wit::Sql,
}

impl Sql {
    /// Opens a configured source. Denied unless the calling agent was granted it.
    pub fn open(source: &str) -> Result<Sql, DataError> {
        let inner = wit::Sql::open(source)?;
        Ok(Sql { inner })
    }

    /// Runs a read statement. Parameters are bound (`?` or `$1`, as the database expects),
    /// never spliced into the statement.
    pub fn query(&self, statement: &str, params: &[SqlValue]) -> Result<QueryResult, DataError> {
        let params: Vec<wit::SqlValue> = params.iter().map(to_wit).collect();
        let result = self.inner.query(statement, &params)?;
        Ok(QueryResult {
            columns: result
                .columns
                .into_iter()
                .map(|column| Column {
                    name: column.name,
                    type_name: column.type_name,
                })
                .collect(),
            rows: result
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(SqlValue::from).collect())
                .collect(),
            truncated: result.truncated,
        })
    }

    /// Runs a write statement and returns the number of rows affected. Denied unless the grant
    /// is read-write (`SOURCE:rw`).
    pub fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<u64, DataError> {
        let params: Vec<wit::SqlValue> = params.iter().map(to_wit).collect();
        Ok(self.inner.execute(statement, &params)?)
    }
}
