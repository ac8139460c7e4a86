//! Test plugin: one tool per memory operation (`get`, `put`, `delete`, `list`), plus
//! `increment`, a compare-and-swap counter that retries on conflict and says how many attempts
//! it took. A memory error is not a tool error here: each tool returns it as `error`, with its
//! kind, so the host's tests can read exactly what the plugin was told.

use warden_sdk::memory::{Entry, MemoryError, Namespace};
use warden_sdk::prelude::*;
use warden_sdk::serde_json::{self, Value};

/// Which namespace and key.
#[derive(Deserialize, JsonSchema)]
struct KeyInput {
    /// `session`, `agent` or a shared namespace.
    ns: String,
    key: String,
}

/// A write.
#[derive(Deserialize, JsonSchema)]
struct PutInput {
    ns: String,
    key: String,
    /// The value, any JSON; or `raw`, written as it is.
    #[serde(default)]
    value: Value,
    /// JSON text written as it is, instead of `value` (for values that are not JSON).
    #[serde(default)]
    raw: Option<String>,
    /// Compare-and-swap: the version the entry must be at (0: must not exist).
    #[serde(default)]
    expected_version: Option<u64>,
}

/// A delete.
#[derive(Deserialize, JsonSchema)]
struct DeleteInput {
    ns: String,
    key: String,
    #[serde(default)]
    expected_version: Option<u64>,
}

/// A listing.
#[derive(Deserialize, JsonSchema)]
struct ListInput {
    ns: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: u32,
}

/// A counter to add one to, `times` times.
#[derive(Deserialize, JsonSchema)]
struct IncrementInput {
    ns: String,
    key: String,
    /// How many increments, each its own compare-and-swap (default 1).
    #[serde(default)]
    times: Option<u32>,
}

/// How many handles to hold open at once.
#[derive(Deserialize, JsonSchema)]
struct OpenManyInput {
    ns: String,
    count: u32,
}

/// What a tool did: its result, or the memory error it got.
#[derive(Serialize, JsonSchema)]
struct Report {
    /// The operation's result (an entry, a version, a page, ...), or null.
    result: Value,
    /// `{kind, message, current_version}`, or null.
    error: Option<Value>,
}

fn entry_json(entry: &Entry) -> Value {
    serde_json::json!({
        "key": entry.key,
        "value": serde_json::from_str::<Value>(&entry.value).unwrap_or(Value::Null),
        "version": entry.version,
        "written_by_agent": entry.written_by_agent,
        "written_by_tool": entry.written_by_tool,
        "updated_at_ms": entry.updated_at_ms,
    })
}

fn error_json(error: &MemoryError) -> Value {
    let (kind, message, current) = match error {
        MemoryError::Denied(m) => ("denied", m.clone(), None),
        MemoryError::Conflict { current_version } => {
            ("conflict", error.to_string(), *current_version)
        }
        MemoryError::Invalid(m) => ("invalid", m.clone(), None),
        MemoryError::Failed(m) => ("failed", m.clone(), None),
    };
    serde_json::json!({"kind": kind, "message": message, "current_version": current})
}

fn report(result: Result<Value, MemoryError>) -> Result<Report, ToolError> {
    Ok(match result {
        Ok(result) => Report {
            result,
            error: None,
        },
        Err(error) => Report {
            result: Value::Null,
            error: Some(error_json(&error)),
        },
    })
}

fn get(_ctx: &Context, input: KeyInput) -> Result<Report, ToolError> {
    report((|| {
        let ns = Namespace::open(&input.ns)?;
        Ok(ns.get(&input.key)?.as_ref().map_or(Value::Null, entry_json))
    })())
}

fn put(_ctx: &Context, input: PutInput) -> Result<Report, ToolError> {
    report((|| {
        let ns = Namespace::open(&input.ns)?;
        let text = input.raw.unwrap_or_else(|| input.value.to_string());
        let version = ns.put(&input.key, &text, input.expected_version)?;
        Ok(Value::from(version))
    })())
}

fn delete(_ctx: &Context, input: DeleteInput) -> Result<Report, ToolError> {
    report((|| {
        let ns = Namespace::open(&input.ns)?;
        Ok(Value::Bool(ns.delete(&input.key, input.expected_version)?))
    })())
}

fn list(_ctx: &Context, input: ListInput) -> Result<Report, ToolError> {
    report((|| {
        let ns = Namespace::open(&input.ns)?;
        let page = ns.list(&input.prefix, input.cursor.as_deref(), input.limit)?;
        Ok(serde_json::json!({
            "entries": page.entries.iter().map(entry_json).collect::<Vec<_>>(),
            "next_cursor": page.next_cursor,
        }))
    })())
}

/// Enough rounds that two writers racing on one key always get through.
const MAX_ATTEMPTS: u32 = 10_000;

fn increment(_ctx: &Context, input: IncrementInput) -> Result<Report, ToolError> {
    report((|| {
        let ns = Namespace::open(&input.ns)?;
        let (mut value, mut attempts) = (0u64, 0u32);
        for _ in 0..input.times.unwrap_or(1) {
            let updated = ns.update(&input.key, MAX_ATTEMPTS, |n: Option<u64>| {
                n.unwrap_or(0) + 1
            })?;
            value = updated.value;
            attempts += updated.attempts;
        }
        Ok(serde_json::json!({"value": value, "attempts": attempts}))
    })())
}

fn open_many(_ctx: &Context, input: OpenManyInput) -> Result<Report, ToolError> {
    let mut held = Vec::new();
    for _ in 0..input.count {
        match Namespace::open(&input.ns) {
            Ok(ns) => held.push(ns),
            Err(error) => {
                return Ok(Report {
                    result: Value::from(held.len()),
                    error: Some(error_json(&error)),
                });
            }
        }
    }
    report(Ok(Value::from(held.len())))
}

fn tools() -> Tools {
    Tools::new()
        .tool("get", "Reads one memory entry.", get)
        .tool(
            "put",
            "Writes one memory entry, with an optional expected version.",
            put,
        )
        .tool(
            "delete",
            "Deletes one memory entry, with an optional expected version.",
            delete,
        )
        .tool(
            "list",
            "Lists memory entries by prefix, one page from a cursor.",
            list,
        )
        .tool(
            "increment",
            "Adds one to a counter with compare-and-swap, retrying on conflict; returns the \
             value written and the attempts it took.",
            increment,
        )
        .tool(
            "open-many",
            "Opens one namespace `count` times, holding every handle; returns how many opened.",
            open_many,
        )
}

warden_sdk::export_plugin!(tools);
