//! `warden plugin inspect`: what a plugin offers and everything it could ever do, read without
//! running a tool.

use std::ffi::OsStr;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{Run, plugin_path, warden};

fn inspect(plugin: &str, json: bool) -> Run {
    let path = plugin_path(plugin);
    let mut args = vec![
        OsStr::new("plugin"),
        OsStr::new("inspect"),
        path.as_os_str(),
    ];
    if json {
        args.push(OsStr::new("--json"));
    }
    warden(&args)
}

fn import_names(report: &Value) -> Vec<&str> {
    report["imports"]
        .as_array()
        .unwrap_or_else(|| panic!("`imports` is not an array: {report}"))
        .iter()
        .map(|i| i["name"].as_str().expect("an import has a name"))
        .collect()
}

#[test]
fn inspect_json_lists_the_three_text_tools_with_their_input_schemas() {
    let run = inspect("text-tools", true);
    run.assert_code(0);
    let report = run.json();
    let tools = report["tools"].as_array().expect("`tools` is an array");
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "word-count", "regex-extract"]);
    for tool in tools {
        assert!(tool["input_schema"].is_object(), "{tool}");
        assert!(
            tool["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{tool}"
        );
    }
    assert!(report.get("problem").is_none(), "{report}");
}

#[test]
fn inspect_json_reports_the_files_sha256() {
    let bytes = std::fs::read(plugin_path("text-tools")).expect("read text-tools.wasm");
    let report = inspect("text-tools", true).assert_code(0).json();
    assert_eq!(report["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(report["size_bytes"], bytes.len());
}

#[test]
fn inspect_json_shows_text_tools_imports_nothing_privileged_and_all_supported() {
    let report = inspect("text-tools", true).assert_code(0).json();
    for import in report["imports"].as_array().expect("`imports` is an array") {
        assert_eq!(import["supported"], true, "{import}");
    }
    let names = import_names(&report);
    assert!(
        names.iter().any(|n| n.starts_with("wasi:cli/")),
        "{names:?}"
    );
    for privileged in [
        "warden:plugin/memory",
        "warden:plugin/data",
        "warden:plugin/model",
        "wasi:sockets",
        "wasi:filesystem",
    ] {
        assert!(
            !names.iter().any(|n| n.starts_with(privileged)),
            "text-tools is reported to import {privileged}: {names:?}"
        );
    }
}

#[test]
fn inspect_json_shows_snoop_imports_sockets_and_filesystem() {
    let report = inspect("snoop", true).assert_code(0).json();
    let names = import_names(&report);
    assert!(
        names.iter().any(|n| n.starts_with("wasi:sockets/")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("wasi:filesystem/")),
        "{names:?}"
    );
}

#[test]
fn inspect_without_json_names_every_tool_for_a_person() {
    let run = inspect("text-tools", false);
    run.assert_code(0);
    assert!(
        serde_json::from_str::<Value>(&run.stdout).is_err(),
        "the human output is JSON: {run:#?}"
    );
    for tool in ["echo", "word-count", "regex-extract"] {
        assert!(run.stdout.contains(tool), "{tool} is missing: {run:#?}");
    }
}

#[test]
fn inspect_of_another_worlds_component_exits_6_and_still_reports_it() {
    let run = inspect("cli-hello", true);
    run.assert_code(6);
    let report = run.json();
    let problem = report["problem"].as_str().expect("`problem` is set");
    assert!(problem.contains("warden:plugin/tool@0.1.0"), "{problem}");
    assert_eq!(report["tools"], Value::Array(vec![]));
    assert!(
        report["exports"].as_array().is_some_and(|e| !e.is_empty()),
        "{report}"
    );
}

/// The `capabilities` entry called `name` of a JSON report.
fn capability<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["capabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("`capabilities` is not an array: {report}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no capability `{name}` in {report}"))
}

#[test]
fn inspect_names_every_capability_sql_and_memory_included() {
    let report = inspect("sql", true).assert_code(0).json();
    let names: Vec<&str> = report["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["http", "sockets", "files", "sql", "memory", "model", "log"]
    );
    let sql = capability(&report, "sql");
    assert!(
        sql["imports"][0]
            .as_str()
            .is_some_and(|i| i.starts_with("warden:plugin/data@")),
        "{sql}"
    );
    assert_eq!(sql["without_grant"], false, "{sql}");
    assert!(capability(&report, "model").get("reach").is_none());

    let report = inspect("memory-probe", true).assert_code(0).json();
    let memory = capability(&report, "memory");
    assert!(
        memory["reach"]
            .as_str()
            .is_some_and(|r| r.contains("session")),
        "{memory}"
    );
    let text = inspect("memory-probe", false).assert_code(0).stdout.clone();
    let summary = text
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary: {text}"));
    assert!(
        summary.ends_with("only with a grant memory"),
        "the summary does not name memory as needing a grant: {summary}"
    );
}

#[test]
fn inspect_says_imported_sockets_reach_nothing_instead_of_imports_network() {
    let run = inspect("snoop", false);
    run.assert_code(0);
    let sockets = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("sockets "))
        .unwrap_or_else(|| panic!("no sockets line: {run:#?}"));
    assert!(sockets.contains("nothing"), "{sockets}");
    assert!(!run.stdout.contains("imports network"), "{run:#?}");
    let summary = run
        .stdout
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary: {run:#?}"));
    assert!(summary.contains("only with a grant"), "{summary}");
    let with_grant = summary.split("only with a grant").nth(1).unwrap();
    assert!(
        with_grant.contains("sockets") && with_grant.contains("files"),
        "{summary}"
    );
}

#[test]
fn inspect_text_shows_output_schemas() {
    let run = inspect("text-tools", false);
    run.assert_code(0);
    let outputs = run
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("output: {"))
        .count();
    assert_eq!(outputs, 3, "each of the three tools declares one: {run:#?}");
}
