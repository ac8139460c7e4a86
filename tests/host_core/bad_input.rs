//! Bad input is refused with exit 2 and a message that says what is wrong, before any wasm
//! runs; the host never panics on it, and the plugin stays usable after it.

use std::ffi::OsStr;

use serde_json::json;
use warden::error::{ErrorKind, Limit};
use warden::sandbox::{CallIdentity, CallLimits};

use crate::common::{call, engine, load, plugin_path, run_command, warden_command};

#[test]
fn malformed_json_is_invalid_input() {
    call("text-tools", "echo", r#"{"text": "unterminated"#, &[])
        .assert_fails_with(2, "not valid JSON")
        .assert_no_panic();
}

#[test]
fn a_field_of_the_wrong_type_is_invalid_input_naming_the_field() {
    call("text-tools", "echo", r#"{"text": 5}"#, &[])
        .assert_fails_with(2, "/text")
        .assert_no_panic();
}

#[test]
fn a_missing_required_field_is_invalid_input_naming_the_field() {
    let run = call("text-tools", "regex-extract", r#"{"text": "abc"}"#, &[]);
    run.assert_fails_with(2, "pattern").assert_no_panic();
    assert!(run.error_line().contains("required"), "{run:#?}");
}

#[test]
fn an_unknown_tool_is_invalid_input_listing_the_tools_offered() {
    let run = call("text-tools", "shout", r#"{"text": "hi"}"#, &[]);
    run.assert_fails_with(2, "shout").assert_no_panic();
    for tool in ["echo", "word-count", "regex-extract"] {
        assert!(
            run.error_line().contains(tool),
            "{tool} is not listed: {run:#?}"
        );
    }
}

#[test]
fn an_input_over_the_input_limit_on_stdin_is_invalid_input_naming_the_limit() {
    // 2 MiB of text against the default limit of 1024 KiB.
    let input = json!({ "text": "x".repeat(2 << 20) }).to_string();
    let path = plugin_path("text-tools");
    let cmd = warden_command(&[
        OsStr::new("call"),
        path.as_os_str(),
        OsStr::new("echo"),
        OsStr::new("--input"),
        OsStr::new("-"),
    ]);
    let run = run_command(cmd, Some(input.as_bytes()));
    run.assert_fails_with(2, "--max-input-kb").assert_no_panic();
    assert!(run.error_line().contains("limit is 1024 KiB"), "{run:#?}");
}

#[test]
fn an_input_under_the_input_limit_on_stdin_is_accepted() {
    // The counterpart of the test above: stdin input works, and 900 KiB is under the limit.
    let text = "y".repeat(900 << 10);
    let input = json!({ "text": text }).to_string();
    let path = plugin_path("text-tools");
    let cmd = warden_command(&[
        OsStr::new("call"),
        path.as_os_str(),
        OsStr::new("echo"),
        OsStr::new("--input"),
        OsStr::new("-"),
    ]);
    let run = run_command(cmd, Some(input.as_bytes()));
    run.assert_code(0);
    assert_eq!(run.json(), json!({ "text": text }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_stays_usable_after_each_bad_input() {
    let engine = engine();
    let plugin = load(&engine, "text-tools").await;
    let limits = CallLimits::default();
    let too_big = json!({ "text": "x".repeat(2 << 20) }).to_string();
    let cases = [
        ("echo", r#"{"text": "#, ErrorKind::InvalidInput),
        ("echo", r#"{"text": 5}"#, ErrorKind::InvalidInput),
        ("echo", "{}", ErrorKind::InvalidInput),
        ("shout", r#"{"text": "hi"}"#, ErrorKind::InvalidInput),
        (
            "regex-extract",
            r#"{"text": "x", "pattern": "("}"#,
            ErrorKind::InvalidInput,
        ),
        (
            "echo",
            too_big.as_str(),
            ErrorKind::LimitExceeded(Limit::Input),
        ),
    ];
    for (tool, input, expected) in cases {
        let err = plugin
            .call(tool, input, &CallIdentity::default(), &limits)
            .await
            .expect_err("bad input must be refused");
        assert_eq!(err.kind(), expected, "{tool} {input:.40}: {err}");

        let out = plugin
            .call(
                "echo",
                r#"{"text":"ok"}"#,
                &CallIdentity::default(),
                &limits,
            )
            .await
            .unwrap_or_else(|e| panic!("echo after bad input {input:.40} failed: {e}"));
        assert_eq!(out, r#"{"text":"ok"}"#);
    }
}
