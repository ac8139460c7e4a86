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
