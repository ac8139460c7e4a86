//! Test plugin: `script` runs several statements on one SQL source within one call, or opens
//! many handles to it and keeps them, and reports what each step got. The `sql` plugin runs one
//! statement per call, but an attack (a process-wide setting changed, then used) and the cap on
//! open handles both happen within a call.

use warden_sdk::data::{Sql, SqlValue};
use warden_sdk::prelude::*;
use warden_sdk::serde_json::{Value, json};

/// One statement of the script.
#[derive(Deserialize, JsonSchema)]
struct Step {
    /// `query` or `execute`.
    verb: String,
    /// The statement, without parameters.
    sql: String,
}

/// Input of `script`.
#[derive(Deserialize, JsonSchema)]
struct ScriptInput {
    /// The SQL source, by its name in the operator's config.
    source: String,
    /// Statements to run in order on one handle; a failed one does not stop the next.
    #[serde(default)]
    steps: Vec<Step>,
    /// Handles to open and keep until the call ends, before the steps.
    #[serde(default)]
    open: u32,
}

/// Output of `script`.
#[derive(Serialize, JsonSchema)]
struct ScriptOutput {
    /// How many of the `open` handles were opened.
    opened: u32,
    /// Why the first handle that could not be opened was refused, if one was.
    open_error: Option<String>,
    /// Per step, `{"rows": …}`, `{"changed": n}` or `{"error": "…"}`.
    results: Vec<Value>,
}

fn value(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Boolean(b) => json!(b),
        SqlValue::Integer(n) => json!(n),
        SqlValue::Real(r) => json!(r),
        SqlValue::Text(t) => json!(t),
        SqlValue::Blob(b) => json!({ "blob_bytes": b.len() }),
    }
}

fn script(_ctx: &Context, input: ScriptInput) -> Result<ScriptOutput, ToolError> {
    let mut held = Vec::new();
    let mut open_error = None;
    for _ in 0..input.open {
        match Sql::open(&input.source) {
            Ok(sql) => held.push(sql),
            Err(e) => {
                open_error = Some(e.to_string());
                break;
            }
        }
    }
    let opened = held.len() as u32;
    let mut results = Vec::new();
    if !input.steps.is_empty() {
        let sql = match held.pop() {
            Some(sql) => sql,
            None => Sql::open(&input.source)?,
        };
        for step in input.steps {
            let result = match step.verb.as_str() {
                "query" => sql.query(&step.sql, &[]).map(|r| {
                    let rows: Vec<Vec<Value>> = r
                        .rows
                        .into_iter()
                        .map(|row| row.into_iter().map(value).collect())
                        .collect();
                    json!({ "rows": rows, "truncated": r.truncated })
                }),
                "execute" => sql.execute(&step.sql, &[]).map(|n| json!({ "changed": n })),
                other => {
                    return Err(ToolError::InvalidInput(format!(
                        "step verb `{other}`: use `query` or `execute`"
                    )));
                }
            };
            results.push(result.unwrap_or_else(|e| json!({ "error": e.to_string() })));
        }
    }
    Ok(ScriptOutput {
        opened,
        open_error,
        results,
    })
}

fn tools() -> Tools {
    Tools::new().tool(
        "script",
        "Opens `open` handles to a SQL source and keeps them, then runs `steps` in order on one \
         handle, reporting each result or error. For testing the host's SQL guards.",
        script,
    )
}

warden_sdk::export_plugin!(tools);
