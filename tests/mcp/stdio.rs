//! `warden mcp` spoken to line by line: the handshake (with the Python SDK's pitfall
//! sequence), tools/list and tools/call, tool errors, cancellation, progress, list_changed on
//! SIGHUP, and session memory across calls and across a restart with `--session`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::plugin_path;
use crate::harness::{
    HELPER, HELPER_TIMEOUT_MS, Mcp, PROTOCOL_VERSION_META, READ_DEADLINE, SLOW, SLOW_TIMEOUT_MS,
    Site, Store, expect_error, expect_tool_error, helper_tools_default, text_content,
};

/// The `server/discover` the Python SDK's auto mode opens with, at `version`.
fn discover_at(version: &str) -> Value {
    json!({
        "_meta": {
            PROTOCOL_VERSION_META: version,
            "io.modelcontextprotocol/clientInfo": {"name": "mcp", "version": "2.3.0"},
            "io.modelcontextprotocol/clientCapabilities": {}
        }
    })
}

/// The pitfall: a `server/discover` before `initialize` gets an error reply and the stdio
/// connection stays open, so the SDK's fallback to `initialize` works on the same process.
fn pitfall_then_initialize(discover_params: Value, version: &str) {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    let id = mcp.send_request("server/discover", discover_params.clone());
    let reply = mcp.response(&json!(id), READ_DEADLINE);
    let (code, message, reply_id) = expect_error(&reply, "server/discover before initialize");
    assert_eq!(
        reply_id,
        json!(id),
        "the error answers the request: {reply:#}"
    );
    assert!(!message.is_empty(), "{reply:#}");
    if discover_params["_meta"][PROTOCOL_VERSION_META] == "2099-01-01" {
        // The contract: a version the server lacks is UNSUPPORTED_PROTOCOL_VERSION, naming
        // the ones it has, so a client can pick one.
        assert_eq!(code, -32022, "{reply:#}");
        let supported = reply["error"]["data"]["supported"].to_string();
        assert!(
            supported.contains("2026-07-28"),
            "the -32022 error should list the supported versions in data.supported: {reply:#}"
        );
    }
    assert!(
        mcp.running(),
        "warden mcp exited after answering a request that came before initialize; stderr:\n{}",
        mcp.stderr()
    );
    mcp.initialize(version);
    let names = mcp.tool_names();
    assert!(
        names.contains(&"text-tools__echo".to_string()),
        "tools/list after the fallback: {names:?}"
    );
    let echoed = mcp.call("text-tools__echo", json!({"text": "after the fallback"}));
    assert_eq!(
        echoed["structuredContent"],
        json!({"text": "after the fallback"})
    );
}

#[test]
fn discover_at_an_unsupported_version_then_initialize_2025_06_18_works() {
    pitfall_then_initialize(discover_at("2099-01-01"), "2025-06-18");
}

#[test]
fn discover_at_an_unsupported_version_then_initialize_2025_11_25_works() {
    pitfall_then_initialize(discover_at("2099-01-01"), "2025-11-25");
}

#[test]
fn discover_without_meta_then_initialize_works() {
    pitfall_then_initialize(json!({}), "2025-06-18");
}

#[test]
fn discover_with_no_params_then_initialize_2025_11_25_works() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    // No params member at all: the SDK never sends this, another client might.
    let id = mcp.id();
    mcp.send(&json!({"jsonrpc": "2.0", "id": id, "method": "server/discover"}));
    let reply = mcp.response(&json!(id), READ_DEADLINE);
    expect_error(&reply, "server/discover without params");
    mcp.initialize("2025-11-25");
    assert!(!mcp.tools().is_empty());
}

#[test]
fn discover_at_2026_07_28_is_answered_with_the_supported_versions() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    let result = mcp.result("server/discover", discover_at("2026-07-28"));
    let versions = result["supportedVersions"].to_string();
    assert!(
        versions.contains("2026-07-28"),
        "server/discover at 2026-07-28: {result:#}"
    );
    assert!(
        result["capabilities"]["tools"].is_object(),
        "no tools capability: {result:#}"
    );
}

#[test]
fn the_start_line_names_agent_tenant_session_and_tool_count() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    // echo + memory-probe's 6 + spin + sql/query.
    assert!(
        mcp.start_line
            .starts_with("warden mcp: agent helper (tenant local), session ")
            && mcp
                .start_line
                .contains(&format!("session {} (new), 9 tools", mcp.session)),
        "start line: {:?}",
        mcp.start_line
    );
    uuid::Uuid::parse_str(&mcp.session).expect("the session is a UUID");
    let status = mcp.close(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "EOF on stdin exits 0");
}

#[test]
fn tools_list_names_schemas_and_only_granted_tools() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    mcp.initialize("2025-06-18");
    let tools = mcp.tools();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "memory-probe__delete",
            "memory-probe__get",
            "memory-probe__increment",
            "memory-probe__list",
            "memory-probe__open-many",
            "memory-probe__put",
            "spin-forever__spin",
            "sql__query",
            "text-tools__echo",
        ],
        "exactly the helper's tools: not text-tools' word-count or regex-extract, not sql's \
         tables or execute"
    );
    // The schemas are the plugin's own, as `warden plugin inspect` shows them.
    let inspect = crate::common::warden(&[
        "plugin",
        "inspect",
        plugin_path("text-tools").to_str().unwrap(),
        "--json",
    ]);
    let inspected = inspect.assert_code(0).json();
    let declared = inspected["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap()
        .clone();
    let echo = tools
        .iter()
        .find(|t| t["name"] == "text-tools__echo")
        .unwrap();
    assert_eq!(echo["inputSchema"], declared["input_schema"], "{echo:#}");
    assert_eq!(echo["outputSchema"], declared["output_schema"], "{echo:#}");
    assert_eq!(echo["description"], declared["description"], "{echo:#}");
    for tool in &tools {
        let name = tool["name"].as_str().unwrap();
        assert!(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{name} is not a valid MCP tool name"
        );
        assert_eq!(
            tool["inputSchema"]["type"], "object",
            "{name}'s inputSchema: {tool:#}"
        );
        // Every plugin here declares an object output schema for every tool.
        assert_eq!(
            tool["outputSchema"]["type"], "object",
            "{name}'s outputSchema: {tool:#}"
        );
    }
}

#[test]
fn tools_call_returns_text_structured_content_and_the_session() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    mcp.initialize("2025-11-25");
    let result = mcp.call("text-tools__echo", json!({"text": "héllo, \"MCP\""}));
    assert_ne!(result["isError"], true, "{result:#}");
    let text: Value = serde_json::from_str(&text_content(&result))
        .unwrap_or_else(|e| panic!("content[0].text is the output JSON text ({e}): {result:#}"));
    assert_eq!(text, json!({"text": "héllo, \"MCP\""}));
    assert_eq!(
        result["structuredContent"],
        json!({"text": "héllo, \"MCP\""})
    );
    assert_eq!(result["_meta"]["warden/session"], mcp.session, "{result:#}");
    let call_id = result["_meta"]["warden/call_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no warden/call_id: {result:#}"));
    uuid::Uuid::parse_str(call_id).expect("the call id is a UUID");
    // Audited like any call: tenant, agent, session, call id.
    let record = site.wait_call_record("text-tools/echo", Duration::from_secs(10), |r| {
        r["call_id"] == call_id
    });
    assert_eq!(record["tenant"], "local", "{record:#}");
    assert_eq!(record["agent"], HELPER, "{record:#}");
    assert_eq!(record["session"], mcp.session, "{record:#}");
    assert_eq!(record["outcome"], "allowed", "{record:#}");
}

#[test]
fn a_denied_call_is_a_tool_error_naming_the_grant() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    mcp.initialize("2025-06-18");
    let result = mcp.call(
        "sql__query",
        json!({"source": "crm", "sql": "SELECT name FROM customers"}),
    );
    let message = expect_tool_error(&result, "denied");
    assert!(
        message.contains("crm") && message.contains("agents.helper.grants"),
        "the denial names the source and the grant: {message}"
    );
    assert_eq!(result["_meta"]["warden/session"], mcp.session, "{result:#}");
    // The connection goes on.
    let echoed = mcp.call("text-tools__echo", json!({"text": "still here"}));
    assert_eq!(echoed["structuredContent"]["text"], "still here");
}

#[test]
fn a_timed_out_call_is_a_tool_error_and_the_next_call_works() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    mcp.initialize("2025-06-18");
    let started = Instant::now();
    let result = mcp.call("spin-forever__spin", json!({}));
    let elapsed = started.elapsed();
    let message = expect_tool_error(&result, "limit_exceeded");
    assert!(
        message.contains(&format!("{HELPER_TIMEOUT_MS} ms")),
        "the message names the limit: {message}"
    );
    assert!(
        elapsed >= Duration::from_millis(HELPER_TIMEOUT_MS - 100)
            && elapsed < Duration::from_millis(HELPER_TIMEOUT_MS + 5_000),
        "the call ran {} ms against a {HELPER_TIMEOUT_MS} ms limit",
        elapsed.as_millis()
    );
    let echoed = mcp.call("text-tools__echo", json!({"text": "after"}));
    assert_eq!(echoed["structuredContent"]["text"], "after");
}

#[test]
fn cancelled_call_gets_no_result_and_is_audited_as_cancelled() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(SLOW, &[]);
    mcp.initialize("2025-06-18");
    // Warm: the plugins and the session are ready, so the timing below is the call's own.
    mcp.call("text-tools__echo", json!({"text": "warm"}));
    let spin = mcp.send_request(
        "tools/call",
        json!({"name": "spin-forever__spin", "arguments": {}}),
    );
    std::thread::sleep(Duration::from_millis(300));
    mcp.notify(
        "notifications/cancelled",
        json!({"requestId": spin, "reason": "the test gave up"}),
    );
    let started = Instant::now();
    let echo = mcp.send_request(
        "tools/call",
        json!({"name": "text-tools__echo", "arguments": {"text": "next"}}),
    );
    let reply = mcp.response(&json!(echo), Duration::from_secs(10));
    let answered = started.elapsed();
    assert_eq!(
        reply["result"]["structuredContent"]["text"], "next",
        "{reply:#}"
    );
    assert!(
        answered < Duration::from_secs(5),
        "the next request took {} ms after the cancellation (the spinner's limit is {} ms)",
        answered.as_millis(),
        SLOW_TIMEOUT_MS
    );
    // No response for the cancelled request, not even later.
    let late = mcp.try_wait_for(Duration::from_millis(1_500), &|v| {
        v.get("method").is_none() && v["id"] == spin
    });
    assert!(
        late.is_none(),
        "a cancelled request got a response: {late:#?}"
    );
    let record = site.wait_call_record("spin-forever/spin", Duration::from_secs(10), |r| {
        r["session"] == mcp.session.as_str()
    });
    assert_eq!(record["outcome"], "failed", "{record:#}");
    assert!(
        record["detail"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("cancelled"),
        "the audit record says the call was cancelled: {record:#}"
    );
    // The call was stopped, not left spinning: the process is not busy any more. Its CPU time
    // over the next second stays far below a second.
    let before = cpu_ticks(mcp.pid());
    std::thread::sleep(Duration::from_millis(1_000));
    let burnt = cpu_ticks(mcp.pid()) - before;
    assert!(
        burnt < 50,
        "warden mcp used {burnt} ticks of CPU in the second after the cancellation: the \
         spinner still runs"
    );
}

/// utime + stime of `pid`, in clock ticks (usually 100 per second).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn progress_is_sent_while_a_call_runs_when_asked_for() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    mcp.initialize("2025-06-18");
    let id = mcp.send_request(
        "tools/call",
        json!({
            "name": "spin-forever__spin",
            "arguments": {},
            "_meta": {"progressToken": "spin-progress-1"}
        }),
    );
    let reply = mcp.response(
        &json!(id),
        Duration::from_millis(HELPER_TIMEOUT_MS + 10_000),
    );
    expect_tool_error(&reply["result"], "limit_exceeded");
    // Everything read before the reply is pending: the progress notifications among it.
    let mut progress = Vec::new();
    while let Some(n) =
        mcp.try_wait_for(Duration::ZERO, &|v| v["method"] == "notifications/progress")
    {
        progress.push(n);
    }
    assert!(
        progress.len() >= 2,
        "at least two progress notifications in a {HELPER_TIMEOUT_MS} ms call (every 500 ms): \
         {progress:#?}"
    );
    let mut last = -1.0;
    for n in &progress {
        assert_eq!(n["params"]["progressToken"], "spin-progress-1", "{n:#}");
        let value = n["params"]["progress"].as_f64().expect("progress");
        assert!(value > last, "progress increases: {progress:#?}");
        last = value;
        assert_eq!(
            n["params"]["total"].as_f64(),
            Some(HELPER_TIMEOUT_MS as f64),
            "total is the time limit: {n:#}"
        );
    }
    // No progress for a call that did not ask for it.
    let quiet = mcp.send_request(
        "tools/call",
        json!({"name": "text-tools__echo", "arguments": {"text": "q"}}),
    );
    mcp.response(&json!(quiet), READ_DEADLINE);
    assert!(
        mcp.try_wait_for(Duration::from_millis(700), &|v| {
            v["method"] == "notifications/progress"
        })
        .is_none(),
        "progress without a progressToken"
    );
}

#[test]
fn sighup_with_changed_tools_sends_list_changed_and_lists_the_new_tools() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    mcp.initialize("2025-06-18");
    assert!(mcp.tool_names().contains(&"sql__query".to_string()));
    site.write_config(&site.config(r#""text-tools/*", "memory-probe/get""#));
    mcp.signal(libc::SIGHUP);
    let note = mcp.wait_for(
        "notifications/tools/list_changed after SIGHUP",
        Duration::from_secs(30),
        |v| v["method"] == "notifications/tools/list_changed",
    );
    assert!(
        note.get("id").is_none(),
        "a notification has no id: {note:#}"
    );
    assert_eq!(
        mcp.tool_names(),
        [
            "memory-probe__get",
            "text-tools__echo",
            "text-tools__regex-extract",
            "text-tools__word-count"
        ]
    );
    let counted = mcp.call("text-tools__word-count", json!({"text": "a b c"}));
    assert_eq!(counted["structuredContent"]["words"], 3, "{counted:#}");
    // A tool no longer listed is no longer callable.
    let gone = mcp.request(
        "tools/call",
        json!({"name": "sql__query", "arguments": {"source": "crm", "sql": "SELECT 1"}}),
    );
    let (code, _, _) = expect_error(&gone, "a tool removed by the reload");
    assert_eq!(code, -32602, "{gone:#}");
    assert!(
        mcp.stderr().contains("reloaded the config"),
        "{}",
        mcp.stderr()
    );
}

#[test]
fn sighup_without_a_change_of_tools_sends_no_list_changed() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    mcp.initialize("2025-06-18");
    // The same tools, in another order: the list did not change.
    let reordered = format!(
        r#"{}, "text-tools/echo""#,
        helper_tools_default().replace(r#""text-tools/echo", "#, "")
    );
    site.write_config(&site.config(&reordered));
    mcp.signal(libc::SIGHUP);
    let started = Instant::now();
    while !mcp.stderr().contains("reloaded the config") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no `reloaded the config` on stderr: {}",
            mcp.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        mcp.try_wait_for(Duration::from_millis(500), &|v| {
            v["method"] == "notifications/tools/list_changed"
        })
        .is_none(),
        "list_changed although the tools did not change"
    );
}

/// Session memory: put then get in the next call; then a new process with `--session` reads it.
fn memory_across_calls_and_restart(site: &Site) {
    let value = json!({"note": "remember me", "n": 42});
    let session = {
        let mut mcp = site.mcp(HELPER, &[]);
        mcp.initialize("2025-06-18");
        let put = mcp.call(
            "memory-probe__put",
            json!({"ns": "session", "key": "k1", "value": value}),
        );
        assert_eq!(put["structuredContent"]["error"], Value::Null, "{put:#}");
        assert_eq!(put["structuredContent"]["result"], 1, "version 1: {put:#}");
        let got = mcp.call("memory-probe__get", json!({"ns": "session", "key": "k1"}));
        assert_eq!(
            got["structuredContent"]["result"]["value"], value,
            "{got:#}"
        );
        assert_eq!(
            got["structuredContent"]["result"]["written_by_tool"],
            "memory-probe/put"
        );
        assert_eq!(got["_meta"]["warden/session"], mcp.session);
        let status = mcp.close(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0));
        mcp.session.clone()
    };
    let mut again = site.mcp(HELPER, &["--session", &session]);
    assert_eq!(again.session, session, "{}", again.start_line);
    assert!(
        again.start_line.contains("(existing)"),
        "{}",
        again.start_line
    );
    again.initialize("2025-11-25");
    let got = again.call("memory-probe__get", json!({"ns": "session", "key": "k1"}));
    assert_eq!(
        got["structuredContent"]["result"]["value"], value,
        "{got:#}"
    );
    assert_eq!(got["_meta"]["warden/session"], session);
    // A new session (no --session) does not see it: the memory is the session's.
    let mut fresh = site.mcp(HELPER, &[]);
    assert_ne!(fresh.session, session);
    assert!(fresh.start_line.contains("(new)"), "{}", fresh.start_line);
    fresh.initialize("2025-06-18");
    let none = fresh.call("memory-probe__get", json!({"ns": "session", "key": "k1"}));
    assert_eq!(none["structuredContent"]["result"], Value::Null, "{none:#}");
}

#[test]
fn session_memory_persists_across_calls_and_a_restart_with_session() {
    memory_across_calls_and_restart(&Site::sqlite());
}

#[test]
fn session_memory_persists_across_a_restart_on_postgres() {
    let Some(site) = Site::open("mcp_memory", Store::Postgres) else {
        return;
    };
    memory_across_calls_and_restart(&site);
}

#[test]
fn an_unknown_session_is_refused_at_start() {
    let site = Site::sqlite();
    let run = site.run(
        &[
            "mcp",
            "--config",
            "warden.toml",
            "--agent",
            HELPER,
            "--session",
            "01234567-89ab-7def-8123-456789abcdef",
        ],
        Duration::from_secs(60),
    );
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(
        run.stderr.contains("01234567-89ab-7def-8123-456789abcdef"),
        "the error names the session: {run:#?}"
    );
}

#[test]
fn an_agent_that_is_not_configured_is_refused_at_start() {
    let site = Site::sqlite();
    let run = site.run(
        &["mcp", "--config", "warden.toml", "--agent", "nobody"],
        Duration::from_secs(60),
    );
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(run.stderr.contains("nobody"), "{run:#?}");
}

#[test]
fn a_tenant_with_one_agent_needs_no_agent_and_foreign_agents_are_refused() {
    let site = Site::sqlite();
    // globex has one agent, `other`: --agent may be left out.
    let mut cmd = site.command(&["mcp", "--config", "warden.toml", "--tenant", "globex"]);
    cmd.env_remove("WARDEN_AGENT");
    let mut mcp = Mcp::start(cmd);
    assert!(
        mcp.start_line
            .starts_with("warden mcp: agent other (tenant globex), session "),
        "{}",
        mcp.start_line
    );
    mcp.initialize("2025-06-18");
    assert_eq!(
        mcp.tool_names(),
        [
            "text-tools__echo",
            "text-tools__regex-extract",
            "text-tools__word-count"
        ]
    );
    // An agent of another tenant is refused; acme has two agents, so one must be named.
    for args in [
        &["--tenant", "globex", "--agent", HELPER][..],
        &["--tenant", "acme", "--agent", "other"][..],
        &["--tenant", "acme"][..],
    ] {
        let mut all = vec!["mcp", "--config", "warden.toml"];
        all.extend_from_slice(args);
        let run = site.run(&all, Duration::from_secs(60));
        assert_ne!(run.code, 0, "{args:?}: {run:#?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:#?}");
        assert!(run.stderr.contains("error"), "{args:?}: {run:#?}");
    }
}
