//! SQL sources: the `sql` plugin on a real SQLite file and on the local PostgreSQL, through the
//! real binary. One test per enforcement point, each of which fails if its check goes away.
//!
//! The PostgreSQL tests need `WARDEN_TEST_POSTGRES_URL` (.ci/run sets it); without it they say
//! they are skipped, and pass. Each uses tables of its own, named after the test and this
//! process, and drops them at the end, since tests run in parallel on one shared database.

use std::path::PathBuf;

use rusqlite::Connection;
use serde_json::{Value, json};

use crate::common::Run;
use crate::workspace::{AUDIT_TAIL_JSON, Workspace, audit_records};

/// The variable a test config names as a postgres source's `url_env`.
const CRM_URL_ENV: &str = "WARDEN_TEST_CRM_URL";

/// A workspace with `crm.db`: a `customers` table of three rows.
fn sqlite_workspace() -> (Workspace, PathBuf) {
    let ws = Workspace::new();
    let db = ws.path().join("crm.db");
    let conn = Connection::open(&db).expect("create crm.db");
    conn.execute_batch(
        "CREATE TABLE customers (
             id INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             vip BOOLEAN,
             balance REAL,
             photo BLOB
         );
         INSERT INTO customers VALUES
             (1, 'Ada', 1, 120.5, x'CAFE'),
             (2, 'Bob', 0, NULL, NULL),
             (3, 'Cy', 0, -3.25, NULL);",
    )
    .expect("fill crm.db");
    (ws, db)
}

/// Writes the config every test starts from: source `crm` is `crm_source` (its keys), the
/// agent `support` may call `sql/*` with `grants`, and the plugin's max is `max`. A `dir` source
/// `handbook` is there to be granted instead.
fn write_config(ws: &Workspace, crm_source: &str, grants: &str, max: &str) {
    ws.config(&format!(
        r#"
        [plugins.sql]
        path = "{{plugins}}/sql.wasm"
        max = {max}
        [sources.crm]
        {crm_source}
        [sources.handbook]
        kind = "dir"
        path = "."
        [agents.support]
        tools = ["sql/*"]
        grants = {grants}
        "#
    ));
}

/// The config of the SQLite tests, `crm` being `crm.db` with `limits` (keys) added.
fn sqlite_config(ws: &Workspace, grants: &str, max: &str, limits: &str) {
    let source = format!("kind = \"sqlite\"\npath = \"crm.db\"\n{limits}");
    write_config(ws, &source, grants, max);
}

fn count(db: &PathBuf, sql: &str) -> i64 {
    Connection::open(db)
        .expect("open crm.db")
        .query_row(sql, [], |row| row.get(0))
        .expect("count")
}

/// `warden ARGS` in the workspace; with `url`, that URL is in the environment variable the
/// config's postgres source names, as an operator would run it.
fn warden_with_url(ws: &Workspace, url: Option<&str>, args: &[&str]) -> Run {
    match url {
        Some(url) => ws.warden_with_env(args, &[(CRM_URL_ENV, url)]),
        None => ws.warden(args),
    }
}

/// `warden call` of the `sql` plugin's `tool`, as agent `support`.
fn call_sql(ws: &Workspace, url: Option<&str>, tool: &str, input: Value) -> Run {
    let input = input.to_string();
    let args = [
        "call",
        "--config",
        "warden.toml",
        "--agent",
        "support",
        "sql",
        tool,
        "--input",
        &input,
    ];
    warden_with_url(ws, url, &args)
}

/// The `sql` plugin's `tool` on a SQLite workspace.
fn sql(ws: &Workspace, tool: &str, input: Value) -> Run {
    call_sql(ws, None, tool, input)
}

/// The `sql` plugin's `tool` on source `crm`, with a statement that takes no parameters.
fn on_crm(ws: &Workspace, tool: &str, statement: &str) -> Run {
    sql(ws, tool, json!({"source": "crm", "sql": statement}))
}

/// The `sql` plugin's `tool` on source `crm`, with `params` for the statement's placeholders.
fn on_crm_with(ws: &Workspace, tool: &str, statement: &str, params: Value) -> Run {
    sql(
        ws,
        tool,
        json!({"source": "crm", "sql": statement, "params": params}),
    )
}

/// The audit log's `sql` records, oldest first.
fn sql_audit(ws: &Workspace, url: Option<&str>) -> Vec<Value> {
    audit_records(&warden_with_url(ws, url, &AUDIT_TAIL_JSON))
        .into_iter()
        .filter(|r| r["capability"] == "sql")
        .collect()
}

#[test]
fn an_allowed_query_returns_typed_rows_and_declared_types() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#, "");
    let run = on_crm_with(
        &ws,
        "query",
        "SELECT id, name, vip, balance, photo FROM customers WHERE id <= ? ORDER BY id",
        json!([2]),
    );
    run.assert_code(0);
    let out = run.json();
    assert_eq!(
        out["columns"],
        json!([
            {"name": "id", "type": "INTEGER"},
            {"name": "name", "type": "TEXT"},
            {"name": "vip", "type": "BOOLEAN"},
            {"name": "balance", "type": "REAL"},
            {"name": "photo", "type": "BLOB"},
        ]),
        "{run:#?}"
    );
    assert_eq!(
        out["rows"],
        json!([
            [1, "Ada", true, 120.5, {"base64": "yv4="}],
            [2, "Bob", false, null, null],
        ])
    );
    assert_eq!(out["truncated"], json!(false));
}

#[test]
fn an_unknown_source_is_not_configured_and_the_sources_are_named() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:*:ro"]"#, "");
    let run = sql(
        &ws,
        "query",
        json!({"source": "billing", "sql": "SELECT 1"}),
    );
    run.assert_fails_with(3, "not configured");
    assert!(
        run.error_line().contains("crm"),
        "the error should name the configured SQL sources: {run:#?}"
    );
}

#[test]
fn a_source_the_agent_was_not_granted_is_denied_naming_the_grant() {
    let (ws, db) = sqlite_workspace();
    sqlite_config(&ws, r#"["handbook:ro"]"#, r#"["sql:crm:ro"]"#, "");
    let run = on_crm(&ws, "query", "SELECT name FROM customers");
    run.assert_fails_with(3, "\"crm:ro\"");
    assert!(
        run.error_line().contains("agents.support.grants"),
        "{run:#?}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM customers"), 3);
}

#[test]
fn a_source_outside_the_plugins_max_is_denied_naming_the_max() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["dir:*:ro"]"#, "");
    let run = on_crm(&ws, "query", "SELECT name FROM customers");
    run.assert_fails_with(3, "plugins.sql.max");
    assert!(run.error_line().contains("sql:crm:ro"), "{run:#?}");
}

#[test]
fn sqlite_refuses_writes_through_query_on_a_read_only_grant() {
    let (ws, db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:rw"]"#, "");
    for statement in [
        "DELETE FROM customers",
        "UPDATE customers SET name = 'Mallory' WHERE id = 1",
        "INSERT INTO customers (id, name) VALUES (9, 'Eve')",
        "DROP TABLE customers",
    ] {
        on_crm(&ws, "query", statement).assert_fails_with(3, "refused to write");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM customers"), 3);
    assert_eq!(
        count(&db, "SELECT count(*) FROM customers WHERE name = 'Ada'"),
        1
    );
}

#[test]
fn execute_on_a_read_only_grant_is_denied_naming_the_rw_grant() {
    let (ws, db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:rw"]"#, "");
    let run = on_crm(&ws, "execute", "DELETE FROM customers");
    run.assert_fails_with(3, "\"crm:rw\"");
    assert_eq!(count(&db, "SELECT count(*) FROM customers"), 3);
}

#[test]
fn execute_on_a_read_write_grant_writes_in_a_transaction() {
    let (ws, db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:rw"]"#, r#"["sql:crm:rw"]"#, "");
    let run = on_crm_with(
        &ws,
        "execute",
        "UPDATE customers SET balance = ? WHERE vip = ?",
        json!([0.5, false]),
    );
    run.assert_code(0);
    assert_eq!(run.json(), json!({"rows_affected": 2}));
    assert_eq!(
        count(&db, "SELECT count(*) FROM customers WHERE balance = 0.5"),
        2
    );
    // A failing statement changes nothing.
    let run = on_crm(
        &ws,
        "execute",
        "INSERT INTO customers (id, name) VALUES (1, 'dup')",
    );
    run.assert_code(2);
    assert_eq!(count(&db, "SELECT count(*) FROM customers"), 3);
}

#[test]
fn a_parameter_that_looks_like_an_injection_is_only_a_value() {
    let (ws, db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:rw"]"#, r#"["sql:crm:rw"]"#, "");
    let run = on_crm_with(
        &ws,
        "query",
        "SELECT id FROM customers WHERE name = ?",
        json!(["x'; DROP TABLE customers; --"]),
    );
    run.assert_code(0);
    assert_eq!(run.json()["rows"], json!([]));
    let run = on_crm_with(
        &ws,
        "query",
        "SELECT id FROM customers WHERE id = ?",
        json!(["1 OR 1=1"]),
    );
    run.assert_code(0);
    assert_eq!(run.json()["rows"], json!([]));
    // Even through `execute` on a read-write grant, the value stays a value.
    let run = on_crm_with(
        &ws,
        "execute",
        "UPDATE customers SET name = ? WHERE id = 3",
        json!(["x'; DROP TABLE customers; --"]),
    );
    run.assert_code(0);
    assert_eq!(count(&db, "SELECT count(*) FROM customers"), 3);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM customers WHERE name = 'x''; DROP TABLE customers; --'"
        ),
        1
    );
}

#[test]
fn the_row_limit_cuts_results_and_sets_truncated() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#, "max_rows = 2");
    let run = on_crm(&ws, "query", "SELECT id FROM customers ORDER BY id");
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["rows"], json!([[1], [2]]));
    assert_eq!(out["truncated"], json!(true));
    // Exactly at the limit, nothing was left out.
    let run = on_crm(&ws, "query", "SELECT id FROM customers WHERE id < 3");
    run.assert_code(0);
    assert_eq!(run.json()["truncated"], json!(false));
}

#[test]
fn the_byte_limit_cuts_results_and_sets_truncated() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#, "max_bytes = 10");
    let run = on_crm(&ws, "query", "SELECT name FROM customers ORDER BY id");
    run.assert_code(0);
    let out = run.json();
    // "Ada", "Bob" and "Cy" make 8 bytes: within the limit.
    assert_eq!(out["rows"], json!([["Ada"], ["Bob"], ["Cy"]]));
    let run = on_crm(
        &ws,
        "query",
        "SELECT name || name FROM customers ORDER BY id",
    );
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["rows"], json!([["AdaAda"]]));
    assert_eq!(out["truncated"], json!(true));
}

#[test]
fn a_statement_past_the_timeout_fails_and_the_next_call_works() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(
        &ws,
        r#"["crm:ro"]"#,
        r#"["sql:crm:ro"]"#,
        "timeout_ms = 200",
    );
    let run = on_crm(
        &ws,
        "query",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
    );
    run.assert_fails_with(4, "200 ms timeout");
    let run = on_crm(&ws, "query", "SELECT count(*) FROM customers");
    run.assert_code(0);
    assert_eq!(run.json()["rows"], json!([[3]]));
}

#[test]
fn attach_cannot_reach_another_file() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:rw"]"#, r#"["sql:crm:rw"]"#, "");
    let other = ws.path().join("other.db");
    let path = other.display().to_string();
    let run = on_crm_with(&ws, "execute", "ATTACH DATABASE ? AS other", json!([path]));
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(!other.exists(), "ATTACH created a file: {run:#?}");
}

#[test]
fn tables_lists_sqlite_tables_and_columns() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#, "");
    let run = sql(&ws, "tables", json!({"source": "crm"}));
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["dialect"], json!("sqlite"), "{run:#?}");
    assert_eq!(out["tables"][0]["name"], json!("customers"));
    assert_eq!(out["tables"][0]["kind"], json!("table"));
    assert_eq!(
        out["tables"][0]["columns"][0],
        json!({"name": "id", "type": "INTEGER", "nullable": true, "primary_key": true})
    );
    assert_eq!(
        out["tables"][0]["columns"][1],
        json!({"name": "name", "type": "TEXT", "nullable": false, "primary_key": false})
    );
}

#[test]
fn the_audit_log_records_sql_uses_and_denials() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:rw"]"#, "");
    on_crm(&ws, "query", "SELECT count(*) FROM customers").assert_code(0);
    on_crm(&ws, "execute", "DELETE FROM customers").assert_code(3);
    let records = sql_audit(&ws, None);
    let has = |outcome: &str, detail: &str| {
        records.iter().any(|r| {
            r["target"] == "crm"
                && r["outcome"] == outcome
                && r["agent"] == "support"
                && r["plugin"] == "sql"
                && r["detail"].as_str().unwrap_or_default().contains(detail)
        })
    };
    assert!(has("allowed", "open (ro)"), "{records:#?}");
    assert!(
        has("allowed", "query: SELECT count(*) FROM customers"),
        "{records:#?}"
    );
    assert!(
        has("denied", "execute: DELETE FROM customers"),
        "{records:#?}"
    );
    ws.warden(&["audit", "verify", "--config", "warden.toml"])
        .assert_code(0);
}

// --- PostgreSQL ---------------------------------------------------------------------------

/// The local PostgreSQL, or `None` (with a line saying the test is skipped) when unset.
fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("WARDEN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped {test}: WARDEN_TEST_POSTGRES_URL is not set (.ci/run sets it to the local \
                 PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// Runs SQL on the test database directly, not through Warden.
fn pg_rows(url: &str, sql: &str) -> Vec<tokio_postgres::SimpleQueryRow> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to WARDEN_TEST_POSTGRES_URL");
        tokio::spawn(connection);
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect()
    })
}

fn pg_count(url: &str, sql: &str) -> i64 {
    pg_rows(url, sql)[0]
        .get(0)
        .expect("a count")
        .parse()
        .expect("a number")
}

/// A table of this test's own, dropped when the test ends, however it ends.
struct PgTable {
    url: String,
    name: String,
}

impl PgTable {
    /// Creates `customers_TAG_PID` with three rows.
    fn customers(url: &str, tag: &str) -> PgTable {
        let name = format!("warden_customers_{tag}_{}", std::process::id());
        pg_rows(
            url,
            &format!(
                "DROP TABLE IF EXISTS {name};
                 CREATE TABLE {name} (
                     id int4 PRIMARY KEY,
                     name text NOT NULL,
                     vip boolean,
                     balance numeric(10, 2),
                     joined date,
                     tags text[],
                     photo bytea
                 );
                 INSERT INTO {name} VALUES
                     (1, 'Ada', true, 120.50, '2024-03-01', ARRAY['a', 'b'], '\\xcafe'),
                     (2, 'Bob', false, NULL, NULL, NULL, NULL),
                     (3, 'Cy', false, -3.25, '1999-12-31', '{{}}', NULL);"
            ),
        );
        PgTable {
            url: url.to_string(),
            name,
        }
    }
}

impl Drop for PgTable {
    fn drop(&mut self) {
        pg_rows(&self.url, &format!("DROP TABLE IF EXISTS {}", self.name));
    }
}

/// The config of the PostgreSQL tests, `crm` being the database in [`CRM_URL_ENV`] with
/// `limits` (keys) added.
fn postgres_config(ws: &Workspace, grants: &str, limits: &str) {
    let source = format!("kind = \"postgres\"\nurl_env = \"{CRM_URL_ENV}\"\n{limits}");
    write_config(ws, &source, grants, r#"["sql:*:rw"]"#);
}

/// The `sql` plugin's `tool` with the postgres source at `url`.
fn pg_sql(ws: &Workspace, url: &str, tool: &str, input: Value) -> Run {
    call_sql(ws, Some(url), tool, input)
}

/// The `sql` plugin's `tool` on source `crm` at `url`, with a statement that takes no parameters.
fn pg_on_crm(ws: &Workspace, url: &str, tool: &str, statement: &str) -> Run {
    pg_sql(ws, url, tool, json!({"source": "crm", "sql": statement}))
}
/// The `sql` plugin's `tool` on source `crm` at `url`, with `params` for its placeholders.
fn pg_on_crm_with(ws: &Workspace, url: &str, tool: &str, statement: &str, params: Value) -> Run {
    pg_sql(
        ws,
        url,
        tool,
        json!({"source": "crm", "sql": statement, "params": params}),
    )
}

#[test]
fn postgres_query_returns_typed_rows() {
    let Some(url) = postgres_url("postgres_query_returns_typed_rows") else {
        return;
    };
    let table = PgTable::customers(&url, "typed");
    let ws = Workspace::new();
    postgres_config(&ws, r#"["crm:ro"]"#, "");
    let run = pg_on_crm_with(
        &ws,
        &url,
        "query",
        &format!(
            "SELECT id, name, vip, balance, joined, tags, photo FROM {} WHERE id <= $1 ORDER BY id",
            table.name
        ),
        json!([2]),
    );
    run.assert_code(0);
    let out = run.json();
    let types: Vec<&str> = out["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        ["int4", "text", "bool", "numeric", "date", "_text", "bytea"],
        "{run:#?}"
    );
    assert_eq!(
        out["rows"],
        json!([
            [1, "Ada", true, "120.50", "2024-03-01", "[\"a\",\"b\"]", {"base64": "yv4="}],
            [2, "Bob", false, null, null, null, null],
        ])
    );
    assert_eq!(out["truncated"], json!(false));
}

#[test]
fn postgres_refuses_writes_through_query_on_a_read_only_grant() {
    let Some(url) = postgres_url("postgres_refuses_writes_through_query_on_a_read_only_grant")
    else {
        return;
    };
    let table = PgTable::customers(&url, "readonly");
    let ws = Workspace::new();
    postgres_config(&ws, r#"["crm:ro"]"#, "");
    let name = &table.name;
    for statement in [
        format!("DELETE FROM {name}"),
        format!("UPDATE {name} SET name = 'Mallory' WHERE id = 1"),
        format!("INSERT INTO {name} (id, name) VALUES (9, 'Eve')"),
        format!("DROP TABLE {name}"),
    ] {
        pg_on_crm(&ws, &url, "query", &statement).assert_fails_with(3, "refused to write");
    }
    assert_eq!(pg_count(&url, &format!("SELECT count(*) FROM {name}")), 3);
    assert_eq!(
        pg_count(
            &url,
            &format!("SELECT count(*) FROM {name} WHERE name = 'Ada'")
        ),
        1
    );
    // And `execute` is refused by the grant, naming the one that would allow it.
    let run = pg_on_crm(&ws, &url, "execute", &format!("DELETE FROM {name}"));
    run.assert_fails_with(3, "\"crm:rw\"");
    assert_eq!(pg_count(&url, &format!("SELECT count(*) FROM {name}")), 3);
}

#[test]
fn postgres_parameters_that_look_like_injections_are_only_values() {
    let Some(url) = postgres_url("postgres_parameters_that_look_like_injections_are_only_values")
    else {
        return;
    };
    let table = PgTable::customers(&url, "injection");
    let ws = Workspace::new();
    postgres_config(&ws, r#"["crm:rw"]"#, "");
    let name = &table.name;
    let run = pg_on_crm_with(
        &ws,
        &url,
        "query",
        &format!("SELECT id FROM {name} WHERE name = $1"),
        json!([format!("x'; DROP TABLE {name}; --")]),
    );
    run.assert_code(0);
    assert_eq!(run.json()["rows"], json!([]));
    // `1 OR 1=1` is not an integer: the server refuses the value instead of running it.
    let run = pg_on_crm_with(
        &ws,
        &url,
        "query",
        &format!("SELECT id FROM {name} WHERE id = $1"),
        json!(["1 OR 1=1"]),
    );
    run.assert_fails_with(2, "invalid input syntax");
    let run = pg_on_crm_with(
        &ws,
        &url,
        "execute",
        &format!("UPDATE {name} SET name = $1 WHERE id = $2"),
        json!([format!("x'; DROP TABLE {name}; --"), 3]),
    );
    run.assert_code(0);
    assert_eq!(run.json(), json!({"rows_affected": 1}));
    assert_eq!(pg_count(&url, &format!("SELECT count(*) FROM {name}")), 3);
}

#[test]
fn postgres_execute_on_a_read_write_grant_writes() {
    let Some(url) = postgres_url("postgres_execute_on_a_read_write_grant_writes") else {
        return;
    };
    let table = PgTable::customers(&url, "execute");
    let ws = Workspace::new();
    postgres_config(&ws, r#"["crm:rw"]"#, "");
    let name = &table.name;
    let run = pg_on_crm_with(
        &ws,
        &url,
        "execute",
        &format!("INSERT INTO {name} (id, name, balance, joined) VALUES ($1, $2, $3, $4)"),
        json!([4, "Dee", 7.5, "2020-02-29"]),
    );
    run.assert_code(0);
    assert_eq!(run.json(), json!({"rows_affected": 1}));
    assert_eq!(
        pg_count(
            &url,
            &format!(
                "SELECT count(*) FROM {name} WHERE id = 4 AND balance = 7.50 AND joined = '2020-02-29'"
            )
        ),
        1
    );
}

#[test]
fn postgres_row_limit_and_timeout() {
    let Some(url) = postgres_url("postgres_row_limit_and_timeout") else {
        return;
    };
    let table = PgTable::customers(&url, "limits");
    let ws = Workspace::new();
    postgres_config(&ws, r#"["crm:ro"]"#, "max_rows = 2\ntimeout_ms = 300");
    let statement = format!("SELECT id FROM {} ORDER BY id", table.name);
    let run = pg_on_crm(&ws, &url, "query", &statement);
    run.assert_code(0);
    assert_eq!(run.json()["rows"], json!([[1], [2]]));
    assert_eq!(run.json()["truncated"], json!(true));
    let run = pg_on_crm(&ws, &url, "query", "SELECT pg_sleep(5)");
    run.assert_fails_with(4, "300 ms timeout");
}

#[test]
fn tables_lists_postgres_tables_and_columns() {
    let Some(url) = postgres_url("tables_lists_postgres_tables_and_columns") else {
        return;
    };
    let table = PgTable::customers(&url, "tables");
    let ws = Workspace::new();
    postgres_config(&ws, r#"["crm:ro"]"#, "");
    let run = pg_sql(&ws, &url, "tables", json!({"source": "crm"}));
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["dialect"], json!("postgres"), "{run:#?}");
    let ours = out["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == json!(table.name))
        .unwrap_or_else(|| panic!("{} is not listed: {run:#?}", table.name));
    assert_eq!(ours["schema"], json!("public"));
    assert_eq!(
        ours["columns"][0],
        json!({"name": "id", "type": "integer", "nullable": false, "primary_key": true})
    );
    assert_eq!(ours["columns"][3]["type"], json!("numeric(10,2)"));
}

#[test]
fn a_postgres_source_that_is_down_fails_clearly_and_the_host_keeps_serving() {
    // No WARDEN_TEST_POSTGRES_URL needed: the point is a server that is not there.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    let url = format!("postgres://warden:secret-password@127.0.0.1:{closed_port}/crm");
    let (ws, _db) = sqlite_workspace();
    ws.config(&format!(
        r#"
        [plugins.sql]
        path = "{{plugins}}/sql.wasm"
        max = ["sql:*:ro"]
        [sources.crm]
        kind = "postgres"
        url_env = "{CRM_URL_ENV}"
        timeout_ms = 2000
        [sources.local]
        kind = "sqlite"
        path = "crm.db"
        [agents.support]
        tools = ["sql/*"]
        grants = ["crm:ro", "local:ro"]
        "#
    ));
    let run = pg_on_crm(&ws, &url, "query", "SELECT 1");
    run.assert_fails_with(4, "cannot connect to the database");
    assert!(
        !run.stderr.contains("secret-password"),
        "the URL's password reached the output: {run:#?}"
    );
    // The other source of the same config still answers.
    let run = pg_sql(
        &ws,
        &url,
        "query",
        json!({"source": "local", "sql": "SELECT count(*) FROM customers"}),
    );
    run.assert_code(0);
    assert_eq!(run.json()["rows"], json!([[3]]));
    let records = sql_audit(&ws, Some(&url));
    assert!(
        records
            .iter()
            .any(|r| r["target"] == "crm" && r["outcome"] == "failed"),
        "{records:#?}"
    );
    assert!(
        !format!("{records:?}").contains("secret-password"),
        "{records:#?}"
    );
}

// --- Guards against a hostile plugin (issue 8) ----------------------------------------------

/// The `sql-script` test plugin, which runs several statements or holds many handles in one
/// call, next to the `sql` plugin; agent `support` may call both with `grants`.
fn script_config(ws: &Workspace, grants: &str) {
    ws.config(&format!(
        r#"
        [plugins.sql]
        path = "{{plugins}}/sql.wasm"
        max = ["sql:*:rw"]
        [plugins.sql-script]
        path = "{{plugins}}/sql-script.wasm"
        max = ["sql:*:rw"]
        [sources.crm]
        kind = "sqlite"
        path = "crm.db"
        [agents.support]
        tools = ["sql/*", "sql-script/*"]
        grants = {grants}
        "#
    ));
}

/// `sql-script`'s `script` as agent `support`.
fn script(ws: &Workspace, input: Value) -> Run {
    ws.call("support", "sql-script", "script", &input.to_string())
}

/// All audit records, oldest first.
fn all_audit(ws: &Workspace) -> Vec<Value> {
    audit_records(&ws.warden(&AUDIT_TAIL_JSON))
}

/// PRAGMAs that set something, most of them for the whole process (the heap limits, the
/// temporary folder) or for the connection the host keeps pooled.
const SETTING_PRAGMAS: [&str; 12] = [
    "PRAGMA hard_heap_limit = 1",
    "PRAGMA soft_heap_limit = 1",
    "PRAGMA mmap_size = 1000000000",
    "PRAGMA temp_store_directory = '/tmp'",
    "PRAGMA cache_size = -2000000",
    "PRAGMA threads = 8",
    "PRAGMA query_only = 0",
    "PRAGMA journal_mode = OFF",
    "PRAGMA writable_schema = 1",
    "PRAGMA trusted_schema = 1",
    "PRAGMA shrink_memory",
    "PRAGMA user_version = 7",
];

#[test]
fn pragmas_that_set_anything_are_refused_through_query_and_execute() {
    let (ws, db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:rw"]"#, r#"["sql:crm:rw"]"#, "");
    for pragma in SETTING_PRAGMAS {
        for verb in ["query", "execute"] {
            let run = on_crm(&ws, verb, pragma);
            assert_eq!(run.code, 3, "{verb} `{pragma}` was not refused: {run:#?}");
            assert!(run.error_line().contains("not authorized"), "{run:#?}");
        }
    }
    assert_eq!(count(&db, "PRAGMA user_version"), 0);
    // The read-only PRAGMAs that describe the schema still answer.
    let run = on_crm(&ws, "query", "PRAGMA table_info(customers)");
    run.assert_code(0);
    assert_eq!(run.json()["rows"].as_array().map(Vec::len), Some(5));
    let run = on_crm(&ws, "query", "PRAGMA user_version");
    run.assert_code(0);
    assert_eq!(run.json()["rows"], json!([[0]]));
}

#[test]
fn a_heap_limit_pragma_on_a_read_only_source_cannot_stop_the_audit() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#, "");
    // The attack through the real `sql` plugin: had the PRAGMA run, the call's own record,
    // written after it in the same process, would have failed with "out of memory".
    let run = on_crm(&ws, "query", "PRAGMA hard_heap_limit = 1");
    run.assert_fails_with(3, "not authorized");
    let records = all_audit(&ws);
    assert!(
        records.iter().any(|r| r["capability"] == "sql"
            && r["outcome"] == "denied"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("query: PRAGMA hard_heap_limit = 1"))),
        "{records:#?}"
    );
    assert!(
        records.iter().any(|r| r["capability"] == "call"),
        "the call's own record is missing: {records:#?}"
    );
    ws.warden(&["audit", "verify", "--config", "warden.toml"])
        .assert_code(0);
}

#[test]
fn process_wide_pragmas_leave_later_uses_in_the_same_call_audited() {
    let (ws, _db) = sqlite_workspace();
    script_config(&ws, r#"["crm:ro"]"#);
    let run = script(
        &ws,
        json!({"source": "crm", "steps": [
            {"verb": "query", "sql": "PRAGMA hard_heap_limit = 1"},
            {"verb": "query", "sql": "PRAGMA soft_heap_limit = 1"},
            {"verb": "query", "sql": "PRAGMA mmap_size = 1000000000"},
            {"verb": "query", "sql": "SELECT count(*) AS later FROM customers"},
        ]}),
    );
    run.assert_code(0);
    let results = run.json()["results"].clone();
    for i in 0..3 {
        assert!(
            results[i]["error"]
                .as_str()
                .is_some_and(|e| e.contains("not authorized")),
            "step {i} was not refused: {results:#?}"
        );
    }
    assert_eq!(results[3]["rows"], json!([[3]]), "{results:#?}");
    let records = all_audit(&ws);
    assert!(
        records.iter().any(|r| r["outcome"] == "allowed"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("SELECT count(*) AS later"))),
        "the later query's record is missing: {records:#?}"
    );
    assert!(
        records.iter().any(|r| r["capability"] == "call"),
        "{records:#?}"
    );
    ws.warden(&["audit", "verify", "--config", "warden.toml"])
        .assert_code(0);
}

#[test]
fn attach_and_vacuum_into_through_query_are_refused() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#, "");
    let other = ws.path().join("other.db");
    let path = other.display().to_string();
    let run = on_crm_with(&ws, "query", "ATTACH DATABASE ? AS other", json!([path]));
    assert_eq!(
        run.code, 3,
        "ATTACH through query was not refused: {run:#?}"
    );
    let run = on_crm_with(&ws, "query", "VACUUM INTO ?", json!([path]));
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(!other.exists(), "a statement created a file: {run:#?}");
}

#[test]
fn a_value_larger_than_max_bytes_cannot_be_built_in_host_memory() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(
        &ws,
        r#"["crm:rw"]"#,
        r#"["sql:crm:rw"]"#,
        "max_bytes = 1000000",
    );
    // Only the value's length comes back, so no result limit stops this: SQLITE_LIMIT_LENGTH
    // does, before SQLite allocates the 50 MB.
    let run = on_crm(&ws, "query", "SELECT length(randomblob(50000000))");
    run.assert_fails_with(2, "max_bytes");
    let run = on_crm(
        &ws,
        "execute",
        "CREATE TABLE big AS SELECT randomblob(50000000) AS b",
    );
    run.assert_fails_with(2, "max_bytes");
}

/// `warden call … sql query` of `statement` on `crm`, under `/usr/bin/time -v`: the run and
/// the host's peak RSS in MiB.
fn query_peak_mib(ws: &Workspace, url: Option<&str>, statement: &str) -> (Run, u64) {
    let input = json!({"source": "crm", "sql": statement}).to_string();
    let args = [
        "call",
        "--config",
        "warden.toml",
        "--agent",
        "support",
        "sql",
        "query",
        "--input",
        &input,
    ];
    let env: Vec<(&str, &str)> = url.map(|url| (CRM_URL_ENV, url)).into_iter().collect();
    let (run, peak_kib) = ws.warden_peak_rss(&args, &env);
    (run, peak_kib / 1024)
}

/// `SELECT zeroblob(1000000), …` with `columns` columns: a row of `columns` MB that costs
/// nothing to compute.
fn zeroblob_row(columns: usize) -> String {
    format!("SELECT {}", vec!["zeroblob(1000000)"; columns].join(", "))
}

#[test]
fn a_wide_row_of_zeroblobs_is_refused_without_holding_it_in_host_memory() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#, "");
    // The attack: 800 MB in one row. SQLite builds a row whole before the host sees it, so
    // the number of columns is what bounds it.
    let (run, peak_mib) = query_peak_mib(&ws, None, &zeroblob_row(800));
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("too many columns"), "{run:#?}");
    assert!(peak_mib < 300, "warden peaked at {peak_mib} MiB");
}

#[test]
fn a_row_over_the_byte_budget_is_never_copied_into_host_memory() {
    let (ws, _db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#, "");
    // 120 MB that SQLite holds while it steps the row; each value is sized before it would be
    // copied, so the host never makes its own 120 MB copy.
    let (run, peak_mib) = query_peak_mib(&ws, None, &zeroblob_row(120));
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["rows"], json!([]), "{run:#?}");
    assert_eq!(out["truncated"], json!(true));
    eprintln!("peak {peak_mib} MiB");
    assert!(peak_mib < 200, "warden peaked at {peak_mib} MiB");
}

#[test]
fn the_sql_handles_of_one_call_are_capped() {
    let (ws, _db) = sqlite_workspace();
    script_config(&ws, r#"["crm:ro"]"#);
    let run = script(
        &ws,
        json!({"source": "crm", "open": 1000, "steps": [
            {"verb": "query", "sql": "SELECT count(*) FROM customers"},
        ]}),
    );
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["opened"], json!(64), "{run:#?}");
    assert!(
        out["open_error"]
            .as_str()
            .is_some_and(|e| e.contains("64 open SQL handles")),
        "{run:#?}"
    );
    // The handles already open keep working.
    assert_eq!(out["results"][0]["rows"], json!([[3]]), "{run:#?}");
}

#[test]
fn a_source_file_replaced_by_a_symlink_is_refused() {
    let (ws, db) = sqlite_workspace();
    sqlite_config(&ws, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#, "");
    // What a plugin with `:rw` on the folder could do: crm.db becomes a relative link to
    // another SQLite file the host can read (Warden's own state store, in the attack).
    let secret = ws.path().join("secret.db");
    Connection::open(&secret)
        .and_then(|c| {
            c.execute_batch("CREATE TABLE secrets (s TEXT); INSERT INTO secrets VALUES ('x');")
        })
        .expect("create secret.db");
    std::fs::remove_file(&db).expect("remove crm.db");
    std::os::unix::fs::symlink("secret.db", &db).expect("plant the link");
    let run = on_crm(&ws, "query", "SELECT s FROM secrets");
    run.assert_fails_with(4, "symbolic link");
    assert!(!run.stdout.contains("\"x\""), "{run:#?}");
}

#[test]
fn a_source_reached_through_a_linked_folder_is_refused() {
    let (ws, _db) = sqlite_workspace();
    std::fs::create_dir(ws.path().join("real")).expect("mkdir real");
    std::fs::rename(ws.path().join("crm.db"), ws.path().join("real/crm.db")).expect("move");
    std::os::unix::fs::symlink("real", ws.path().join("data")).expect("link the folder");
    let source = "kind = \"sqlite\"\npath = \"data/crm.db\"";
    write_config(&ws, source, r#"["crm:ro"]"#, r#"["sql:crm:ro"]"#);
    let run = on_crm(&ws, "query", "SELECT count(*) FROM customers");
    run.assert_fails_with(4, "symbolic link");
}

/// Holds the state store locked (`BEGIN EXCLUSIVE`) while it lives.
struct LockedStore {
    conn: Connection,
}

impl LockedStore {
    fn lock(path: &std::path::Path) -> LockedStore {
        let conn = Connection::open(path).expect("open the state store");
        conn.execute_batch("BEGIN EXCLUSIVE")
            .expect("lock the state store");
        LockedStore { conn }
    }
}

impl Drop for LockedStore {
    fn drop(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }
}

/// Makes a file unwritable, even for root (`chattr +i`), or read-only when not root; undone
/// when dropped, even on a panic, so the temporary folder can be removed.
struct Unwritable {
    paths: Vec<PathBuf>,
    immutable: bool,
}

impl Unwritable {
    fn make(file: &std::path::Path) -> Unwritable {
        use std::os::unix::fs::PermissionsExt;
        let immutable = std::process::Command::new("chattr")
            .arg("+i")
            .arg(file)
            .status()
            .is_ok_and(|s| s.success());
        let mut paths = vec![file.to_path_buf()];
        if !immutable {
            let dir = file.parent().expect("a folder").to_path_buf();
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444)).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            paths.push(dir);
        }
        Unwritable { paths, immutable }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.paths[0])
                .status();
        } else {
            for path in &self.paths {
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
            }
        }
    }
}

/// A workspace whose state store exists (one call has run) and the INSERT its tests attempt.
fn store_workspace() -> (Workspace, PathBuf, PathBuf) {
    let (ws, db) = sqlite_workspace();
    sqlite_config(
        &ws,
        r#"["crm:rw"]"#,
        r#"["sql:crm:rw"]"#,
        "timeout_ms = 1000",
    );
    on_crm(&ws, "query", "SELECT 1").assert_code(0);
    let store = ws.path().join(".warden/state.db");
    assert!(
        store.exists(),
        "the state store is not at {}",
        store.display()
    );
    (ws, db, store)
}

const AUDITED_INSERT: &str = "INSERT INTO customers (id, name) VALUES (4, 'Dee')";

#[test]
fn a_statement_is_not_run_when_the_audit_store_is_locked() {
    let (ws, db, store) = store_workspace();
    let run = {
        let _lock = LockedStore::lock(&store);
        on_crm(&ws, "execute", AUDITED_INSERT)
    };
    run.assert_fails_with(1, "audit store");
    assert_eq!(
        count(&db, "SELECT count(*) FROM customers WHERE id = 4"),
        0,
        "the INSERT ran although its audit record was not committed: {run:#?}"
    );
}

#[test]
fn a_statement_is_not_run_when_the_audit_store_is_locked_after_the_handle_opened() {
    // The open's record is committed; the store is then locked while a first, slow statement
    // runs, so the INSERT after it (same call, same handle) cannot record itself.
    let (ws, db) = sqlite_workspace();
    script_config(&ws, r#"["crm:rw"]"#);
    ws.write(
        "warden.toml",
        &std::fs::read_to_string(ws.path().join("warden.toml"))
            .unwrap()
            .replace(
                "path = \"crm.db\"",
                "path = \"crm.db\"\ntimeout_ms = 120000",
            ),
    );
    sql(&ws, "query", json!({"source": "crm", "sql": "SELECT 1"})).assert_code(0);
    let store = ws.path().join(".warden/state.db");
    let slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                WHERE i < 30000000) SELECT count(*) FROM n";
    let run = std::thread::scope(|scope| {
        let call = scope.spawn(|| {
            script(
                &ws,
                json!({"source": "crm", "steps": [
                    {"verb": "query", "sql": slow},
                    {"verb": "execute", "sql": AUDITED_INSERT},
                ]}),
            )
        });
        let watcher = Connection::open(&store).expect("open the state store");
        watcher
            .busy_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        let started = std::time::Instant::now();
        let lock = loop {
            let seen: i64 = watcher
                .query_row(
                    "SELECT count(*) FROM audit_log WHERE detail LIKE 'query: WITH RECURSIVE%'",
                    [],
                    |row| row.get(0),
                )
                .expect("read the audit log");
            if seen > 0 {
                break LockedStore::lock(&store);
            }
            assert!(
                !call.is_finished() && started.elapsed().as_secs() < 60,
                "the slow statement's record never appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let run = call.join().expect("the call's thread");
        drop(lock);
        run
    });
    run.assert_fails_with(1, "audit store");
    assert_eq!(
        count(&db, "SELECT count(*) FROM customers WHERE id = 4"),
        0,
        "the INSERT ran although its audit record was not committed: {run:#?}"
    );
}

#[test]
fn a_statement_is_not_run_when_the_audit_store_is_unwritable() {
    let (ws, db, store) = store_workspace();
    let run = {
        let _guard = Unwritable::make(&store);
        on_crm(&ws, "execute", AUDITED_INSERT)
    };
    run.assert_fails_with(1, "audit store");
    assert_eq!(
        count(&db, "SELECT count(*) FROM customers WHERE id = 4"),
        0,
        "the INSERT ran although its audit record was not committed: {run:#?}"
    );
}

#[test]
fn postgres_statement_timeout_is_set_inside_the_transaction() {
    let Some(url) = postgres_url("postgres_statement_timeout_is_set_inside_the_transaction") else {
        return;
    };
    let ws = Workspace::new();
    postgres_config(&ws, r#"["crm:rw"]"#, "timeout_ms = 1234");
    let run = pg_on_crm(&ws, &url, "query", "SHOW statement_timeout");
    run.assert_code(0);
    assert_eq!(run.json()["rows"], json!([["1234ms"]]), "{run:#?}");
    // And for writes, where nothing comes back: the statement checks it itself.
    let run = pg_on_crm(
        &ws,
        &url,
        "execute",
        "DO $$ BEGIN IF current_setting('statement_timeout') <> '1234ms' THEN \
         RAISE EXCEPTION 'statement_timeout is %', current_setting('statement_timeout'); \
         END IF; END $$",
    );
    run.assert_code(0);
}

#[test]
fn postgres_huge_values_are_cut_without_holding_a_batch_in_host_memory() {
    let Some(url) =
        postgres_url("postgres_huge_values_are_cut_without_holding_a_batch_in_host_memory")
    else {
        return;
    };
    let ws = Workspace::new();
    postgres_config(&ws, r#"["crm:ro"]"#, "timeout_ms = 60000");
    let statement = "SELECT repeat('x', 50000000) FROM generate_series(1, 20)";
    let (run, peak_mib) = query_peak_mib(&ws, Some(&url), statement);
    eprintln!("peak {peak_mib} MiB");
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["rows"], json!([]), "{run:#?}");
    assert_eq!(out["truncated"], json!(true));
    // 256 rows of 50 MB were fetched in one batch before; one row at a time, one is held.
    assert!(
        peak_mib < 300,
        "warden peaked at {peak_mib} MiB reading rows over the byte budget"
    );
}
