//! Bad input on `warden mcp`'s stdio: each gets the protocol's error reply, and the next
//! request on the same connection is answered.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{HELPER, Mcp, READ_DEADLINE, Site, expect_error};

/// A connection past the handshake.
fn ready(site: &Site, extra: &[&str]) -> Mcp {
    let mut mcp = site.mcp(HELPER, extra);
    mcp.initialize("2025-06-18");
    mcp
}

/// The next error reply whose id is null (the server could not read the request's id).
fn null_id_error(mcp: &mut Mcp, what: &str) -> (i64, String) {
    let reply = mcp.wait_for(what, READ_DEADLINE, |v| {
        v.get("error").is_some() && v.get("id").is_some_and(Value::is_null)
    });
    let (code, message, _) = expect_error(&reply, what);
    (code, message)
}

/// The connection still serves: an echo call works.
fn still_serves(mcp: &mut Mcp, after: &str) {
    let text = format!("after {after}");
    let result = mcp.call("text-tools__echo", json!({ "text": text }));
    assert_eq!(
        result["structuredContent"]["text"], text,
        "after {after}: {result:#}"
    );
    assert!(mcp.running(), "warden mcp exited after {after}");
}

#[test]
fn malformed_json_gets_parse_error_and_the_connection_goes_on() {
    let site = Site::sqlite();
    let mut mcp = ready(&site, &[]);
    for line in [
        &b"{\"jsonrpc\": \"2.0\", \"id\": 5, \"method\": "[..],
        b"not json at all",
        b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/list\"}}",
        b"\xff\xfe{}",
    ] {
        mcp.send_line(line);
        let (code, _) = null_id_error(&mut mcp, "a parse error");
        assert_eq!(code, -32700, "line {:?}", String::from_utf8_lossy(line));
        still_serves(&mut mcp, "malformed JSON");
    }
}

#[test]
fn json_that_is_not_json_rpc_gets_invalid_request() {
    let site = Site::sqlite();
    let mut mcp = ready(&site, &[]);
    for message in [
        json!([1, 2, 3]),
        json!("a string"),
        json!(42),
        json!({"hello": "world"}),
        json!({"jsonrpc": "1.0", "id": 7, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 8, "method": 17}),
        json!({"jsonrpc": "2.0", "id": {"an": "object"}, "method": "tools/list"}),
    ] {
        mcp.send(&message);
        let reply = mcp.wait_for(
            &format!("an error reply to {message}"),
            READ_DEADLINE,
            |v| v.get("error").is_some(),
        );
        let (code, _, _) = expect_error(&reply, &message.to_string());
        assert_eq!(code, -32600, "{message} -> {reply:#}");
        still_serves(&mut mcp, &format!("{message}"));
    }
}

#[test]
fn an_unknown_method_gets_method_not_found() {
    let site = Site::sqlite();
    let mut mcp = ready(&site, &[]);
    let (code, message, _) = mcp.error("tools/frobnicate", json!({}));
    assert_eq!(code, -32601, "{message}");
    still_serves(&mut mcp, "an unknown method");
}

#[test]
fn an_unknown_tool_gets_invalid_params() {
    let site = Site::sqlite();
    let mut mcp = ready(&site, &[]);
    for name in [
        "text-tools__nope",
        "nope__echo",
        // Configured but not granted to this agent.
        "text-tools__word-count",
        "sql__execute",
        // The agent loop's names are plugin__tool, never plugin/tool.
        "text-tools/echo",
    ] {
        let (code, message, _) = mcp.error(
            "tools/call",
            json!({"name": name, "arguments": {"text": "x"}}),
        );
        assert_eq!(code, -32602, "{name}: {message}");
        still_serves(&mut mcp, &format!("unknown tool {name}"));
    }
    // Nothing ran: no call record of the tools that were not granted.
    assert!(site.call_records("text-tools/word-count").is_empty());
    assert!(site.call_records("sql/execute").is_empty());
}

#[test]
fn arguments_that_violate_the_schema_get_invalid_params() {
    let site = Site::sqlite();
    let mut mcp = ready(&site, &[]);
    for arguments in [
        json!({}),
        json!({"text": 42}),
        json!({"text": ["a"]}),
        json!("just a string"),
    ] {
        let (code, message, _) = mcp.error(
            "tools/call",
            json!({"name": "text-tools__echo", "arguments": arguments}),
        );
        assert_eq!(code, -32602, "{arguments}: {message}");
        still_serves(&mut mcp, &format!("arguments {arguments}"));
    }
    // The schema is checked before the tool runs: the only allowed echo calls are the four
    // that still_serves made.
    let allowed = site
        .call_records("text-tools/echo")
        .into_iter()
        .filter(|r| r["outcome"] == "allowed")
        .count();
    assert_eq!(allowed, 4, "{:#?}", site.call_records("text-tools/echo"));
}

#[test]
fn a_line_over_max_message_kb_gets_invalid_request_and_is_not_buffered() {
    let site = Site::sqlite();
    let mut mcp = ready(&site, &["--max-message-kb", "64"]);
    // Just over the limit: refused.
    let head = br#"{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"text-tools__echo","arguments":{"text":""#;
    mcp.send_big_line(head, b'a', 70 * 1024, br#""}}}"#);
    let (code, _) = null_id_error(&mut mcp, "the error for a line over 64 KiB");
    assert_eq!(code, -32600);
    assert!(
        mcp.try_wait_for(Duration::from_millis(300), &|v| v["id"] == 77)
            .is_none(),
        "the oversized request was answered as if it had been read"
    );
    still_serves(&mut mcp, "a 70 KiB line");
    // Just under the limit: served.
    let text = "b".repeat(60 * 1024);
    let under = mcp.call("text-tools__echo", json!({ "text": text }));
    assert_eq!(
        under["structuredContent"]["text"].as_str().map(str::len),
        Some(text.len())
    );
}

#[test]
fn a_64_mib_line_is_discarded_without_being_buffered() {
    let site = Site::sqlite();
    // The default limit, 1024 KiB.
    let mut mcp = ready(&site, &[]);
    still_serves(&mut mcp, "warming up");
    // The peak since now, not since the start (which may have been higher than a buffered
    // line would take the process).
    mcp.reset_peak_rss();
    let before = mcp.peak_rss_kb();
    let line_kb = 64 * 1024;
    let head = br#"{"jsonrpc":"2.0","id":78,"method":"tools/call","params":{"name":"text-tools__echo","arguments":{"text":""#;
    mcp.send_big_line(head, b'z', line_kb * 1024, br#""}}}"#);
    let (code, _) = null_id_error(&mut mcp, "the error for a 64 MiB line");
    assert_eq!(code, -32600);
    still_serves(&mut mcp, "a 64 MiB line");
    let after = mcp.peak_rss_kb();
    let grown = after.saturating_sub(before);
    assert!(
        grown < (line_kb as u64) / 8,
        "peak RSS grew by {grown} KiB (from {before} to {after}) while reading a {line_kb} KiB \
         line: the host buffered it"
    );
}

#[test]
fn requests_before_initialize_get_an_error_and_initialize_still_works() {
    let site = Site::sqlite();
    let mut mcp = site.mcp(HELPER, &[]);
    let reply = mcp.request("tools/list", json!({}));
    expect_error(&reply, "tools/list before initialize");
    assert!(mcp.running(), "{}", mcp.stderr());
    mcp.initialize("2025-06-18");
    still_serves(&mut mcp, "a request before initialize");
}
