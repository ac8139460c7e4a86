//! Exceptions in Python and JavaScript tools, with and without the templates' helper modules
//! (`warden_tools.py`, `warden-tools.js`): the error a user sees at the default log level names
//! the exception's type, its message and the author's own file and line. Also what the helpers
//! convert: 64-bit integers in JS, SQL rows from a granted SQLite source, and the phrase for a
//! tool the plugin does not have.
//!
//! The helper fixtures link the templates' helper files, so they test exactly what
//! `warden plugin new` ships.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::common::{Run, warden};
use crate::toolchains::{self, Lang, Sources, repo_root};

const PYTHON_RAISE: Sources = Sources {
    name: "python-raise",
    dir: "tests/authors/fixtures/python-raise",
    lang: Lang::Python,
};

const PYTHON_RAW_RAISE: Sources = Sources {
    name: "python-raw-raise",
    dir: "tests/authors/fixtures/python-raw-raise",
    lang: Lang::Python,
};

const JS_RAISE: Sources = Sources {
    name: "js-raise",
    dir: "tests/authors/fixtures/js-raise",
    lang: Lang::Js,
};

const JS_RAW_RAISE: Sources = Sources {
    name: "js-raw-raise",
    dir: "tests/authors/fixtures/js-raw-raise",
    lang: Lang::Js,
};

/// Builds a fixture once per test process and compiles it into the shared cache with one
/// `inspect`, so that parallel tests do not each compile a big component.
fn built(sources: &'static Sources, once: &'static OnceLock<PathBuf>) -> &'static Path {
    once.get_or_init(|| {
        let path = toolchains::build(sources);
        warden(&[
            "plugin".as_ref(),
            "inspect".as_ref(),
            path.as_os_str(),
            "--json".as_ref(),
        ])
        .assert_code(0);
        path
    })
}

fn python_raise() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    built(&PYTHON_RAISE, &BUILT)
}

fn python_raw_raise() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    built(&PYTHON_RAW_RAISE, &BUILT)
}

fn js_raise() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    built(&JS_RAISE, &BUILT)
}

fn js_raw_raise() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    built(&JS_RAW_RAISE, &BUILT)
}

/// `warden call PLUGIN TOOL --input INPUT`, at the default log level.
fn call(plugin: &Path, tool: &str, input: Value) -> Run {
    let input = input.to_string();
    warden(&[
        "call".as_ref(),
        plugin.as_os_str(),
        tool.as_ref(),
        "--input".as_ref(),
        input.as_ref() as &OsStr,
    ])
}

/// The 1-based line of `file` in `sources` that holds `marker`.
fn line_of(sources: &Sources, file: &str, marker: &str) -> usize {
    let path = repo_root().join(sources.dir).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let index = text
        .lines()
        .position(|line| line.contains(marker))
        .unwrap_or_else(|| panic!("no `{marker}` in {}", path.display()));
    index + 1
}

/// The call failed (exit 4) with an error line that names every one of `facts`, at the default
/// log level (the guest's stderr is not shown there).
fn assert_failed_naming(run: &Run, facts: &[&str]) {
    run.assert_code(4);
    assert!(run.stdout.is_empty(), "{run:#?}");
    let error = run.error_line();
    for fact in facts {
        assert!(
            error.contains(fact),
            "the error line does not name {fact:?}: {run:#?}"
        );
    }
}

#[test]
fn a_python_exception_in_a_helper_tool_names_its_type_message_and_line() {
    let line = line_of(&PYTHON_RAISE, "app.py", "# RAISES HERE");
    let run = call(python_raise(), "lookup", json!({ "id": 42 }));
    assert_failed_naming(
        &run,
        &[
            "LookupError: no customer 42",
            &format!("(at app.py:{line}, in find_customer)"),
        ],
    );
    assert!(!run.error_line().contains("warden_tools"), "{run:#?}");
}

#[test]
fn a_js_exception_in_a_helper_tool_names_its_type_message_and_line() {
    let line = line_of(&JS_RAISE, "app.js", "// THROWS HERE");
    let run = call(js_raise(), "lookup", json!({ "id": 42 }));
    assert_failed_naming(
        &run,
        &[
            "RangeError: no customer 42",
            &format!("(at app.js:{line}, in findCustomer)"),
        ],
    );
    assert!(!run.error_line().contains("warden-tools"), "{run:#?}");
}

#[test]
fn a_python_exception_without_the_helper_is_read_from_the_traceback() {
    let line = line_of(&PYTHON_RAW_RAISE, "app.py", "# RAISES HERE");
    let run = call(python_raw_raise(), "lookup", json!({}));
    assert_failed_naming(
        &run,
        &[
            "LookupError: no customer 42",
            &format!("app.py:{line}"),
            "find_customer",
        ],
    );
}

/// componentize-js prints the escaped error's `Type: message` but not its stack, so the host
/// can name no line; it points to the helper, which can.
#[test]
fn a_js_exception_without_the_helper_is_read_from_what_the_engine_printed() {
    let run = call(js_raw_raise(), "lookup", json!({}));
    assert_failed_naming(&run, &["RangeError: no customer 42", "warden-tools.js"]);
    assert!(!run.error_line().contains("trapped"), "{run:#?}");
}

#[test]
fn js_64_bit_integers_become_numbers_when_safe_and_strings_otherwise() {
    let run = call(js_raise(), "big", json!({}));
    run.assert_code(0);
    assert_eq!(
        run.json(),
        json!({ "past": "9007199254740993", "within": -9007199254740991_i64, "list": [1, 2] })
    );
}

#[test]
fn a_python_helper_answers_a_tool_it_does_not_have_with_the_tools_it_offers() {
    let run = call(python_raise(), "dispatch", json!({ "name": "nope" }));
    run.assert_fails_with(
        2,
        "unknown tool `nope`; this plugin offers: `lookup`, `customers`, `dispatch`",
    );
}

#[test]
fn a_js_helper_answers_a_tool_it_does_not_have_with_the_tools_it_offers() {
    let run = call(js_raise(), "dispatch", json!({ "name": "nope" }));
    run.assert_fails_with(
        2,
        "unknown tool `nope`; this plugin offers: `lookup`, `big`, `customers`, `dispatch`",
    );
}

/// A folder with `crm.db` (a `customers` table) and a `warden.toml` that grants the agent
/// `support` read access to it as source `crm`, for the plugin `name` at `plugin`.
fn sql_workspace(name: &str, plugin: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let conn = rusqlite::Connection::open(dir.path().join("crm.db")).expect("create crm.db");
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance REAL, photo BLOB);
         INSERT INTO customers VALUES
             (1, 'Ada', 120.5, x'CAFE'),
             (2, 'Bob', NULL, NULL),
             (9007199254740993, 'Big', -3.25, x'');",
    )
    .expect("fill crm.db");
    std::fs::write(
        dir.path().join("warden.toml"),
        crate::workspace::crm_config(name, plugin, r#"["crm:ro"]"#),
    )
    .expect("write warden.toml");
    dir
}

/// `customers` from id 2 on, through a real grant: plain rows by column name.
fn sql_rows_are_plain_values(name: &str, plugin: &Path, big_id: Value) {
    let ws = sql_workspace(name, plugin);
    let config = ws.path().join("warden.toml");
    let mut cmd = crate::common::warden_command(&[
        "call".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--agent".as_ref(),
        "support".as_ref(),
        name.as_ref(),
        "customers".as_ref(),
        "--input".as_ref(),
        OsStr::new(r#"{"from":1}"#),
    ]);
    cmd.current_dir(ws.path()).env_remove("WARDEN_CONFIG");
    let run = crate::common::run_command(cmd, None);
    run.assert_code(0);
    assert_eq!(
        run.json(),
        json!({ "rows": [
            { "id": 1, "name": "Ada", "balance": 120.5, "photo": { "base64": "yv4=" } },
            { "id": 2, "name": "Bob", "balance": null, "photo": null },
            { "id": big_id, "name": "Big", "balance": -3.25, "photo": { "base64": "" } },
        ]})
    );
}

#[test]
fn python_sql_rows_from_a_granted_source_are_dicts_by_column() {
    // Python's integers are exact: the id past 2^53 stays a JSON number.
    sql_rows_are_plain_values(
        "python-raise",
        python_raise(),
        json!(9_007_199_254_740_993_i64),
    );
}

#[test]
fn js_sql_rows_from_a_granted_source_are_objects_by_column() {
    // A JS number cannot hold the id past 2^53: it comes back as its decimal string.
    sql_rows_are_plain_values("js-raise", js_raise(), json!("9007199254740993"));
}
