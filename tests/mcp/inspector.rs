//! The MCP Inspector's CLI (`mcp-inspector --cli`) against Warden: tools/list and tools/call
//! over stdio (`warden mcp` as the Inspector's child) and over streamable HTTP (`warden serve`
//! with the tenant's bearer token), and a denied call coming back as a tool error.

use serde_json::{Value, json};

use crate::clients::{inspector_json, inspector_run};
use crate::common::WARDEN;
use crate::harness::{HELPER, Site};

/// The Inspector's args for `warden mcp` on `site` as its stdio server: `--` ends the
/// Inspector's own options (it has a `--config` of its own).
fn stdio_target(site: &Site) -> Vec<String> {
    let mut args = vec!["--".to_string(), WARDEN.to_string()];
    args.extend(site.mcp_args(HELPER));
    args
}

fn listed_names(listed: &Value) -> Vec<String> {
    let mut names: Vec<String> = listed["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {listed:#}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn check_list(listed: &Value) {
    let names = listed_names(listed);
    assert!(
        names.contains(&"text-tools__echo".to_string())
            && names.contains(&"memory-probe__put".to_string())
            && names.contains(&"sql__query".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"text-tools__word-count".to_string()),
        "a tool the agent is not granted is listed: {names:?}"
    );
    assert_eq!(names.len(), 9, "{names:?}");
    let echo = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "text-tools__echo")
        .unwrap();
    assert_eq!(echo["inputSchema"]["required"], json!(["text"]), "{echo:#}");
    assert_eq!(echo["outputSchema"]["type"], "object", "{echo:#}");
}

fn check_echo(called: &Value, text: &str) {
    assert_eq!(called["isError"], false, "{called:#}");
    let content: Value = serde_json::from_str(called["content"][0]["text"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("content[0].text is JSON ({e}): {called:#}"));
    assert_eq!(content, json!({ "text": text }), "{called:#}");
    assert_eq!(
        called["structuredContent"],
        json!({ "text": text }),
        "{called:#}"
    );
}

#[test]
fn inspector_lists_and_calls_tools_over_stdio() {
    let site = Site::sqlite();
    let home = site.path().join("inspector-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut list = vec!["--method".to_string(), "tools/list".to_string()];
    list.extend(stdio_target(&site));
    let run = inspector_run(&home, &list);
    check_list(&inspector_json(&run, "tools/list over stdio"));

    let mut call: Vec<String> = [
        "--method",
        "tools/call",
        "--tool-name",
        "text-tools__echo",
        "--tool-arg",
        "text=hi",
    ]
    .map(String::from)
    .to_vec();
    call.extend(stdio_target(&site));
    let run = inspector_run(&home, &call);
    check_echo(&inspector_json(&run, "tools/call over stdio"), "hi");

    let mut denied: Vec<String> = [
        "--method",
        "tools/call",
        "--tool-name",
        "sql__query",
        "--tool-arg",
        "source=crm",
        "sql=SELECT name FROM customers",
    ]
    .map(String::from)
    .to_vec();
    denied.extend(stdio_target(&site));
    let run = inspector_run(&home, &denied);
    // A tool error is a result, so the Inspector prints it (and may exit non-zero for it).
    let start = run.stdout.find('{').unwrap_or_else(|| panic!("{run:#?}"));
    let result: Value = serde_json::from_str(&run.stdout[start..])
        .unwrap_or_else(|e| panic!("the denied call's result is not JSON ({e}): {run:#?}"));
    assert_eq!(result["isError"], true, "{result:#}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("agents.helper.grants"),
        "{result:#}"
    );
}

#[test]
fn inspector_lists_and_calls_tools_over_http() {
    let site = Site::sqlite();
    let serve = site.serve();
    let home = site.path().join("inspector-home");
    std::fs::create_dir_all(&home).unwrap();
    let header = format!("Authorization: Bearer {}", site.acme.token);
    let target = [
        serve.mcp_url(HELPER),
        "--transport".to_string(),
        "http".to_string(),
        "--header".to_string(),
        header,
    ];
    let mut list = target.to_vec();
    list.extend(["--method", "tools/list"].map(String::from));
    let run = inspector_run(&home, &list);
    check_list(&inspector_json(&run, "tools/list over HTTP"));

    let mut call = target.to_vec();
    call.extend(
        [
            "--method",
            "tools/call",
            "--tool-name",
            "text-tools__echo",
            "--tool-arg",
            "text=hi over http",
        ]
        .map(String::from),
    );
    let run = inspector_run(&home, &call);
    check_echo(
        &inspector_json(&run, "tools/call over HTTP"),
        "hi over http",
    );

    // Another tenant's token reaches nothing.
    let mut foreign = vec![
        serve.mcp_url(HELPER),
        "--transport".to_string(),
        "http".to_string(),
        "--header".to_string(),
        format!("Authorization: Bearer {}", site.globex.token),
    ];
    foreign.extend(["--method", "tools/list"].map(String::from));
    let run = inspector_run(&home, &foreign);
    assert_ne!(run.code, 0, "globex's token listed acme's tools: {run:#?}");
    assert!(!run.stdout.contains("text-tools__echo"), "{run:#?}");
}
