//! Test plugin: `count` writes one row per execution of itself into table `executions` of a
//! granted read-write SQL source, keyed by the call id the host gave it, so a test can tell how
//! often each tool call really ran (a completed call must never run twice; a retried one runs
//! again with the same call id). Each row also keeps the session and agent the call ran for, and
//! when it started and finished. It sleeps between its start and its end, so a test can kill
//! the host while a call is in flight, or see two calls overlap. `fail` always fails.
//!
//! The source may be SQLite or PostgreSQL: a probe query (`SELECT version()`, which only
//! PostgreSQL answers) picks the dialect, and with it the DDL and the placeholders. On
//! PostgreSQL each row also records the connection's `application_name`, so a test that gives
//! each host its own (in the source's URL) can tell which host ran an execution.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use warden_sdk::data::{Sql, SqlValue};
use warden_sdk::prelude::*;

/// The longest `sleep_ms` accepted.
const MAX_SLEEP_MS: u64 = 60_000;

/// The table, created on first use. `execution` is unique per run of the tool (a retry with the
/// same call id is a new execution); `finished_ms` stays NULL until the sleep is over.
const CREATE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS executions (
    id          INTEGER PRIMARY KEY,
    execution   TEXT NOT NULL UNIQUE,
    call_id     TEXT NOT NULL,
    session     TEXT NOT NULL,
    agent       TEXT NOT NULL,
    label       TEXT NOT NULL,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER
)";

/// The same table on PostgreSQL, with the connection's `application_name` as `host`.
const CREATE_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS executions (
    id          BIGSERIAL PRIMARY KEY,
    execution   TEXT NOT NULL UNIQUE,
    call_id     TEXT NOT NULL,
    session     TEXT NOT NULL,
    agent       TEXT NOT NULL,
    label       TEXT NOT NULL,
    started_ms  BIGINT NOT NULL,
    finished_ms BIGINT,
    host        TEXT DEFAULT current_setting('application_name')
)";

/// The SQL dialect of a source.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// PostgreSQL if the source answers `SELECT version()` with a PostgreSQL banner; SQLite
    /// (which has no `version()`) otherwise.
    fn of(sql: &Sql) -> Dialect {
        match sql.query("SELECT version()", &[]) {
            Ok(result) => match result.rows.first().and_then(|row| row.first()) {
                Some(SqlValue::Text(banner)) if banner.starts_with("PostgreSQL") => {
                    Dialect::Postgres
                }
                _ => Dialect::Sqlite,
            },
            Err(_) => Dialect::Sqlite,
        }
    }

    fn create(self) -> &'static str {
        match self {
            Dialect::Sqlite => CREATE_SQLITE,
            Dialect::Postgres => CREATE_POSTGRES,
        }
    }

    fn insert(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "INSERT INTO executions (execution, call_id, session, agent, label, started_ms) \
                 VALUES (?, ?, ?, ?, ?, ?)"
            }
            Dialect::Postgres => {
                "INSERT INTO executions (execution, call_id, session, agent, label, started_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            }
        }
    }

    fn finish(self) -> &'static str {
        match self {
            Dialect::Sqlite => "UPDATE executions SET finished_ms = ? WHERE execution = ?",
            Dialect::Postgres => "UPDATE executions SET finished_ms = $1 WHERE execution = $2",
        }
    }
}

fn default_source() -> String {
    "ledger".into()
}

/// Input of `count`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CountInput {
    /// A label for this execution, recorded with it.
    label: String,
    /// How long to wait, in milliseconds, between recording the start and the end (0 to 60000).
    #[serde(default)]
    #[schemars(range(max = 60000))]
    sleep_ms: u64,
    /// The SQL source holding the `executions` table (default `ledger`); needs a read-write grant.
    #[serde(default = "default_source")]
    source: String,
}

/// Output of `count`.
#[derive(Serialize, JsonSchema)]
struct CountOutput {
    /// The label given.
    label: String,
    /// The call id the host gave this call.
    call_id: String,
}

/// Input of `fail`.
#[derive(Deserialize, JsonSchema)]
struct FailInput {
    /// Said in the error, if given.
    #[serde(default)]
    reason: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// An id for this execution: the call id, the time in nanoseconds and a random number.
fn execution_id(call_id: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    format!("{call_id}/{nanos}/{:016x}", hasher.finish())
}

fn count(ctx: &Context, input: CountInput) -> Result<CountOutput, ToolError> {
    if input.sleep_ms > MAX_SLEEP_MS {
        return Err(ToolError::InvalidInput(format!(
            "sleep_ms is {}; the most is {MAX_SLEEP_MS}",
            input.sleep_ms
        )));
    }
    let sql = Sql::open(&input.source)?;
    let failed = |what: &str, e: warden_sdk::data::DataError| {
        ToolError::Failed(format!("{what} in source `{}`: {e}", input.source))
    };
    let dialect = Dialect::of(&sql);
    // Two first calls at once on PostgreSQL can race in CREATE TABLE IF NOT EXISTS (one fails
    // on the catalog's unique index); the table exists by the second try.
    if let Err(e) = sql.execute(dialect.create(), &[]) {
        if dialect == Dialect::Sqlite {
            return Err(failed("creating table `executions`", e));
        }
        sql.execute(dialect.create(), &[])
            .map_err(|e| failed("creating table `executions`", e))?;
    }
    let execution = execution_id(&ctx.call_id);
    sql.execute(
        dialect.insert(),
        &[
            SqlValue::from(execution.as_str()),
            SqlValue::from(ctx.call_id.as_str()),
            SqlValue::from(ctx.session.as_str()),
            SqlValue::from(ctx.agent.as_str()),
            SqlValue::from(input.label.as_str()),
            SqlValue::from(now_ms()),
        ],
    )
    .map_err(|e| failed("recording the start", e))?;
    if input.sleep_ms > 0 {
        std::thread::sleep(Duration::from_millis(input.sleep_ms));
    }
    sql.execute(
        dialect.finish(),
        &[SqlValue::from(now_ms()), SqlValue::from(execution.as_str())],
    )
    .map_err(|e| failed("recording the end", e))?;
    Ok(CountOutput {
        label: input.label,
        call_id: ctx.call_id.clone(),
    })
}

fn fail(_ctx: &Context, input: FailInput) -> Result<warden_sdk::Empty, ToolError> {
    Err(ToolError::Failed(match input.reason {
        Some(reason) => format!("the fail tool always fails ({reason})"),
        None => "the fail tool always fails".into(),
    }))
}

fn tools() -> Tools {
    Tools::new()
        .tool(
            "count",
            "Records one execution of itself (call id, session, label, start and end time) in table \
             `executions` of a read-write SQL source, sleeping `sleep_ms` in between, and \
             returns the label and its call id.",
            count,
        )
        .tool("fail", "Always fails, with a tool error.", fail)
}

warden_sdk::export_plugin!(tools);
