//! `plugins/examples/python-text` and `js-text`: the text-tools of the Rust plugin, written in
//! Python and JavaScript. Their answers must equal the Rust plugin's, their log lines must reach
//! the host log, and their use of `memory` must be denied while nothing grants it, and succeed
//! once a config grants it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::common::{Run, plugin_path, warden};
use crate::toolchains::{self, JS_TEXT, PYTHON_TEXT, Sources};

/// The tools that the examples share with text-tools.
const SHARED_TOOLS: [&str; 3] = ["echo", "word-count", "regex-extract"];

/// Builds an example once per test process, and compiles it into the shared cache with one
/// `inspect`, so that tests running in parallel do not each compile an 18 MB component.
fn example(sources: &'static Sources, once: &'static OnceLock<PathBuf>) -> &'static Path {
    once.get_or_init(|| {
        let path = toolchains::build(sources);
        inspect(&path);
        path
    })
}

fn python_text() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    example(&PYTHON_TEXT, &BUILT)
}

fn js_text() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    example(&JS_TEXT, &BUILT)
}

fn inspect(plugin: &Path) -> Value {
    let run = warden(&[
        "plugin".as_ref(),
        "inspect".as_ref(),
        plugin.as_os_str(),
        "--json".as_ref(),
    ]);
    run.assert_code(0);
    run.json()
}

fn call(plugin: &Path, tool: &str, input: &str, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "call".as_ref(),
        plugin.as_os_str(),
        tool.as_ref(),
        "--input".as_ref(),
        input.as_ref(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    warden(&args)
}

fn tool<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no tool `{name}` in {report:#}"))
}

fn offers_the_rust_tools_with_the_same_schemas(example: &Path) {
    let rust = inspect(&plugin_path("text-tools"));
    let other = inspect(example);
    for name in SHARED_TOOLS {
        let (expected, actual) = (tool(&rust, name), tool(&other, name));
        for field in ["description", "input_schema", "output_schema"] {
            assert_eq!(
                actual[field], expected[field],
                "`{name}`: {field} differs from text-tools"
            );
        }
    }
    assert!(tool(&other, "remember")["description"].is_string());
}

fn answers_equal_the_rust_plugin(example: &Path) {
    let cases = [
        ("echo", json!({ "text": "hello" })),
        ("echo", json!({ "text": "" })),
        (
            "echo",
            json!({ "text": "héllo \"wörld\" \\ 日本 😀\n\t\u{1}\u{7f}" }),
        ),
        ("word-count", json!({ "text": "  one two\tthree\nfour  " })),
        ("word-count", json!({ "text": "" })),
        (
            "word-count",
            json!({ "text": "non\u{a0}breaking and\u{2003}em spaces" }),
        ),
        (
            "regex-extract",
            json!({ "text": "see ABC-12 and XY-7, not a-1", "pattern": "[A-Z]{2,}-\\d+" }),
        ),
        (
            "regex-extract",
            json!({ "text": "Ab-1 ab-2 AB-3", "pattern": "(?i)ab-\\d" }),
        ),
        (
            "regex-extract",
            json!({ "text": "no digits here", "pattern": "\\d+" }),
        ),
        ("regex-extract", json!({ "text": "x", "pattern": "(" })),
        (
            "regex-extract",
            json!({ "text": "aa", "pattern": "(a)\\1" }),
        ),
        ("regex-extract", json!({ "text": "x" })),
        ("word-count", json!({ "text": 5 })),
    ];
    let rust = plugin_path("text-tools");
    for (name, input) in cases {
        let input = input.to_string();
        let expected = call(&rust, name, &input, &[]);
        let actual = call(example, name, &input, &[]);
        assert_eq!(
            (actual.code, &actual.stdout),
            (expected.code, &expected.stdout),
            "`{name}` {input}: the answer differs from text-tools\nexample: {actual:#?}\ntext-tools: {expected:#?}"
        );
    }
}

fn logs_through_the_host_log(example: &Path, plugin: &str) {
    let input = r#"{"text":"one two three four"}"#;
    let run = call(
        example,
        "word-count",
        input,
        &["--log", "warn,plugin=debug"],
    );
    run.assert_code(0);
    for line in ["word-count called", "counted 4 words"] {
        let logged = run
            .stderr
            .lines()
            .any(|l| l.contains(line) && l.contains(&format!("plugin={plugin}")));
        assert!(logged, "`{line}` was not logged for {plugin}: {run:#?}");
    }
}

fn memory_is_denied_naming_the_grant(example: &Path) {
    let run = call(
        example,
        "remember",
        r#"{"key":"customer/42","text":"prefers email"}"#,
        &[],
    );
    run.assert_fails_with(3, "memory:notes");
}

/// With `memory:notes:rw` granted to the agent and in the plugin's max, `remember` writes the
/// note: a second call finds it (its version grows), and the store holds it, written by the
/// example's tool.
fn memory_succeeds_when_granted(example: &Path, name: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [state]
            url = "sqlite://state.db"
            [plugins.{name}]
            path = "{}"
            max = ["memory:notes:rw"]
            [agents.scribe]
            tools = ["{name}/*"]
            grants = ["memory:notes:rw"]
            "#,
            example.display()
        ),
    )
    .unwrap();
    let remember = |text: &str| {
        let input = json!({"key": "customer/42", "text": text}).to_string();
        let args: Vec<&OsStr> = vec![
            "call".as_ref(),
            name.as_ref(),
            "remember".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--agent".as_ref(),
            "scribe".as_ref(),
            "--input".as_ref(),
            input.as_ref(),
        ];
        let run = warden(&args);
        run.assert_code(0);
        run.json()
    };
    assert_eq!(remember("prefers email")["version"], 1);
    assert_eq!(remember("prefers phone")["version"], 2);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let entry = runtime.block_on(async {
        let url = warden::state::StateUrl::Sqlite(dir.path().join("state.db"));
        let store = warden::state::StateStore::open(&url).await.unwrap();
        let notes = warden::state::memory::Namespace::Shared("notes".into());
        store
            .agent_state()
            .get_memory("local", &notes, "customer/42")
            .await
            .unwrap()
            .expect("the note is stored")
    });
    assert_eq!(entry.value, "\"prefers phone\"");
    assert_eq!(entry.version, 2);
    assert_eq!(entry.written_by_agent, "scribe");
    assert_eq!(entry.written_by_tool, format!("{name}/remember"));
}

fn imports_only_what_it_uses(example: &Path) {
    let report = inspect(example);
    let imports: Vec<&str> = report["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .map(|i| i["name"].as_str().expect("an import's name"))
        .collect();
    for used in ["warden:plugin/log@0.1.0", "warden:plugin/memory@0.1.0"] {
        assert!(
            imports.contains(&used),
            "{used} is missing from {imports:?}"
        );
    }
    for unused in ["warden:plugin/data", "warden:plugin/model", "wasi:http/"] {
        assert!(
            !imports.iter().any(|i| i.starts_with(unused)),
            "{unused} is imported: {imports:?}"
        );
    }
    assert!(report["problem"].is_null(), "{report:#}");
}

#[test]
fn python_text_offers_the_rust_tools_with_the_same_schemas() {
    offers_the_rust_tools_with_the_same_schemas(python_text());
}

#[test]
fn python_text_answers_equal_the_rust_plugin() {
    answers_equal_the_rust_plugin(python_text());
}

#[test]
fn python_text_logs_through_the_host_log() {
    logs_through_the_host_log(python_text(), "python-text");
}

#[test]
fn python_text_memory_is_denied_naming_the_grant() {
    memory_is_denied_naming_the_grant(python_text());
}

#[test]
fn python_text_memory_succeeds_when_granted() {
    memory_succeeds_when_granted(python_text(), "python-text");
}

#[test]
fn python_text_imports_only_what_it_uses() {
    imports_only_what_it_uses(python_text());
}

#[test]
fn js_text_offers_the_rust_tools_with_the_same_schemas() {
    offers_the_rust_tools_with_the_same_schemas(js_text());
}

#[test]
fn js_text_answers_equal_the_rust_plugin() {
    answers_equal_the_rust_plugin(js_text());
}

#[test]
fn js_text_logs_through_the_host_log() {
    logs_through_the_host_log(js_text(), "js-text");
}

#[test]
fn js_text_memory_is_denied_naming_the_grant() {
    memory_is_denied_naming_the_grant(js_text());
}

#[test]
fn js_text_memory_succeeds_when_granted() {
    memory_succeeds_when_granted(js_text(), "js-text");
}

#[test]
fn js_text_imports_only_what_it_uses() {
    imports_only_what_it_uses(js_text());
}
