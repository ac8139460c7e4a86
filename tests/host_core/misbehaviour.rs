//! Plugins that misbehave on purpose: each is stopped by the limit meant for it, with the
//! documented exit code and a message naming the limit, and the host survives all of them.

use std::ffi::OsStr;
use std::io::ErrorKind as IoErrorKind;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden::engine::EPOCH_TICK_MS;
use warden::error::{ErrorKind, Limit};
use warden::sandbox::{CallIdentity, CallLimits};

use crate::common::{call, engine, load, plugin_path, run_command, warden_command};

#[test]
fn a_tool_that_spins_forever_is_stopped_by_the_time_limit() {
    call("spin-forever", "spin", "{}", &["--timeout-ms", "300"])
        .assert_fails_with(5, "limit exceeded: time");
}

#[test]
fn a_tool_that_allocates_forever_is_stopped_by_the_memory_limit() {
    call("alloc-forever", "alloc", "{}", &[]).assert_fails_with(5, "limit exceeded: memory");
}

#[test]
fn a_tool_that_recurses_forever_is_stopped_by_the_stack_limit() {
    call("recurse-forever", "recurse", "{}", &[]).assert_fails_with(5, "limit exceeded: stack");
}

#[test]
fn a_panicking_tool_fails_with_its_panic_message() {
    call("panics", "panic", "{}", &[]).assert_fails_with(4, "deliberate panic");
}

#[test]
fn a_plugins_stderr_goes_to_the_log_on_stderr_never_to_stdout() {
    let run = call("panics", "panic", "{}", &[]);
    run.assert_code(4);
    assert!(run.stdout.is_empty(), "{run:#?}");
    // The guest printed its panic to its stderr; besides the error line, the log carries it.
    let logged = run
        .stderr
        .lines()
        .any(|line| !line.starts_with("error: ") && line.contains("deliberate panic"));
    assert!(logged, "the guest's stderr is not in the log: {run:#?}");
}

#[test]
fn output_that_is_not_json_is_a_tool_failure() {
    call("bad-json", "bad-json", "{}", &[]).assert_fails_with(4, "not JSON");
}

#[test]
fn output_past_the_limit_is_stopped_by_the_output_limit() {
    // 4 MiB is past the 1 MiB output limit and far below the 64 MiB memory limit.
    call("huge-output", "huge", r#"{"megabytes":4}"#, &[])
        .assert_fails_with(5, "limit exceeded: output");
}

#[test]
fn snoop_sees_no_environment_arguments_files_directories_or_network() {
    let workdir = tempfile::tempdir().expect("temp dir");
    std::fs::write(workdir.path().join("secret.txt"), "TOP-SECRET-CANARY").expect("write");
    // Something must be listening on the port snoop dials, so that a connection could succeed
    // if the sandbox let it; when the port is taken, something already listens there.
    let listener = TcpListener::bind("127.0.0.1:5432").ok();

    let path = plugin_path("snoop");
    let mut cmd = warden_command(&[
        OsStr::new("call"),
        path.as_os_str(),
        OsStr::new("snoop"),
        OsStr::new("--input"),
        OsStr::new("{}"),
    ]);
    cmd.current_dir(workdir.path())
        .env("WARDEN_TEST_CANARY", "visible");
    let run = run_command(cmd, None);
    run.assert_code(0);
    let report = run.json();
    let field = |name: &str| -> &str {
        report[name]
            .as_str()
            .unwrap_or_else(|| panic!("`{name}` is not a string: {report}"))
    };

    assert_eq!(report["env"], Value::Array(vec![]), "{report}");
    assert_eq!(report["args"], Value::Array(vec![]), "{report}");

    let file = field("file");
    assert!(
        !file.contains("root:") && !file.contains("TOP-SECRET"),
        "a file was read: {file}"
    );
    assert_every_probe_failed("file", file, &["/etc/passwd", "./secret.txt"]);

    let dir = field("dir");
    assert!(!dir.contains("listed"), "a directory was listed: {dir}");
    assert_every_probe_failed("dir", dir, &["/", "."]);

    let tcp = field("tcp");
    assert_ne!(tcp, "connected");
    assert!(tcp.starts_with("error:"), "tcp: {tcp}");

    let dns = field("dns");
    assert!(dns.starts_with("error:"), "a name was resolved: {dns}");

    if let Some(listener) = listener {
        listener.set_nonblocking(true).expect("nonblocking");
        match listener.accept() {
            Err(e) if e.kind() == IoErrorKind::WouldBlock => {}
            other => panic!("the plugin reached 127.0.0.1:5432: {other:?}"),
        }
    }
}

/// `report` is `target: result; target: result`; every result must be an error.
fn assert_every_probe_failed(what: &str, report: &str, targets: &[&str]) {
    let parts: Vec<&str> = report.split("; ").collect();
    assert_eq!(parts.len(), targets.len(), "{what}: {report}");
    for (part, target) in parts.iter().zip(targets) {
        assert!(
            part.starts_with(&format!("{target}: error:")),
            "{what}: {target} was not refused: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_limit_stops_a_spinning_call_at_its_deadline_within_200_ms() {
    let engine = engine();
    let plugin = load(&engine, "spin-forever").await;
    let limits = CallLimits {
        timeout_ms: 300,
        ..CallLimits::default()
    };
    let started = Instant::now();
    let result = plugin
        .call("spin", "{}", &CallIdentity::default(), &limits)
        .await;
    let elapsed = started.elapsed();
    let err = result.expect_err("spin never returns");
    assert_eq!(err.kind(), ErrorKind::LimitExceeded(Limit::Time), "{err}");
    assert!(
        elapsed < Duration::from_millis(300 + 200),
        "the call was stopped after {elapsed:?}, more than 200 ms past its 300 ms limit"
    );
    assert!(
        elapsed >= Duration::from_millis(300 - EPOCH_TICK_MS),
        "the call was stopped after {elapsed:?}, before its 300 ms limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_keeps_serving_calls_after_each_misbehaving_plugin() {
    let engine = engine();
    let text_tools = load(&engine, "text-tools").await;
    let short = CallLimits {
        timeout_ms: 300,
        ..CallLimits::default()
    };
    let defaults = CallLimits::default();
    let big_memory = CallLimits {
        memory_mb: 128,
        ..CallLimits::default()
    };
    let cases = [
        (
            "spin-forever",
            "spin",
            "{}",
            short,
            ErrorKind::LimitExceeded(Limit::Time),
        ),
        (
            "alloc-forever",
            "alloc",
            "{}",
            defaults,
            ErrorKind::LimitExceeded(Limit::Memory),
        ),
        (
            "recurse-forever",
            "recurse",
            "{}",
            defaults,
            ErrorKind::LimitExceeded(Limit::Stack),
        ),
        ("panics", "panic", "{}", defaults, ErrorKind::ToolFailed),
        (
            "bad-json",
            "bad-json",
            "{}",
            defaults,
            ErrorKind::ToolFailed,
        ),
        (
            "huge-output",
            "huge",
            r#"{"megabytes":4}"#,
            defaults,
            ErrorKind::LimitExceeded(Limit::Output),
        ),
        // The hostile plugins of issue 9: an output past the hostcall fuel, the guest's own
        // stack overflowing in linear memory, and output nested too deep.
        (
            "huge-output",
            "huge-raw",
            r#"{"megabytes":40}"#,
            big_memory,
            ErrorKind::LimitExceeded(Limit::Output),
        ),
        (
            "shadow-overflow",
            "recurse",
            "{}",
            defaults,
            ErrorKind::ToolFailed,
        ),
        (
            "deep-json",
            "deep",
            r#"{"depth":100000}"#,
            defaults,
            ErrorKind::ToolFailed,
        ),
    ];
    for (name, tool, input, limits, expected) in cases {
        let plugin = load(&engine, name).await;
        let err = match plugin
            .call(tool, input, &CallIdentity::default(), &limits)
            .await
        {
            Ok(out) => panic!("{name}/{tool} must fail, but returned {out:.80}"),
            Err(err) => err,
        };
        assert_eq!(err.kind(), expected, "{name}/{tool}: {err}");

        let text = format!("still up after {name}");
        let out = text_tools
            .call(
                "echo",
                &serde_json::json!({ "text": text }).to_string(),
                &CallIdentity::default(),
                &defaults,
            )
            .await
            .unwrap_or_else(|e| panic!("echo after {name}/{tool} failed: {e}"));
        assert_eq!(
            serde_json::from_str::<Value>(&out).expect("echo returns JSON"),
            serde_json::json!({ "text": text })
        );
    }
}

#[test]
fn output_that_breaks_the_declared_output_schema_fails_naming_the_field() {
    let run = call("liar", "count", "{}", &[]);
    run.assert_fails_with(4, "does not match the output schema tool `count` declares");
    assert!(run.stderr.contains("field `/count`"), "{run:#?}");
    assert!(
        run.stdout.is_empty(),
        "a refused output is not printed: {run:#?}"
    );
    // The same schema, kept to: the check passes what it should.
    let run = call("liar", "honest", "{}", &[]);
    run.assert_code(0);
    assert_eq!(run.json(), serde_json::json!({"count": 3}));
}

#[test]
fn a_listed_tool_the_plugin_then_calls_unknown_is_the_plugins_fault() {
    let run = call("liar", "ghost", "{}", &[]);
    run.assert_fails_with(
        4,
        "plugin `liar` lists tool `ghost` but its `call` does not handle it",
    );
    // A tool the plugin does not list is still the caller's mistake.
    call("liar", "nobody", "{}", &[]).assert_fails_with(2, "unknown tool");
}
