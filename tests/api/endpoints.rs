//! Every endpoint of the contract, once, with its response's shape: health, readiness, the
//! OpenAPI document, metrics, sessions (create, list with paging, show, delete), a task started
//! with 202 and polled to `answered`, a direct tool call, agents and their tools, the audit log.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    AGENT, Api, MODEL_ALIAS, Options, Site, assert_session_shape, assert_task_shape,
};
use crate::model::{Conversation, FakeModel};
use crate::scripts::{self, ECHO_ANSWER, ECHO_TASK};

/// The `/v1` paths of the contract and their methods, with path parameters written `{}`.
const CONTRACT_PATHS: &[(&str, &[&str])] = &[
    ("/v1/sessions", &["get", "post"]),
    ("/v1/sessions/{}", &["get", "delete"]),
    ("/v1/sessions/{}/tasks", &["post"]),
    ("/v1/sessions/{}/tasks/{}", &["get"]),
    ("/v1/sessions/{}/tools/{}/{}", &["post"]),
    ("/v1/agents", &["get"]),
    ("/v1/agents/{}/tools", &["get"]),
    ("/v1/audit", &["get"]),
];

/// `/v1/sessions/{id}/tasks` -> `/v1/sessions/{}/tasks`: parameter names are not the contract.
fn template(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for ch in path.chars() {
        match ch {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(ch),
        }
    }
    out
}

/// Asserts that `text` is Prometheus text exposition with at least one sample.
fn assert_prometheus_text(text: &str) {
    let mut samples = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            if let Some(rest) = comment.strip_prefix("TYPE ") {
                let kind = rest.split_whitespace().nth(1).unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "a TYPE line with type {kind:?}: {line:?}\n{text}"
                );
            }
            continue;
        }
        // name{labels} value [timestamp]
        let (name_part, rest) = match line.find('{') {
            Some(open) => {
                let close = line[open..]
                    .rfind('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}\n{text}"))
                    + open;
                (&line[..open], line[close + 1..].trim())
            }
            None => {
                let mut parts = line.splitn(2, ' ');
                (
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or("").trim(),
                )
            }
        };
        assert!(
            !name_part.is_empty()
                && name_part
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && name_part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "not a metric name: {name_part:?} in {line:?}\n{text}"
        );
        let value = rest.split_whitespace().next().unwrap_or("");
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "not a sample value: {value:?} in {line:?}\n{text}"
        );
        samples += 1;
    }
    assert!(samples > 0, "no samples in the metrics:\n{text}");
}

#[test]
fn health_readiness_openapi_and_metrics_answer_without_a_token() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let anonymous = serve.anonymous();

    let resp = anonymous.get("/healthz");
    assert_eq!(resp.expect(200), json!({"status": "ok"}), "{resp:?}");
    let resp = anonymous.get("/readyz");
    assert_eq!(resp.expect(200), json!({"status": "ready"}), "{resp:?}");

    let resp = anonymous.get("/openapi.json");
    let doc = resp.expect(200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "an OpenAPI 3 document: {doc:#}"
    );
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("the document has no paths: {doc:#}"));
    let listed: Vec<(String, &Value)> = paths.iter().map(|(p, v)| (template(p), v)).collect();
    for (path, methods) in CONTRACT_PATHS {
        let item = listed
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| {
                panic!(
                    "/openapi.json does not list {path}; it lists {:?}",
                    paths.keys().collect::<Vec<_>>()
                )
            });
        for method in *methods {
            assert!(
                item.get(*method).is_some(),
                "/openapi.json lists {path} without {method}: {item:#}"
            );
        }
    }

    // Some traffic first, so request metrics (if any) have samples.
    let api = serve.api(&site.acme);
    api.get("/v1/agents").expect(200);
    let session = api.create_session(AGENT);
    api.post(
        &format!("/v1/sessions/{session}/tools/text-tools/echo"),
        &json!({"text": "counted"}),
    )
    .expect(200);
    let resp = anonymous.get("/metrics");
    assert_eq!(resp.status, 200, "{resp:?}");
    let content_type = resp.header("content-type").unwrap_or("");
    // Prometheus scrapes the OpenMetrics text format (what prometheus-client writes).
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "metrics are OpenMetrics text: {resp:?}"
    );
    assert_prometheus_text(&resp.body);
    assert!(
        resp.body.contains(
            "warden_tool_call_duration_seconds_count{plugin=\"text-tools\",tool=\"echo\",outcome=\"ok\"} 1"
        ),
        "the tool call over HTTP is timed: {}",
        resp.body
    );
    model.assert_script_ok();
}

#[test]
fn sessions_are_created_listed_in_pages_shown_and_deleted() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let api = serve.api(&site.acme);

    let resp = api.post("/v1/sessions", &json!({"agent": AGENT}));
    let created = resp.expect(201);
    assert_session_shape(&created, &resp);
    assert_eq!(created["agent"], AGENT, "{resp:?}");
    assert_eq!(created["status"], "idle", "a new session is idle: {resp:?}");
    let first = created["id"].as_str().unwrap().to_string();
    let second = api.create_session(AGENT);
    let third = api.create_session(AGENT);
    let all: BTreeSet<String> = [first.clone(), second.clone(), third.clone()].into();
    assert_eq!(all.len(), 3, "three sessions, three ids: {all:?}");

    let resp = api.get("/v1/sessions");
    let list = resp.expect(200);
    let listed: BTreeSet<String> = list["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions list: {resp:?}"))
        .iter()
        .map(|s| {
            assert_session_shape(s, &resp);
            s["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(listed, all, "{resp:?}");
    assert!(
        list.get("next_cursor").is_some(),
        "next_cursor is present: {resp:?}"
    );
    assert!(
        list["next_cursor"].is_null(),
        "one page holds all three: {resp:?}"
    );

    // Pages of two, by cursor.
    let resp = api.get(&format!("/v1/sessions?agent={AGENT}&limit=2"));
    let page = resp.expect(200);
    let page_one: Vec<String> = page["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("{resp:?}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page_one.len(), 2, "limit=2: {resp:?}");
    let cursor = page["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("a first page of a longer list has a next_cursor: {resp:?}"))
        .to_string();
    let resp = api.get(&format!(
        "/v1/sessions?agent={AGENT}&limit=2&after={cursor}"
    ));
    let page = resp.expect(200);
    let page_two: Vec<String> = page["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("{resp:?}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page_two.len(), 1, "the rest: {resp:?}");
    assert!(page["next_cursor"].is_null(), "the last page: {resp:?}");
    let paged: BTreeSet<String> = page_one.iter().chain(&page_two).cloned().collect();
    assert_eq!(paged, all, "the pages cover every session once");

    // Filtered by another agent: none (the tenant has no other agent).
    let resp = api.get("/v1/sessions?agent=nobody");
    if resp.status == 200 {
        assert_eq!(resp.json()["sessions"], json!([]), "{resp:?}");
    } else {
        resp.expect_error(404, &["not_found"]);
    }

    let resp = api.get(&format!("/v1/sessions/{second}"));
    let shown = resp.expect(200);
    assert_session_shape(&shown, &resp);
    assert_eq!(shown["id"], second.as_str(), "{resp:?}");
    assert_eq!(shown["tasks"], json!([]), "no task has run: {resp:?}");

    let resp = api.delete(&format!("/v1/sessions/{second}"));
    assert_eq!(resp.status, 204, "{resp:?}");
    assert!(resp.body.is_empty(), "204 has no body: {resp:?}");
    api.get(&format!("/v1/sessions/{second}"))
        .expect_error(404, &["not_found"]);
    let resp = api.get("/v1/sessions");
    let left: BTreeSet<String> = resp.expect(200)["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, [first, third].into(), "{resp:?}");
}

#[test]
fn a_task_started_with_202_is_polled_to_its_answer_after_a_tool_call() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[&scripts::echo]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);

    let task = api.start_task(&session, ECHO_TASK);
    let done = api.wait_task(&session, &task, Duration::from_secs(120));
    assert_eq!(done["status"], "answered", "{done:#}\n{}", model.describe());
    assert_eq!(done["answer"], ECHO_ANSWER, "{done:#}");
    assert_eq!(done["input"], ECHO_TASK, "{done:#}");
    assert_eq!(
        done["model_steps"], 2,
        "a tool turn and the answer: {done:#}"
    );
    assert_eq!(done["tool_calls"], 1, "one echo: {done:#}");
    model.assert_script_ok();
    assert_eq!(
        model.answered_for(ECHO_TASK).len(),
        2,
        "{}",
        model.describe()
    );

    let resp = api.get(&format!("/v1/sessions/{session}"));
    let shown = resp.expect(200);
    assert_session_shape(&shown, &resp);
    assert_eq!(shown["status"], "idle", "the task is over: {resp:?}");
    let tasks = shown["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("a session shows its tasks: {resp:?}"));
    assert_eq!(tasks.len(), 1, "{resp:?}");
    assert_task_shape(&tasks[0], &resp);
    assert_eq!(tasks[0]["task"], task.as_str(), "{resp:?}");
    assert_eq!(tasks[0]["status"], "answered", "{resp:?}");
    assert_eq!(tasks[0]["answer"], ECHO_ANSWER, "{resp:?}");

    // The tool call the task made is in this tenant's audit log, for this session.
    let resp = api.get("/v1/audit?limit=1000");
    let records = resp.expect(200)["records"]
        .as_array()
        .unwrap_or_else(|| panic!("{resp:?}"))
        .clone();
    assert!(
        records.iter().any(|r| r["session"] == session.as_str()
            && r["plugin"] == "text-tools"
            && r["tool"] == "echo"),
        "the task's echo call is audited: {resp:?}"
    );
}

#[test]
fn a_tool_is_called_directly_in_a_session_and_audited_with_its_call_id() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);

    let path = format!("/v1/sessions/{session}/tools/text-tools/echo");
    let resp = api.post(&path, &json!({"text": "hi there"}));
    assert_eq!(resp.expect(200), json!({"text": "hi there"}), "{resp:?}");
    let call_id = resp
        .header("x-warden-call-id")
        .unwrap_or_else(|| panic!("no x-warden-call-id header: {resp:?}"))
        .to_string();
    assert!(!call_id.is_empty(), "{resp:?}");
    let again = api.post(&path, &json!({"text": "again"}));
    assert_eq!(again.expect(200), json!({"text": "again"}), "{again:?}");
    let second_id = again.header("x-warden-call-id").unwrap_or("").to_string();
    assert!(
        !second_id.is_empty() && second_id != call_id,
        "each call has its own id: {call_id:?}, {second_id:?}"
    );
    let resp = api.post(
        &format!("/v1/sessions/{session}/tools/text-tools/word-count"),
        &json!({"text": "one two three"}),
    );
    assert_eq!(resp.expect(200), json!({"words": 3}), "{resp:?}");

    // The audit log: this tenant's records, newest calls among them, `limit` honoured.
    let resp = api.get("/v1/audit");
    let records = resp.expect(200)["records"]
        .as_array()
        .unwrap_or_else(|| panic!("{resp:?}"))
        .clone();
    assert!(
        records.len() >= 3,
        "three calls, three records at least: {resp:?}"
    );
    assert!(records.len() <= 100, "the default limit is 100: {resp:?}");
    let record = records
        .iter()
        .find(|r| r["call_id"] == call_id.as_str())
        .unwrap_or_else(|| panic!("no audit record has call id {call_id}: {resp:?}"));
    assert_eq!(record["tenant"], site.acme.name.as_str(), "{record:#}");
    assert_eq!(record["agent"], AGENT, "{record:#}");
    assert_eq!(record["session"], session.as_str(), "{record:#}");
    assert_eq!(record["plugin"], "text-tools", "{record:#}");
    assert_eq!(record["tool"], "echo", "{record:#}");
    assert!(
        record["seq"].is_i64() && record["hash"].is_string(),
        "{record:#}"
    );
    for r in &records {
        assert_eq!(
            r["tenant"],
            site.acme.name.as_str(),
            "only this tenant's: {resp:?}"
        );
    }
    for limit in [1, 2] {
        let resp = api.get(&format!("/v1/audit?limit={limit}"));
        let records = resp.expect(200)["records"]
            .as_array()
            .unwrap_or_else(|| panic!("{resp:?}"))
            .len();
        assert_eq!(records, limit, "limit={limit}: {resp:?}");
    }

    // The other tenant sees none of it.
    let other = serve.api(&site.globex);
    let resp = other.get("/v1/audit?limit=1000");
    for r in resp.expect(200)["records"].as_array().unwrap() {
        assert_eq!(r["tenant"], site.globex.name.as_str(), "{resp:?}");
        assert_ne!(r["call_id"], call_id.as_str(), "{resp:?}");
    }
}

#[test]
fn agents_are_listed_with_their_model_and_tools_with_their_schemas() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let api = serve.api(&site.acme);

    let resp = api.get(&format!("/v1/agents/{AGENT}/tools"));
    let tools = resp.expect(200);
    assert_eq!(tools["agent"], AGENT, "{resp:?}");
    let list = tools["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools list: {resp:?}"));
    for t in list {
        for field in ["plugin", "tool", "name", "description"] {
            assert!(
                t[field].as_str().is_some_and(|s| !s.is_empty()),
                "tool.{field}: {t:#}\n{resp:?}"
            );
        }
        assert!(t["input_schema"].is_object(), "input_schema: {t:#}");
        assert!(
            t.get("output_schema").is_some(),
            "every tool entry has output_schema: {t:#}"
        );
    }
    let names: BTreeSet<(String, String)> = list
        .iter()
        .map(|t| {
            (
                t["plugin"].as_str().unwrap().to_string(),
                t["tool"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (plugin, tool) in [
        ("counter", "count"),
        ("counter", "fail"),
        ("text-tools", "echo"),
        ("text-tools", "word-count"),
        ("text-tools", "regex-extract"),
    ] {
        assert!(
            names.contains(&(plugin.to_string(), tool.to_string())),
            "{plugin}/{tool} is among the agent's tools: {names:?}"
        );
    }
    let echo = list
        .iter()
        .find(|t| t["plugin"] == "text-tools" && t["tool"] == "echo")
        .unwrap();
    assert_eq!(
        echo["input_schema"]["properties"]["text"]["type"], "string",
        "echo's input schema: {echo:#}"
    );
    assert!(
        echo["output_schema"]["properties"]["text"].is_object(),
        "echo's output schema: {echo:#}"
    );

    let resp = api.get("/v1/agents");
    let agents = resp.expect(200);
    let agents = agents["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("no agents list: {resp:?}"));
    assert_eq!(agents.len(), 1, "the tenant has one agent: {resp:?}");
    assert_eq!(agents[0]["name"], AGENT, "{resp:?}");
    assert_eq!(
        agents[0]["model"], MODEL_ALIAS,
        "the agent's model alias: {resp:?}"
    );
    assert_eq!(
        agents[0]["tools"].as_u64(),
        Some(list.len() as u64),
        "the tool count matches /v1/agents/{AGENT}/tools: {resp:?}"
    );
}

#[test]
fn a_builtin_plugin_is_served_from_the_binary() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let config = site.config(&Default::default()).replace(
        &format!(
            "path = \"{}\"",
            crate::common::plugin_path("text-tools").display()
        ),
        "path = \"builtin:text-tools\"",
    );
    assert!(config.contains("builtin:text-tools"), "{config}");
    site.write_config(&config);
    let serve = site.serve();
    let api: Api = serve.api(&site.acme);
    let session = api.create_session(AGENT);
    let resp = api.post(
        &format!("/v1/sessions/{session}/tools/text-tools/echo"),
        &json!({"text": "built in"}),
    );
    assert_eq!(resp.expect(200), json!({"text": "built in"}), "{resp:?}");
}
