//! WIT-typed components as tools: components that export ordinary typed functions, written
//! outside this repository's SDK with each language's own toolchain (Rust with wit-bindgen,
//! Python with componentize-py, JavaScript with componentize-js), served through the real
//! `warden` binary with schemas derived from their WIT types.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{Run, plugin_path, run_command, warden, warden_command};
use crate::toolchains::{self, Lang, Sources};

const RUST: &str = "tests/authors/fixtures/typed/rust";

/// A text-statistics component in Python.
const PYTHON: Sources = Sources {
    name: "typed-text-stats",
    dir: "tests/authors/fixtures/typed/python",
    lang: Lang::Python,
};

/// A unit-conversion component in JavaScript.
const JS: Sources = Sources {
    name: "typed-units",
    dir: "tests/authors/fixtures/typed/js",
    lang: Lang::Js,
};

fn rust(package: &str) -> PathBuf {
    toolchains::build_rust_workspace(RUST, package)
}

fn inspect(plugin: &Path) -> Run {
    warden(&[
        "plugin".as_ref(),
        "inspect".as_ref(),
        "--json".as_ref(),
        plugin.as_os_str(),
    ])
}

fn call(plugin: &Path, tool: &str, input: Value) -> Run {
    warden(&[
        "call".as_ref(),
        plugin.as_os_str(),
        tool.as_ref(),
        "--input".as_ref(),
        input.to_string().as_ref(),
    ])
}

/// The output of a call that must succeed.
fn output(plugin: &Path, tool: &str, input: Value) -> Value {
    let run = call(plugin, tool, input);
    run.assert_code(0);
    run.json()
}

/// The tools of an inspection, by name.
fn tools(plugin: &Path) -> Vec<Value> {
    let run = inspect(plugin);
    run.assert_code(0);
    run.json()["tools"].as_array().expect("tools").clone()
}

fn tool<'a>(tools: &'a [Value], name: &str) -> &'a Value {
    tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tool {name} in {tools:#?}"))
}

fn names(tools: &[Value]) -> Vec<&str> {
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    names
}

fn range(schema: &Value) -> (String, String) {
    assert_eq!(schema["type"], "integer", "{schema}");
    (schema["minimum"].to_string(), schema["maximum"].to_string())
}

#[test]
fn a_rust_component_of_typed_functions_lists_each_function_as_a_tool_with_a_derived_schema() {
    let calc = rust("typed-calc");
    let tools = tools(&calc);
    assert_eq!(
        names(&tools),
        [
            "clamp",
            "mean",
            "ops_add",
            "ops_add-u64",
            "ops_area",
            "ops_centroid",
            "ops_divide",
            "ops_minmax",
            "ops_styles-of",
            "ops_stylize",
            "version"
        ]
    );
    let add = tool(&tools, "ops_add");
    let input = &add["input_schema"];
    assert_eq!(input["required"], json!(["a", "b"]));
    assert_eq!(input["additionalProperties"], false);
    assert_eq!(
        range(&input["properties"]["a"]),
        ("-2147483648".into(), "2147483647".into())
    );
    // The output is the `ok` payload of `result<s32, string>`.
    assert_eq!(
        range(&add["output_schema"]),
        ("-2147483648".into(), "2147483647".into())
    );
    assert!(
        add["description"]
            .as_str()
            .unwrap()
            .contains("add(a: s32, b: s32) -> result<s32, string>"),
        "{add:#}"
    );

    let clamp = &tool(&tools, "clamp")["input_schema"];
    assert_eq!(clamp["required"], json!(["value"]));
    assert_eq!(
        range(&clamp["properties"]["value"]),
        ("-9223372036854775808".into(), "9223372036854775807".into())
    );
    let u64s = &tool(&tools, "ops_add-u64")["input_schema"]["properties"]["b"];
    assert_eq!(range(u64s), ("0".into(), "18446744073709551615".into()));

    let centroid = &tool(&tools, "ops_centroid")["input_schema"]["properties"]["points"];
    let point = &centroid["items"];
    assert_eq!(point["type"], "object");
    assert_eq!(point["required"], json!(["x", "y"]));
    assert_eq!(point["additionalProperties"], false);
    assert_eq!(point["description"], "WIT record `point`");
    assert_eq!(
        tool(&tools, "ops_centroid")["output_schema"]["anyOf"][1],
        json!({"type": "null"})
    );

    let area = &tool(&tools, "ops_area")["input_schema"]["properties"];
    let cases = area["s"]["oneOf"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    assert_eq!(
        cases[1]["properties"]["rect"]["prefixItems"][0]["maximum"],
        4294967295u64
    );
    assert_eq!(cases[2], json!({"const": "dot"}));
    assert_eq!(area["in-unit"]["enum"], json!(["metres", "centimetres"]));
    let style = &tool(&tools, "ops_stylize")["input_schema"]["properties"]["style"];
    assert_eq!(
        style["items"]["enum"],
        json!(["bold", "italic", "underline"])
    );
    assert_eq!(style["uniqueItems"], true);
    let minmax = &tool(&tools, "ops_minmax");
    assert_eq!(minmax["output_schema"]["minItems"], 2);
    assert_eq!(
        range(&minmax["input_schema"]["properties"]["values"]["items"]),
        ("0".into(), "255".into())
    );
}

#[test]
fn a_rust_component_of_typed_functions_answers_refuses_bad_input_and_fails_on_err() {
    let calc = rust("typed-calc");
    assert_eq!(output(&calc, "version", json!({})), json!("calc 0.1.0"));
    assert_eq!(output(&calc, "ops_add", json!({"a": 2, "b": 3})), json!(5));
    // Options may be left out.
    assert_eq!(
        output(&calc, "clamp", json!({"value": 10, "high": 5})),
        json!(5)
    );
    assert_eq!(output(&calc, "clamp", json!({"value": -3})), json!(-3));
    assert_eq!(output(&calc, "mean", json!({"values": [1, 2]})), json!(1.5));
    assert_eq!(output(&calc, "mean", json!({"values": []})), Value::Null);
    assert_eq!(
        output(
            &calc,
            "ops_centroid",
            json!({"points": [{"x": 0, "y": 0}, {"x": 4, "y": 2, "label": "b"}]})
        ),
        json!({"x": 2, "y": 1, "label": "centroid of 2"})
    );
    assert_eq!(
        output(
            &calc,
            "ops_area",
            json!({"s": {"rect": [2, 3]}, "in-unit": "centimetres"})
        ),
        json!(60000.0)
    );
    assert_eq!(
        output(&calc, "ops_area", json!({"s": "dot", "in-unit": "metres"})),
        json!(0.0)
    );
    assert_eq!(
        output(
            &calc,
            "ops_stylize",
            json!({"text": "hi", "style": ["bold", "italic"]})
        ),
        json!("_**hi**_")
    );
    assert_eq!(
        output(&calc, "ops_minmax", json!({"values": [3, 1, 9]})),
        json!([1, 9])
    );
    assert_eq!(
        output(&calc, "ops_styles-of", json!({"mask": 5})),
        json!(["bold", "underline"])
    );
    // u64 stays an exact JSON integer both ways.
    let run = call(
        &calc,
        "ops_add-u64",
        json!({"a": 18446744073709551614u64, "b": 1}),
    );
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "18446744073709551615", "{run:#?}");

    // Bad input is refused before any wasm runs, naming the field.
    call(&calc, "ops_add", json!({"a": 2147483648u64, "b": 1})).assert_fails_with(2, "/a");
    call(&calc, "ops_add", json!({"a": 1})).assert_fails_with(2, "b");
    call(
        &calc,
        "ops_area",
        json!({"s": "circle", "in-unit": "metres"}),
    )
    .assert_fails_with(2, "/s");
    call(&calc, "ops_area", json!({"s": "dot", "in-unit": "miles"}))
        .assert_fails_with(2, "/in-unit");
    call(
        &calc,
        "ops_stylize",
        json!({"text": "x", "style": ["bold", "blink"]}),
    )
    .assert_fails_with(2, "/style/1");
    call(&calc, "ops_minmax", json!({"values": [1, 256]})).assert_fails_with(2, "/values/1");
    call(
        &calc,
        "ops_centroid",
        json!({"points": [{"x": 0, "y": 0, "z": 1}]}),
    )
    .assert_fails_with(2, "/points/0");

    // An `err` result is the tool failing, with the error value in the message.
    call(&calc, "ops_add", json!({"a": 2147483647, "b": 1}))
        .assert_fails_with(4, "2147483647 + 1 overflows s32");
    call(&calc, "ops_divide", json!({"a": 1, "b": 0})).assert_fails_with(4, "division by zero");
    call(
        &calc,
        "ops_add-u64",
        json!({"a": 18446744073709551615u64, "b": 1}),
    )
    .assert_fails_with(4, "u64 overflow");
}

#[test]
fn a_python_component_of_typed_functions_lists_and_calls() {
    let stats = toolchains::build(&PYTHON);
    let tools = tools(&stats);
    assert_eq!(
        names(&tools),
        [
            "stats_convert",
            "stats_nth-word",
            "stats_summarize",
            "stats_top-words"
        ]
    );
    let top = &tool(&tools, "stats_top-words")["input_schema"];
    assert_eq!(top["required"], json!(["text"]));
    assert_eq!(
        range(&top["properties"]["limit"]["anyOf"][0]),
        ("0".into(), "255".into())
    );
    let summary = &tool(&tools, "stats_summarize")["output_schema"];
    assert_eq!(summary["required"], json!(["words", "lines", "bytes"]));
    assert_eq!(
        range(&summary["properties"]["bytes"]),
        ("0".into(), "18446744073709551615".into())
    );

    assert_eq!(
        output(&stats, "stats_summarize", json!({"text": "one two\nthree"})),
        json!({"words": 3, "lines": 2, "bytes": 13, "longest": "three"})
    );
    assert_eq!(
        output(&stats, "stats_summarize", json!({"text": ""})),
        json!({"words": 0, "lines": 0, "bytes": 0, "longest": null})
    );
    assert_eq!(
        output(
            &stats,
            "stats_convert",
            json!({"text": "ab cd", "to": "title"})
        ),
        json!("Ab Cd")
    );
    assert_eq!(
        output(&stats, "stats_nth-word", json!({"text": "a b c", "n": 1})),
        json!("b")
    );
    assert_eq!(
        output(
            &stats,
            "stats_top-words",
            json!({"text": "a b a c a b", "limit": 2})
        ),
        json!([["a", 3], ["b", 2]])
    );
    call(&stats, "stats_convert", json!({"text": "x", "to": "shout"})).assert_fails_with(2, "/to");
    call(
        &stats,
        "stats_top-words",
        json!({"text": "x", "limit": 300}),
    )
    .assert_fails_with(2, "/limit");
    call(&stats, "stats_nth-word", json!({"text": "a b", "n": 5}))
        .assert_fails_with(4, "the text has 2 words; there is no word 5");
}

#[test]
fn a_js_component_of_typed_functions_lists_and_calls() {
    let units = toolchains::build(&JS);
    let tools = tools(&units);
    assert_eq!(
        names(&tools),
        [
            "convert_format-seconds",
            "convert_parse-hhmm",
            "convert_span-seconds",
            "convert_to-unit"
        ]
    );
    let to_unit = &tool(&tools, "convert_to-unit")["input_schema"];
    assert_eq!(
        to_unit["properties"]["m"]["required"],
        json!(["value", "unit"])
    );
    assert_eq!(
        to_unit["properties"]["to"]["enum"],
        json!(["metre", "foot", "inch"])
    );

    let inches = output(
        &units,
        "convert_to-unit",
        json!({"m": {"value": 1, "unit": "foot"}, "to": "inch"}),
    );
    assert_eq!(inches["unit"], "inch");
    assert!(
        (inches["value"].as_f64().unwrap() - 12.0).abs() < 1e-9,
        "{inches}"
    );
    assert_eq!(
        output(&units, "convert_span-seconds", json!({"s": {"minutes": 2}})),
        json!(120)
    );
    assert_eq!(
        output(&units, "convert_span-seconds", json!({"s": "forever"})),
        Value::Null
    );
    assert_eq!(
        output(
            &units,
            "convert_format-seconds",
            json!({"total": 3723, "show": ["hours", "minutes", "seconds"]})
        ),
        json!("1h 2m 3s")
    );
    assert_eq!(
        output(&units, "convert_parse-hhmm", json!({"text": "12:34"})),
        json!([12, 34])
    );
    call(&units, "convert_parse-hhmm", json!({"text": "25:00"}))
        .assert_fails_with(4, "not a time of day");
    call(
        &units,
        "convert_to-unit",
        json!({"m": {"value": 1, "unit": "yard"}, "to": "inch"}),
    )
    .assert_fails_with(2, "/m/unit");
    call(
        &units,
        "convert_span-seconds",
        json!({"s": {"seconds": -1}}),
    )
    .assert_fails_with(2, "/s");
}

#[test]
fn a_function_that_takes_a_resource_refuses_the_component_naming_function_and_type() {
    let component = rust("typed-takes-resource");
    let run = call(&component, "store_size", json!({}));
    run.assert_fails_with(
        6,
        "function `size` of `acme:blobs/store@0.1.0` takes a `own<blob>` resource",
    );
    let run = inspect(&component);
    run.assert_code(6);
    let problem = run.json()["problem"].as_str().unwrap().to_string();
    assert!(problem.contains("parameter `b`"), "{problem}");
}

#[test]
fn a_component_that_exports_no_function_is_refused_saying_what_it_exports() {
    let component = rust("typed-types-only");
    let run = call(&component, "anything", json!({}));
    run.assert_fails_with(
        6,
        "exports neither `warden:plugin/tool@0.1.0` nor any function",
    );
    assert!(
        run.error_line().contains("ordinary typed functions"),
        "{run:#?}"
    );
}

#[test]
fn a_wasi_command_is_still_refused_as_one() {
    let run = call(&plugin_path("cli-hello"), "run_run", json!({}));
    run.assert_fails_with(6, "is a wasi:cli command");
    assert!(
        run.error_line().contains("warden:plugin/tool@0.1.0"),
        "{run:#?}"
    );
}

#[test]
fn typed_tools_are_served_by_plugin_list_and_over_mcp() {
    let calc = rust("typed-calc");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\nurl = \"sqlite://{}\"\n[plugins.typed-calc]\npath = {:?}\n\
             [agents.calc]\ntools = [\"typed-calc/ops_add\", \"typed-calc/clamp\"]\n",
            dir.path().join("state.db").display(),
            calc.display().to_string()
        ),
    )
    .expect("write the config");
    let run = warden(&[
        "plugin".as_ref(),
        "list".as_ref(),
        "--json".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    run.assert_code(0);
    let line: Value = serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["status"], "ready", "{run:#?}");
    assert!(
        line["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("ops_add")),
        "{run:#?}"
    );

    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "typed-test", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "typed-calc__ops_add", "arguments": {"a": 40, "b": 2}}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
               "params": {"name": "typed-calc__ops_add", "arguments": {"a": 300000000000u64, "b": 2}}}),
    ];
    let stdin: String = messages.iter().map(|m| format!("{m}\n")).collect();
    let mut cmd = warden_command(&[
        "mcp".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--agent".as_ref(),
        "calc".as_ref(),
    ]);
    cmd.current_dir(dir.path());
    let run = run_command(cmd, Some(stdin.as_bytes()));
    let replies: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let reply = |id: u64| {
        replies
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no reply {id}: {run:#?}"))
    };
    let listed = &reply(2)["result"]["tools"];
    let add = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "typed-calc__ops_add")
        .unwrap_or_else(|| panic!("{listed:#}"));
    assert_eq!(add["inputSchema"]["properties"]["b"]["maximum"], 2147483647);
    let result = &reply(3)["result"];
    assert_eq!(result["isError"], false, "{result:#}");
    assert_eq!(result["content"][0]["text"].as_str().unwrap().trim(), "42");
    // Invalid arguments are a protocol error (-32602) naming the field, before any wasm runs.
    let refused = &reply(4)["error"];
    assert_eq!(refused["code"], -32602, "{refused:#}");
    assert!(
        refused["message"].as_str().unwrap().contains("field `/a`"),
        "{refused:#}"
    );
}
