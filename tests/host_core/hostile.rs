//! Hostile plugins, written against the contract (issue 9): each test reproduces what one did,
//! and checks that the limit holds and that the message names the cause and the fix.

use std::ffi::OsStr;
use std::fs;
use std::time::{Duration, Instant};

use crate::common::{call, plugin_path, warden, warden_measured};

/// The host's own RSS, with nothing large loaded, is about 30 MiB; these tests allow twice that.
const HOST_BASE_KB: u64 = 64 * 1024;

#[test]
fn a_guest_stack_overflow_in_linear_memory_names_the_trap_and_how_to_raise_the_stack() {
    let run = call("shadow-overflow", "recurse", "{}", &[]);
    run.assert_fails_with(4, "out of bounds memory access");
    let error = run.error_line();
    assert!(
        !error.trim_end().ends_with("backtrace:"),
        "the cause is cut off: {error}"
    );
    assert!(error.contains("stack"), "{error}");
    assert!(error.contains("-zstack-size"), "{error}");
}

#[test]
fn a_plugin_listing_100000_tools_is_refused_quickly_and_cheaply() {
    let path = plugin_path("many-tools");
    let started = Instant::now();
    let (run, rss_kb) = warden_measured(
        &[
            OsStr::new("call"),
            path.as_os_str(),
            OsStr::new("tool-1"),
            OsStr::new("--timeout-ms"),
            OsStr::new("60000"),
        ],
        None,
    );
    let elapsed = started.elapsed();
    run.assert_fails_with(6, "at most 1024 tools");
    // Before the caps: 18-27 s and 180 MB, whatever the timeout.
    assert!(elapsed < Duration::from_secs(5), "loading took {elapsed:?}");
    assert!(
        rss_kb < HOST_BASE_KB + 32 * 1024,
        "peak RSS {rss_kb} KiB for a refused plugin"
    );
}

#[test]
fn a_10_mb_tool_description_is_refused_naming_the_cap() {
    call("huge-description", "verbose", "{}", &[])
        .assert_fails_with(6, "descriptions of at most 16 KiB");
}

#[test]
fn an_unknown_tool_names_close_tools_not_the_whole_list() {
    let run = call("text-tools", "ecko", "{}", &[]);
    run.assert_fails_with(2, "unknown tool \"ecko\"");
    let error = run.error_line();
    let echo = error.find("`echo`").expect("echo is named");
    let other = error
        .find("`word-count`")
        .expect("every tool of a small plugin is named");
    assert!(echo < other, "the closest name comes first: {error}");
}

#[test]
fn an_output_of_128_mib_or_more_is_the_output_limit_naming_the_flag() {
    // Before: exit 4, "fuel allocated for hostcalls has been exhausted".
    let run = call(
        "huge-output",
        "huge-raw",
        r#"{"megabytes":130}"#,
        &["--memory-mb", "512", "--max-output-kb", "131072"],
    );
    run.assert_fails_with(5, "limit exceeded: output");
    assert!(run.error_line().contains("--max-output-kb"), "{run:#?}");
}

#[test]
fn an_output_over_the_limit_is_refused_before_the_host_copies_it() {
    let path = plugin_path("huge-output");
    let (run, rss_kb) = warden_measured(
        &[
            OsStr::new("call"),
            path.as_os_str(),
            OsStr::new("huge-raw"),
            OsStr::new("--input"),
            OsStr::new(r#"{"megabytes":100}"#),
            OsStr::new("--memory-mb"),
            OsStr::new("256"),
        ],
        None,
    );
    run.assert_fails_with(5, "limit exceeded: output");
    assert!(run.error_line().contains("--max-output-kb"), "{run:#?}");
    // The guest holds the 100 MiB once; a host copy would add another 100 MiB.
    let guest_kb = 100 * 1024;
    assert!(
        rss_kb < HOST_BASE_KB + guest_kb + 16 * 1024,
        "peak RSS {rss_kb} KiB: the output was copied into the host"
    );
}

#[test]
fn an_output_limit_no_output_can_reach_is_refused() {
    call(
        "text-tools",
        "echo",
        r#"{"text":"x"}"#,
        &["--max-output-kb", "1048576"],
    )
    .assert_fails_with(2, "use at most 131072");
}

#[test]
fn listing_tools_runs_under_the_calls_time_limit_and_its_log_is_forwarded() {
    let started = Instant::now();
    let run = call("slow-list", "noop", "{}", &["--timeout-ms", "1000"]);
    let elapsed = started.elapsed();
    run.assert_fails_with(5, "limit exceeded: time");
    assert!(run.error_line().contains("--timeout-ms"), "{run:#?}");
    // The plugin sleeps 10 s while listing.
    assert!(elapsed < Duration::from_secs(5), "listing took {elapsed:?}");
    assert!(
        run.stderr.contains("slow-list: listing my tools, slowly"),
        "the plugin's stderr was not forwarded: {run:#?}"
    );
}

#[test]
fn listing_tools_runs_under_the_calls_memory_limit_and_its_log_is_forwarded() {
    let run = call("slow-list", "noop", "{}", &["--memory-mb", "16"]);
    run.assert_fails_with(5, "limit exceeded: memory");
    assert!(run.error_line().contains("16 MiB"), "{run:#?}");
    assert!(
        run.stderr.contains("slow-list: listing my tools, slowly"),
        "the plugin's stderr was not forwarded: {run:#?}"
    );
}

#[test]
fn tool_names_follow_one_rule_in_the_contract_the_host_and_the_sdk() {
    let rule = warden::plugins::TOOL_NAME_RULE;
    assert_eq!(rule, "^[a-zA-Z0-9_-]{1,64}$");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for file in ["wit/types.wit", "plugins/sdk/src/tools.rs"] {
        let text = fs::read_to_string(format!("{root}/{file}")).expect("read the source");
        assert!(text.contains(rule), "{file} does not state the rule {rule}");
    }
    // Built with the SDK, with names at the rule's edges; the host takes them.
    let longest = "a234567890123456789012345678901234567890123456789012345678901234";
    assert_eq!(longest.len(), 64);
    for tool in ["Get_Weather", longest] {
        call("odd-names", tool, "{}", &[]).assert_code(0);
    }
}

#[test]
fn a_large_file_that_is_not_wasm_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.wasm");
    let file = fs::File::create(&path).expect("create");
    file.set_len(200 << 20).expect("a sparse 200 MiB file");
    let (run, rss_kb) = warden_measured(
        &[OsStr::new("call"), path.as_os_str(), OsStr::new("t")],
        None,
    );
    run.assert_fails_with(6, "not a WebAssembly file");
    assert!(
        rss_kb < HOST_BASE_KB,
        "peak RSS {rss_kb} KiB: the file was read"
    );
}

#[test]
fn a_plugin_file_over_the_size_cap_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.wasm");
    fs::write(&path, b"\0asm\x0d\x00\x01\x00").expect("a component header");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(300 << 20))
        .expect("a sparse 300 MiB component");
    let (run, rss_kb) = warden_measured(
        &[OsStr::new("call"), path.as_os_str(), OsStr::new("t")],
        None,
    );
    run.assert_fails_with(6, "over the 256 MiB cap");
    assert!(run.error_line().contains("--max-plugin-mb"), "{run:#?}");
    assert!(
        rss_kb < HOST_BASE_KB,
        "peak RSS {rss_kb} KiB: the file was read"
    );

    // The cap is configurable, for `call` and for `plugin inspect`.
    let text_tools = plugin_path("text-tools");
    let size = fs::metadata(&text_tools).expect("stat").len();
    assert!(size > 1 << 20, "text-tools is {size} bytes");
    let mut args = vec![
        OsStr::new("call"),
        text_tools.as_os_str(),
        OsStr::new("echo"),
        OsStr::new("--input"),
        OsStr::new(r#"{"text":"x"}"#),
        OsStr::new("--max-plugin-mb"),
        OsStr::new("1"),
    ];
    warden(&args).assert_fails_with(6, "over the 1 MiB cap");
    args.truncate(5);
    warden(&args).assert_code(0);
    warden(&[
        OsStr::new("plugin"),
        OsStr::new("inspect"),
        text_tools.as_os_str(),
        OsStr::new("--max-plugin-mb"),
        OsStr::new("1"),
    ])
    .assert_fails_with(6, "over the 1 MiB cap");
}

#[test]
fn deeply_nested_input_is_refused_without_overflowing_the_host_stack() {
    let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    let path = plugin_path("deep-json");
    let mut cmd = crate::common::warden_command(&[
        OsStr::new("call"),
        path.as_os_str(),
        OsStr::new("deep"),
        OsStr::new("--input"),
        OsStr::new("-"),
        OsStr::new("--max-input-kb"),
        OsStr::new("4096"),
    ]);
    cmd.stdin(std::process::Stdio::piped());
    let run = crate::common::run_command(cmd, Some(deep.as_bytes()));
    run.assert_fails_with(2, "not valid JSON");
}

#[test]
fn deeply_nested_output_is_refused_without_overflowing_the_host_stack() {
    call("deep-json", "deep", r#"{"depth":100000}"#, &[])
        .assert_fails_with(4, "nested more than 128 levels");
}

#[test]
fn a_deeply_nested_schema_makes_the_plugin_unusable_without_overflowing_the_host_stack() {
    call("deep-schema", "deep", "{}", &[]).assert_fails_with(6, "input schema that is not JSON");
}
