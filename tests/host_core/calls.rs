//! The shipped `text-tools` plugin, called the way a user calls it: through `warden call`. And
//! many calls at once on one loaded plugin, in process.

use std::ffi::OsStr;

use serde_json::json;
use warden::sandbox::{CallIdentity, CallLimits};

use crate::common::{call, engine, load, plugin_path, warden_command};

#[test]
fn echo_prints_its_text_unchanged_as_compact_json() {
    let text = "héllo \"wörld\"\tline ✓\nnext";
    let input = json!({ "text": text }).to_string();
    let run = call("text-tools", "echo", &input, &[]);
    run.assert_code(0).assert_no_panic();
    // stdout is not a terminal here, so the output is the tool's compact JSON and nothing else.
    assert_eq!(
        run.stdout,
        format!("{}\n", json!({ "text": text })),
        "{run:#?}"
    );
}

#[test]
fn word_count_counts_runs_of_non_whitespace() {
    let run = call(
        "text-tools",
        "word-count",
        r#"{"text":"one two  three"}"#,
        &[],
    );
    run.assert_code(0);
    assert_eq!(run.json(), json!({ "words": 3 }));
}

#[test]
fn regex_extract_returns_every_match_in_order() {
    let input = json!({
        "text": "Fixed ABC-12 and XY-7; see also ab-3 and QA-1000.",
        "pattern": r"[A-Z]{2,}-\d+",
    });
    let run = call("text-tools", "regex-extract", &input.to_string(), &[]);
    run.assert_code(0);
    assert_eq!(
        run.json(),
        json!({ "matches": ["ABC-12", "XY-7", "QA-1000"] })
    );
}

#[test]
fn regex_extract_refuses_an_invalid_pattern_as_invalid_input() {
    let run = call(
        "text-tools",
        "regex-extract",
        r#"{"text":"x","pattern":"(unclosed"}"#,
        &[],
    );
    run.assert_code(2).assert_no_panic();
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(
        run.error_line().starts_with("error: invalid input:") && run.stderr.contains("pattern"),
        "{run:#?}"
    );
}

#[test]
fn a_closed_stdout_ends_the_call_without_a_panic() {
    let path = plugin_path("text-tools");
    let mut cmd = warden_command(&[
        OsStr::new("call"),
        path.as_os_str(),
        OsStr::new("echo"),
        OsStr::new("--input"),
        OsStr::new(r#"{"text":"hi"}"#),
    ]);
    let mut child = cmd.spawn().expect("spawn the warden binary");
    // The reader is gone before warden has anything to print, as in `warden call ... | true`.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait for warden");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked at") && output.status.code() != Some(101),
        "warden panicked on a closed stdout ({:?}):\n{stderr}",
        output.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_echo_calls_each_get_their_own_text_back() {
    let engine = engine();
    let plugin = load(&engine, "text-tools").await;
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let plugin = plugin.clone();
            tokio::spawn(async move {
                let text = format!("call number {i}");
                let out = plugin
                    .call(
                        "echo",
                        &json!({ "text": text }).to_string(),
                        &CallIdentity::default(),
                        &CallLimits::default(),
                    )
                    .await;
                (text, out)
            })
        })
        .collect();
    for handle in calls {
        let (text, out) = handle.await.expect("the call's task did not panic");
        let out = out.unwrap_or_else(|e| panic!("echo of {text:?} failed: {e}"));
        let value: serde_json::Value = serde_json::from_str(&out).expect("echo returns JSON");
        assert_eq!(value, json!({ "text": text }));
    }
}
