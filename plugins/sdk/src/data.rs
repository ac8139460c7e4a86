//! SQL data sources configured by the operator (SQLite or PostgreSQL).
//!
//! Granted directories are not here: they are WASI preopens, read with `std::fs`. Outbound HTTP
//! is `wasi:http`.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

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
    /// A row did not fit the type it was read into (see [`Sql::query_as`]); the message names
    /// the row and the column.
    Mismatch(String),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Denied(message) => write!(f, "data access denied: {message}"),
            DataError::Invalid(message) => write!(f, "invalid statement: {message}"),
            DataError::Timeout(message) => write!(f, "statement timed out: {message}"),
            DataError::Failed(message) => write!(f, "data source failed: {message}"),
            DataError::Mismatch(message) => write!(f, "a row does not fit its type: {message}"),
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

impl From<i32> for SqlValue {
    fn from(value: i32) -> Self {
        SqlValue::Integer(value.into())
    }
}

impl From<u32> for SqlValue {
    fn from(value: u32) -> Self {
        SqlValue::Integer(value.into())
    }
}

impl From<&String> for SqlValue {
    fn from(value: &String) -> Self {
        SqlValue::Text(value.clone())
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

impl SqlValue {
    /// The value as JSON: `NULL` is `null`, a blob is `{"base64": "..."}`, and a float that JSON
    /// cannot hold (NaN, an infinity) is `null`.
    pub fn to_json(&self) -> Value {
        match self {
            SqlValue::Null => Value::Null,
            SqlValue::Boolean(value) => Value::Bool(*value),
            SqlValue::Integer(value) => Value::from(*value),
            SqlValue::Real(value) => {
                serde_json::Number::from_f64(*value).map_or(Value::Null, Value::Number)
            }
            SqlValue::Text(value) => Value::String(value.clone()),
            SqlValue::Blob(bytes) => {
                let mut object = Map::new();
                object.insert("base64".into(), Value::String(base64(bytes)));
                Value::Object(object)
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            SqlValue::Null => "NULL",
            SqlValue::Boolean(_) => "a boolean",
            SqlValue::Integer(_) => "an integer",
            SqlValue::Real(_) => "a real",
            SqlValue::Text(_) => "text",
            SqlValue::Blob(_) => "a blob",
        }
    }
}

/// Standard base64 with padding: the blob encoding of [`SqlValue::to_json`].
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl QueryResult {
    /// Each row as a JSON object keyed by column name, values as in [`SqlValue::to_json`].
    /// When two columns share a name, the later one wins; alias them (`AS`) to keep both.
    pub fn json_rows(&self) -> Vec<Map<String, Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .zip(row)
                    .map(|(column, value)| (column.name.clone(), value.to_json()))
                    .collect()
            })
            .collect()
    }

    /// Each row as a `T`, its fields taken from the columns of the same name (see
    /// [`Sql::query_as`]).
    pub fn rows_as<T: DeserializeOwned>(&self) -> Result<Vec<T>, DataError> {
        self.rows
            .iter()
            .enumerate()
            .map(|(index, row)| row_as(&self.columns, row, index))
            .collect()
    }
}

/// Reads one row into `T`, naming the row (from 1) and the column that did not fit.
fn row_as<T: DeserializeOwned>(
    columns: &[Column],
    row: &[SqlValue],
    index: usize,
) -> Result<T, DataError> {
    let cells = columns
        .iter()
        .zip(row)
        .map(|(column, value)| (column.name.as_str(), Cell(value)));
    // No `end()` check: columns without a field are ignored, like unknown JSON fields.
    let map = de::value::MapDeserializer::new(cells);
    serde_path_to_error::deserialize(map).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        DataError::Mismatch(if path == "." {
            format!(
                "row {}: {inner} (the columns are: {})",
                index + 1,
                names.join(", ")
            )
        } else {
            format!("row {}, column `{path}`: {inner}", index + 1)
        })
    })
}

/// One cell, read by serde: NULL is `None` (or `()`), an integer 0 or 1 is also a boolean
/// (SQLite has no boolean type), and a blob is bytes or a sequence of `u8` (a `Vec<u8>`).
struct Cell<'a>(&'a SqlValue);

impl<'de> IntoDeserializer<'de, de::value::Error> for Cell<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Cell<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            SqlValue::Null => visitor.visit_unit(),
            SqlValue::Boolean(value) => visitor.visit_bool(*value),
            SqlValue::Integer(value) => visitor.visit_i64(*value),
            SqlValue::Real(value) => visitor.visit_f64(*value),
            SqlValue::Text(value) => visitor.visit_str(value),
            SqlValue::Blob(value) => visitor.visit_bytes(value),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            SqlValue::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            SqlValue::Integer(value @ (0 | 1)) => visitor.visit_bool(*value == 1),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            SqlValue::Blob(bytes) => {
                visitor.visit_seq(de::value::SeqDeserializer::new(bytes.iter().copied()))
            }
            other => Err(de::Error::custom(format!(
                "expected a blob for a sequence, found {}",
                other.kind()
            ))),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // A unit variant stored by name, e.g. a `status` column holding `active`.
        match self.0 {
            SqlValue::Text(value) => visitor.visit_enum(value.as_str().into_deserializer()),
            other => Err(de::Error::custom(format!(
                "expected text naming a variant, found {}",
                other.kind()
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct map struct identifier ignored_any
    }
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

    /// Runs a read statement and reads each row into a `T`, whose fields are taken from the
    /// columns of the same name (`#[serde(rename)]` and `#[serde(default)]` apply; columns with
    /// no field are ignored). `NULL` fits an `Option`, an integer 0 or 1 fits a `bool`, and a
    /// blob fits a `Vec<u8>`. A row that does not fit is a [`DataError::Mismatch`] naming the
    /// row and the column.
    ///
    /// ```ignore
    /// #[derive(Deserialize)]
    /// struct Customer { id: i64, name: String, email: Option<String> }
    /// let rows: Vec<Customer> = sql.query_as("SELECT id, name, email FROM customers", &[])?;
    /// ```
    pub fn query_as<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<Vec<T>, DataError> {
        self.query(statement, params)?.rows_as()
    }

    /// As [`Sql::query_as`], for a statement that returns at most one row of interest: the
    /// first row, or `None` when there is none.
    pub fn query_first_as<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<Option<T>, DataError> {
        let result = self.query(statement, params)?;
        match result.rows.first() {
            Some(row) => row_as(&result.columns, row, 0).map(Some),
            None => Ok(None),
        }
    }

    /// Runs a read statement and returns each row as a JSON object keyed by column name (see
    /// [`QueryResult::json_rows`]); blobs are `{"base64": "..."}`.
    pub fn query_json(
        &self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<Vec<Map<String, Value>>, DataError> {
        Ok(self.query(statement, params)?.json_rows())
    }

    /// Runs a write statement and returns the number of rows affected. Denied unless the grant
    /// is read-write (`SOURCE:rw`).
    pub fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<u64, DataError> {
        let params: Vec<wit::SqlValue> = params.iter().map(to_wit).collect();
        Ok(self.inner.execute(statement, &params)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn result(columns: &[&str], rows: Vec<Vec<SqlValue>>) -> QueryResult {
        QueryResult {
            columns: columns
                .iter()
                .map(|name| Column {
                    name: name.to_string(),
                    type_name: String::new(),
                })
                .collect(),
            rows,
            truncated: false,
        }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Tier {
        Gold,
        Basic,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Customer {
        id: i64,
        name: String,
        vip: bool,
        balance: Option<f64>,
        photo: Option<Vec<u8>>,
        tier: Tier,
    }

    fn customers() -> QueryResult {
        use SqlValue::*;
        result(
            &["id", "name", "vip", "balance", "photo", "tier", "extra"],
            vec![
                vec![
                    Integer(1),
                    Text("Ada".into()),
                    Integer(1),
                    Real(120.5),
                    Blob(vec![0xca, 0xfe]),
                    Text("gold".into()),
                    Null,
                ],
                vec![
                    Integer(2),
                    Text("Bob".into()),
                    Boolean(false),
                    Null,
                    Null,
                    Text("basic".into()),
                    Integer(9),
                ],
            ],
        )
    }

    #[test]
    fn rows_read_into_a_struct_by_column_name() {
        let rows: Vec<Customer> = customers().rows_as().unwrap();
        assert_eq!(
            rows,
            vec![
                Customer {
                    id: 1,
                    name: "Ada".into(),
                    vip: true,
                    balance: Some(120.5),
                    photo: Some(vec![0xca, 0xfe]),
                    tier: Tier::Gold,
                },
                Customer {
                    id: 2,
                    name: "Bob".into(),
                    vip: false,
                    balance: None,
                    photo: None,
                    tier: Tier::Basic,
                },
            ]
        );
    }

    #[test]
    fn a_cell_of_the_wrong_type_names_row_and_column() {
        let mut bad = customers();
        bad.rows[1][1] = SqlValue::Integer(7);
        let err = bad.rows_as::<Customer>().unwrap_err();
        let DataError::Mismatch(message) = &err else {
            panic!("{err:?}");
        };
        assert!(
            message.starts_with("row 2, column `name`: invalid type: integer `7`"),
            "{message}"
        );
        assert!(matches!(
            crate::ToolError::from(err),
            crate::ToolError::Failed(_)
        ));
    }

    #[test]
    fn a_missing_column_is_named_with_the_columns_there_are() {
        let err = result(&["id"], vec![vec![SqlValue::Integer(1)]])
            .rows_as::<Customer>()
            .unwrap_err();
        let DataError::Mismatch(message) = &err else {
            panic!("{err:?}");
        };
        assert!(message.contains("row 1: missing field `name`"), "{message}");
        assert!(message.contains("the columns are: id"), "{message}");
    }

    #[test]
    fn null_in_a_required_column_is_a_mismatch() {
        let mut bad = customers();
        bad.rows[0][0] = SqlValue::Null;
        let err = bad.rows_as::<Customer>().unwrap_err();
        assert!(err.to_string().contains("column `id`"), "{err}");
    }

    #[test]
    fn rows_read_into_json_objects_with_blobs_as_base64() {
        let rows = customers().json_rows();
        assert_eq!(
            serde_json::Value::Object(rows[0].clone()),
            serde_json::json!({
                "id": 1, "name": "Ada", "vip": 1, "balance": 120.5,
                "photo": { "base64": "yv4=" }, "tier": "gold", "extra": null
            })
        );
        assert_eq!(SqlValue::Real(f64::NAN).to_json(), serde_json::Value::Null);
    }

    #[test]
    fn rows_read_into_serde_json_values() {
        let rows: Vec<serde_json::Value> = result(
            &["n", "t"],
            vec![vec![SqlValue::Integer(3), SqlValue::Text("x".into())]],
        )
        .rows_as()
        .unwrap();
        assert_eq!(rows, vec![serde_json::json!({ "n": 3, "t": "x" })]);
    }

    #[test]
    fn base64_pads_like_the_standard() {
        for (bytes, encoded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(bytes), encoded);
        }
    }
}
