//! The `sql` plugin: query the SQL sources an operator granted (SQLite files and PostgreSQL
//! databases), list their tables and columns, and run writes where the grant is read-write.
//!
//! The plugin holds no credentials and decides nothing about safety: the host binds every
//! parameter, keeps `query` read-only in the database itself, cuts results at the source's
//! limits, times statements out and audits each one. This crate only turns JSON into calls of
//! the `data` interface and back.

use warden_sdk::data::{QueryResult, Sql, SqlValue};
use warden_sdk::prelude::*;
use warden_sdk::serde_json::{self, Value};

/// One value bound to a placeholder of the statement.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Param {
    /// SQL NULL.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A whole number (64-bit).
    Integer(i64),
    /// A number with a fraction.
    Real(f64),
    /// Text; PostgreSQL also parses it as a date, a UUID, a numeric and so on, as the
    /// statement needs.
    Text(String),
    /// Bytes, written as `{"base64": "…"}`.
    Blob {
        /// The bytes, base64-encoded (standard alphabet, padding optional).
        base64: String,
    },
}

/// A statement to run on a granted SQL source.
#[derive(Deserialize, JsonSchema)]
struct StatementInput {
    /// The SQL source, by its name in the operator's config.
    source: String,
    /// One SQL statement. Put values in `params`, never into this text: placeholders are `?`
    /// (or `?1`, `:name`) on SQLite and `$1`, `$2`, … on PostgreSQL.
    sql: String,
    /// The values for the statement's placeholders, in order. Leave out when there are none.
    #[serde(default)]
    params: Vec<Param>,
}

/// A result column.
#[derive(Serialize, JsonSchema)]
struct ColumnOutput {
    /// The column's name.
    name: String,
    /// The type the database declared for it (empty when SQLite knows none, e.g. for an
    /// expression).
    #[serde(rename = "type")]
    type_name: String,
}

/// The rows of a query.
#[derive(Serialize, JsonSchema)]
struct QueryOutput {
    /// The result's columns, in order.
    columns: Vec<ColumnOutput>,
    /// The rows: one value per column. Numbers and booleans are JSON numbers and booleans,
    /// PostgreSQL `numeric`, dates and times are text, arrays are JSON text, and bytes are
    /// `{"base64": "…"}`.
    rows: Vec<Vec<Value>>,
    /// True when rows were left out at the source's row or byte limit: narrow the query (WHERE,
    /// LIMIT, fewer columns) to see the rest.
    truncated: bool,
}

/// What a write changed.
#[derive(Serialize, JsonSchema)]
struct ExecuteOutput {
    /// The rows the statement inserted, updated or deleted (0 for DDL).
    rows_affected: u64,
}

/// Which source to describe.
#[derive(Deserialize, JsonSchema)]
struct TablesInput {
    /// The SQL source, by its name in the operator's config.
    source: String,
}

/// One column of a table.
#[derive(Serialize, JsonSchema)]
struct TableColumn {
    /// The column's name.
    name: String,
    /// Its declared type, e.g. `INTEGER`, `text`, `numeric(10,2)`.
    #[serde(rename = "type")]
    type_name: String,
    /// Whether it may be NULL.
    nullable: bool,
    /// Whether it is part of the primary key.
    primary_key: bool,
}

/// A table or view.
#[derive(Serialize, JsonSchema)]
struct Table {
    /// The PostgreSQL schema; absent on SQLite.
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    /// The table's name.
    name: String,
    /// `table`, `view`, `materialized view` or `foreign table`.
    kind: String,
    /// Its columns, in order.
    columns: Vec<TableColumn>,
}

/// What a source holds.
#[derive(Serialize, JsonSchema)]
struct TablesOutput {
    /// `sqlite` or `postgres`: the SQL dialect to write, and the placeholders to use.
    dialect: String,
    /// The tables and views the source lets this host read, by schema and name.
    tables: Vec<Table>,
    /// True when the list was cut at the source's row limit.
    truncated: bool,
}

fn params(params: Vec<Param>) -> Result<Vec<SqlValue>, ToolError> {
    params
        .into_iter()
        .enumerate()
        .map(|(i, param)| {
            Ok(match param {
                Param::Null => SqlValue::Null,
                Param::Boolean(b) => SqlValue::Boolean(b),
                Param::Integer(n) => SqlValue::Integer(n),
                Param::Real(r) => SqlValue::Real(r),
                Param::Text(t) => SqlValue::Text(t),
                Param::Blob { base64 } => {
                    SqlValue::Blob(base64_decode(&base64).ok_or_else(|| {
                        ToolError::InvalidInput(format!(
                            "params[{i}]: `base64` is not valid base64"
                        ))
                    })?)
                }
            })
        })
        .collect()
}

fn json_value(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Boolean(b) => Value::Bool(b),
        SqlValue::Integer(n) => Value::from(n),
        // JSON has no NaN or infinities: those travel as text.
        SqlValue::Real(r) => serde_json::Number::from_f64(r)
            .map_or_else(|| Value::String(r.to_string()), Value::Number),
        SqlValue::Text(t) => Value::String(t),
        SqlValue::Blob(b) => serde_json::json!({ "base64": base64_encode(&b) }),
    }
}

fn open(source: &str) -> Result<Sql, ToolError> {
    if source.is_empty() {
        return Err(ToolError::InvalidInput(
            "`source` is empty: name a SQL source from the operator's config".into(),
        ));
    }
    Ok(Sql::open(source)?)
}

fn query(_ctx: &Context, input: StatementInput) -> Result<QueryOutput, ToolError> {
    let values = params(input.params)?;
    let result = open(&input.source)?.query(&input.sql, &values)?;
    Ok(query_output(result))
}

fn query_output(result: QueryResult) -> QueryOutput {
    QueryOutput {
        columns: result
            .columns
            .into_iter()
            .map(|c| ColumnOutput {
                name: c.name,
                type_name: c.type_name,
            })
            .collect(),
        rows: result
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(json_value).collect())
            .collect(),
        truncated: result.truncated,
    }
}

fn execute(_ctx: &Context, input: StatementInput) -> Result<ExecuteOutput, ToolError> {
    let values = params(input.params)?;
    let rows_affected = open(&input.source)?.execute(&input.sql, &values)?;
    Ok(ExecuteOutput { rows_affected })
}

/// Tables and columns of a SQLite database, one row per column.
const SQLITE_TABLES: &str = "\
    SELECT m.name, m.type, p.name, p.type, p.\"notnull\", p.pk \
    FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p \
    WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
    ORDER BY m.name, p.cid";

/// Tables and columns of a PostgreSQL database that this connection may read, one row per
/// column, leaving out the system schemas.
const POSTGRES_TABLES: &str = "\
    SELECT n.nspname::text, c.relname::text, c.relkind::text, a.attname::text, \
           format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
           EXISTS (SELECT 1 FROM pg_index i \
                   WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey)) \
    FROM pg_class c \
    JOIN pg_namespace n ON n.oid = c.relnamespace \
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
      AND n.nspname NOT LIKE 'pg\\_%' \
      AND has_table_privilege(c.oid, 'SELECT') \
    ORDER BY n.nspname, c.relname, a.attnum";

fn tables(_ctx: &Context, input: TablesInput) -> Result<TablesOutput, ToolError> {
    let sql = open(&input.source)?;
    // PostgreSQL declares a type for every result column, SQLite none for an expression: one
    // query that works on both tells them apart, without a failed statement in the audit log.
    let probe = sql.query("SELECT 1", &[])?;
    let postgres = probe
        .columns
        .first()
        .is_some_and(|c| !c.type_name.is_empty());
    let result = sql.query(
        if postgres {
            POSTGRES_TABLES
        } else {
            SQLITE_TABLES
        },
        &[],
    )?;
    let mut tables: Vec<Table> = Vec::new();
    for row in result.rows {
        let (schema, table, kind, column, type_name, nullable, primary_key) = if postgres {
            let [
                schema,
                table,
                kind,
                column,
                type_name,
                nullable,
                primary_key,
            ] = <[SqlValue; 7]>::try_from(row).map_err(|_| unexpected())?;
            (
                Some(text(schema)),
                text(table),
                postgres_kind(&text(kind)).to_string(),
                text(column),
                text(type_name),
                truthy(&nullable),
                truthy(&primary_key),
            )
        } else {
            let [table, kind, column, type_name, not_null, pk] =
                <[SqlValue; 6]>::try_from(row).map_err(|_| unexpected())?;
            (
                None,
                text(table),
                text(kind),
                text(column),
                text(type_name),
                !truthy(&not_null),
                truthy(&pk),
            )
        };
        let entry = TableColumn {
            name: column,
            type_name,
            nullable,
            primary_key,
        };
        match tables.last_mut() {
            Some(last) if last.name == table && last.schema == schema => last.columns.push(entry),
            _ => tables.push(Table {
                schema,
                name: table,
                kind,
                columns: vec![entry],
            }),
        }
    }
    Ok(TablesOutput {
        dialect: if postgres { "postgres" } else { "sqlite" }.into(),
        tables,
        truncated: result.truncated,
    })
}

fn unexpected() -> ToolError {
    ToolError::Failed("the catalog query returned an unexpected shape".into())
}

fn text(value: SqlValue) -> String {
    match value {
        SqlValue::Text(t) => t,
        SqlValue::Integer(n) => n.to_string(),
        SqlValue::Null => String::new(),
        other => format!("{other:?}"),
    }
}

fn truthy(value: &SqlValue) -> bool {
    match value {
        SqlValue::Boolean(b) => *b,
        SqlValue::Integer(n) => *n != 0,
        _ => false,
    }
}

fn postgres_kind(relkind: &str) -> &'static str {
    match relkind {
        "v" => "view",
        "m" => "materialized view",
        "f" => "foreign table",
        _ => "table",
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u32> = text
        .trim_end_matches('=')
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| BASE64.iter().position(|&c| c == b).map(|p| p as u32))
        .collect::<Option<_>>()?;
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | d << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

fn tools() -> Tools {
    Tools::new()
        .tool(
            "query",
            "Runs one read-only SQL statement (SELECT, WITH, EXPLAIN, SHOW…) on a SQL source the \
             operator granted, and returns its columns and rows. Put every value in `params`, \
             never into the SQL text: placeholders are `?` on SQLite and `$1`, `$2`, … on \
             PostgreSQL. The database itself refuses writes here, whatever the grant. Results \
             stop at the source's row and byte limits (`truncated: true`); narrow the query to see \
             more. Call `tables` first to learn the dialect and the table and column names.",
            query,
        )
        .tool(
            "tables",
            "Lists the tables and views of a SQL source the operator granted, with each column's \
             name, type, whether it may be NULL and whether it is in the primary key, and says \
             whether the source is SQLite or PostgreSQL (its SQL dialect and placeholders).",
            tables,
        )
        .tool(
            "execute",
            "Runs one SQL statement that changes data (INSERT, UPDATE, DELETE, or DDL) on a SQL \
             source granted read-write, in a transaction of its own, and returns how many rows it \
             changed. Put every value in `params`, never into the SQL text: placeholders are `?` \
             on SQLite and `$1`, `$2`, … on PostgreSQL. Denied on a read-only grant.",
            execute,
        )
}

warden_sdk::export_plugin!(tools);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\x00\xff\x10"] {
            let text = base64_encode(bytes);
            assert_eq!(base64_decode(&text).as_deref(), Some(bytes), "{text}");
        }
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        assert_eq!(base64_decode("Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Zm9v!").is_none());
    }
}
