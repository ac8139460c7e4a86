//! The official Python SDK (`mcp` 2.x) against Warden, over stdio (`warden mcp`) and over
//! streamable HTTP (`warden serve`), in the SDK's `auto` mode (server/discover first, falling
//! back to initialize) and `legacy` mode (initialize): it lists and calls tools, gets a denied
//! and a timed-out call back as tool errors (with progress on the latter), keeps session memory
//! across calls and across a reconnect with the same session, and cancels a call.

use std::time::Duration;

use serde_json::{Value, json};

use crate::clients::python_scenario;
use crate::common::{WARDEN, shared_cache_dir};
use crate::harness::{
    HELPER, HELPER_TIMEOUT_MS, SLOW, Serve, Site, initialize_body, post_mcp, raw_http,
};

/// The helper's tools, as tools/list names them.
const HELPER_TOOLS: [&str; 9] = [
    "memory-probe__delete",
    "memory-probe__get",
    "memory-probe__increment",
    "memory-probe__list",
    "memory-probe__open-many",
    "memory-probe__put",
    "spin-forever__spin",
    "sql__query",
    "text-tools__echo",
];

/// How the SDK connects to `warden mcp` on `site` for `agent`.
fn stdio_args(site: &Site, agent: &str, mode: &str) -> Value {
    let mut env: serde_json::Map<String, Value> = site
        .env()
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    env.insert(
        "WARDEN_CACHE_DIR".into(),
        json!(shared_cache_dir().display().to_string()),
    );
    json!({
        "transport": "stdio",
        "mode": mode,
        "command": WARDEN,
        "args": site.mcp_args(agent),
        "cwd": site.path().display().to_string(),
        "env": env,
    })
}

/// How the SDK connects to `serve`'s `/mcp/AGENT` with `token`.
fn http_args(serve: &Serve, agent: &str, token: &str, mode: &str) -> Value {
    json!({"transport": "http", "mode": mode, "url": serve.mcp_url(agent), "token": token})
}

/// The protocol version the SDK should end up on in `mode`: Warden answers server/discover at
/// 2026-07-28, so auto adopts it; legacy's initialize proposes the newest handshake version.
fn expected_version(mode: &str) -> &'static str {
    match mode {
        "auto" => "2026-07-28",
        _ => "2025-11-25",
    }
}

fn session_of(result: &Value) -> String {
    result["_meta"]["warden/session"]
        .as_str()
        .unwrap_or_else(|| panic!("no _meta[\"warden/session\"] in {result:#}"))
        .to_string()
}

/// Asserts what one `tour` observed; returns the Warden session its calls ran in.
fn check_tour(out: &Value, mode: &str, text: &str, value: &Value) -> String {
    assert_eq!(
        out["protocol_version"],
        expected_version(mode),
        "negotiated version in mode {mode}: {out:#}"
    );
    let mut names: Vec<&str> = out["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, HELPER_TOOLS, "{out:#}");
    for tool in out["tools"].as_array().unwrap() {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool:#}");
        assert_eq!(tool["outputSchema"]["type"], "object", "{tool:#}");
    }
    let echo = &out["echo"];
    assert_eq!(echo["isError"], false, "{echo:#}");
    assert_eq!(echo["content"][0]["type"], "text", "{echo:#}");
    let echoed: Value =
        serde_json::from_str(echo["content"][0]["text"].as_str().unwrap()).expect("JSON text");
    assert_eq!(echoed, json!({ "text": text }));
    assert_eq!(
        echo["structuredContent"],
        json!({ "text": text }),
        "{echo:#}"
    );
    let session = session_of(echo);

    let denied = &out["denied"];
    assert_eq!(
        denied["isError"], true,
        "a denial is a tool error: {denied:#}"
    );
    assert_eq!(denied["_meta"]["warden/error"], "denied", "{denied:#}");
    let message = denied["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        message.contains("crm") && message.contains("agents.helper.grants"),
        "{denied:#}"
    );

    let timed_out = &out["timed_out"];
    assert_eq!(timed_out["isError"], true, "{timed_out:#}");
    assert_eq!(
        timed_out["_meta"]["warden/error"], "limit_exceeded",
        "{timed_out:#}"
    );
    assert!(
        timed_out["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("{HELPER_TIMEOUT_MS} ms")),
        "{timed_out:#}"
    );
    let progress = out["progress"].as_array().expect("progress");
    assert!(
        progress.len() >= 2,
        "the SDK's progress callback ran {} times in a {HELPER_TIMEOUT_MS} ms call: {out:#}",
        progress.len()
    );
    for p in progress {
        assert_eq!(p["total"].as_f64(), Some(HELPER_TIMEOUT_MS as f64), "{p:#}");
    }

    assert_eq!(out["put"]["isError"], false, "{out:#}");
    assert_eq!(
        out["put"]["structuredContent"]["error"],
        Value::Null,
        "{out:#}"
    );
    assert_eq!(
        out["get"]["structuredContent"]["result"]["value"], *value,
        "memory written in one call is read in the next: {out:#}"
    );
    for call in ["denied", "timed_out", "put", "get"] {
        assert_eq!(
            session_of(&out[call]),
            session,
            "every call of one connection runs in one session: {out:#}"
        );
    }
    session
}

/// Asserts what a `get` on a reconnect observed.
fn check_reconnect(out: &Value, mode: &str, session: &str, value: &Value) {
    assert_eq!(out["protocol_version"], expected_version(mode), "{out:#}");
    assert_eq!(session_of(&out["get"]), session, "{out:#}");
    assert_eq!(
        out["get"]["structuredContent"]["result"]["value"], *value,
        "memory read back after a reconnect with the same session: {out:#}"
    );
}

fn stdio_tour(mode: &str) {
    let site = Site::sqlite();
    let args = stdio_args(&site, HELPER, mode);
    let text = format!("hello from the SDK in {mode} mode");
    let value = json!({"mode": mode, "list": [1, 2, 3]});
    let mut tour = args.clone();
    tour["text"] = json!(text);
    tour["key"] = json!("sdk-key");
    tour["value"] = value.clone();
    let out = python_scenario("tour", &tour);
    let session = check_tour(&out, mode, &text, &value);
    let mut again = args;
    again["session"] = json!(session);
    again["key"] = json!("sdk-key");
    let out = python_scenario("get", &again);
    check_reconnect(&out, mode, &session, &value);
}

#[test]
fn python_sdk_over_stdio_in_auto_mode() {
    stdio_tour("auto");
}

#[test]
fn python_sdk_over_stdio_in_legacy_mode() {
    stdio_tour("legacy");
}

/// Creates a session of `agent` over the HTTP API and returns its id.
fn api_session(serve: &Serve, token: &str, agent: &str) -> String {
    let auth = format!("Bearer {token}");
    let resp = raw_http(
        serve.addr,
        "POST",
        "/v1/sessions",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        json!({ "agent": agent }).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 201, "{resp:#?}");
    resp.messages()[0]["id"].as_str().unwrap().to_string()
}

fn http_tour(mode: &str) {
    let site = Site::sqlite();
    let serve = site.serve();
    let token = site.acme.token.clone();
    let args = http_args(&serve, HELPER, &token, mode);
    let text = format!("hello over HTTP in {mode} mode");
    let value = json!({"over": "http", "mode": mode});
    let mut tour = args.clone();
    tour["text"] = json!(text);
    tour["key"] = json!("http-key");
    tour["value"] = value.clone();
    // Which session: a legacy (initialize) MCP session gets one at its first call and keeps it;
    // a 2026-07-28 request gets a new one per call unless the URL names one.
    let named = (mode == "auto").then(|| api_session(&serve, &token, HELPER));
    if let Some(named) = &named {
        tour["session"] = json!(named);
    }
    let out = python_scenario("tour", &tour);
    let session = check_tour(&out, mode, &text, &value);
    if let Some(named) = &named {
        assert_eq!(
            &session, named,
            "?session=ID runs the calls in that session"
        );
    }
    let mut again = args.clone();
    again["session"] = json!(session);
    again["key"] = json!("http-key");
    let out = python_scenario("get", &again);
    check_reconnect(&out, mode, &session, &value);

    // Without a session in the URL.
    let out = python_scenario("echoes", &args);
    let calls = out["calls"].as_array().unwrap();
    let (first, second) = (session_of(&calls[0]), session_of(&calls[1]));
    if mode == "auto" {
        assert_ne!(
            first, second,
            "stateless 2026-07-28 requests get a new session per call: {out:#}"
        );
    } else {
        assert_eq!(
            first, second,
            "a legacy MCP session keeps one Warden session: {out:#}"
        );
    }
    assert_ne!(
        first, session,
        "a new MCP session is not the old one's: {out:#}"
    );
}

#[test]
fn python_sdk_over_http_in_auto_mode() {
    http_tour("auto");
}

#[test]
fn python_sdk_over_http_in_legacy_mode() {
    http_tour("legacy");
}

/// Asserts what a `cancel` observed and that the audit log says the spinner was cancelled.
fn check_cancel(site: &Site, out: &Value) {
    assert_eq!(out["spin_cancelled_by_client"], true, "{out:#}");
    assert_eq!(out["spin_result"], Value::Null, "{out:#}");
    assert_eq!(
        out["echo"]["structuredContent"]["text"], "after the cancel",
        "{out:#}"
    );
    let echo_ms = out["echo_ms"].as_f64().unwrap();
    assert!(
        echo_ms < 5_000.0,
        "the call after the cancellation took {echo_ms} ms: {out:#}"
    );
    let record = site.wait_call_record("spin-forever/spin", Duration::from_secs(15), |r| {
        r["outcome"] == "failed"
    });
    assert!(
        record["detail"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("cancelled"),
        "the audit log records the cancellation: {record:#}"
    );
}

fn cancel_args(mut args: Value) -> Value {
    args["after_ms"] = json!(300);
    args["text"] = json!("after the cancel");
    args
}

#[test]
fn python_sdk_cancels_a_call_over_stdio() {
    for mode in ["auto", "legacy"] {
        let site = Site::sqlite();
        let out = python_scenario("cancel", &cancel_args(stdio_args(&site, SLOW, mode)));
        check_cancel(&site, &out);
    }
}

#[test]
fn python_sdk_cancels_a_call_over_http() {
    for mode in ["auto", "legacy"] {
        let site = Site::sqlite();
        let serve = site.serve();
        let args = http_args(&serve, SLOW, &site.acme.token, mode);
        let out = python_scenario("cancel", &cancel_args(args));
        check_cancel(&site, &out);
        // The server still serves a new client.
        let init = post_mcp(
            &serve,
            "/mcp/slow",
            Some(&site.acme.token),
            &[],
            &initialize_body(1),
        );
        assert_eq!(init.status, 200, "{init:#?}");
    }
}
