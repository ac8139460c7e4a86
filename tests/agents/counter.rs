//! The `counter` test plugin by itself, through `warden call`: the ledger the agent tests read
//! must say exactly what ran, by call id, and when.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::Value;

use crate::common::{Run, plugin_path, run_command, warden_command};
use crate::site::{Execution, Spawned, read_executions};

/// A folder with a ledger and a config granting it to agent `counting` as `grant`.
struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new(grant: &str) -> Bench {
        let dir = tempfile::tempdir().expect("a temp dir");
        Connection::open(dir.path().join("ledger.db")).expect("create the ledger");
        let config = format!(
            r#"
[state]
url = "sqlite://{state}"
[plugins.counter]
path = "{counter}"
max = ["sql:ledger:rw", "sql:other:rw"]
[sources.ledger]
kind = "sqlite"
path = "ledger.db"
[sources.other]
kind = "sqlite"
path = "other.db"
[agents.counting]
tools = ["counter/*"]
grants = ["{grant}"]
"#,
            state = dir.path().join("state.db").display(),
            counter = plugin_path("counter").display(),
        );
        Connection::open(dir.path().join("other.db")).expect("create other.db");
        std::fs::write(dir.path().join("warden.toml"), config).unwrap();
        Bench { dir }
    }

    fn call(&self, tool: &str, input: &str) -> Run {
        run_command(self.command(tool, input), None)
    }

    fn command(&self, tool: &str, input: &str) -> std::process::Command {
        let mut cmd = warden_command(&[
            "call",
            "--config",
            "warden.toml",
            "--agent",
            "counting",
            "counter",
            tool,
            "--input",
            input,
        ]);
        cmd.current_dir(self.dir.path()).env_remove("WARDEN_CONFIG");
        cmd
    }

    /// Every execution recorded in `db`, in order.
    fn rows(&self, db: &str) -> Vec<Execution> {
        read_executions(&self.dir.path().join(db))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn count_records_each_execution_with_its_call_id_and_times() {
    let bench = Bench::new("ledger:rw");
    let first = bench.call("count", r#"{"label": "a", "sleep_ms": 150}"#);
    first.assert_code(0);
    let second = bench.call("count", r#"{"label": "b"}"#);
    second.assert_code(0);
    let (a, b): (Value, Value) = (first.json(), second.json());
    assert_eq!(a["label"], "a", "{first:#?}");
    assert_eq!(b["label"], "b", "{second:#?}");
    let (a_id, b_id) = (
        a["call_id"].as_str().unwrap(),
        b["call_id"].as_str().unwrap(),
    );
    assert!(
        !a_id.is_empty() && a_id != b_id,
        "call ids {a_id:?} and {b_id:?}"
    );

    let rows = bench.rows("ledger.db");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = &rows[0];
    assert_eq!(
        (row.call_id.as_str(), row.agent.as_str(), row.label.as_str()),
        (a_id, "counting", "a")
    );
    assert!(!row.session.is_empty(), "the row keeps the call's session");
    let started = row.started_ms;
    let finished = row
        .finished_ms
        .expect("a finished execution has finished_ms");
    assert!(
        finished - started >= 150,
        "it slept 150 ms between start ({started}) and end ({finished})"
    );
    assert_eq!(rows[1].call_id, b_id);
    assert!(rows[1].finished_ms.is_some());
}

#[test]
fn count_writes_to_the_source_it_is_given() {
    let bench = Bench::new("other:rw");
    bench
        .call("count", r#"{"label": "x", "source": "other"}"#)
        .assert_code(0);
    assert_eq!(bench.rows("other.db").len(), 1);
    assert!(bench.rows("ledger.db").is_empty());
}

#[test]
fn count_without_a_read_write_grant_is_denied_and_records_nothing() {
    let bench = Bench::new("ledger:ro");
    let run = bench.call("count", r#"{"label": "a"}"#);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.error_line().contains("ledger"),
        "the denial names the source: {run:#?}"
    );
    assert!(bench.rows("ledger.db").is_empty());
}

#[test]
fn count_refuses_a_sleep_over_a_minute_before_recording() {
    let bench = Bench::new("ledger:rw");
    let run = bench.call("count", r#"{"label": "a", "sleep_ms": 60001}"#);
    run.assert_fails_with(2, "sleep_ms");
    assert!(bench.rows("ledger.db").is_empty());
    assert!(bench.path().join("ledger.db").is_file());
}

#[test]
fn fail_always_fails_with_a_tool_error() {
    let bench = Bench::new("ledger:rw");
    let run = bench.call("fail", "{}");
    run.assert_fails_with(4, "the fail tool always fails");
    let run = bench.call("fail", r#"{"reason": "on purpose"}"#);
    run.assert_fails_with(4, "on purpose");
}

#[test]
fn an_execution_in_flight_is_visible_and_one_killed_stays_unfinished() {
    let bench = Bench::new("ledger:rw");
    let input = r#"{"label": "slow", "sleep_ms": 5000}"#;
    let mut running = Spawned::start(bench.command("count", input), &["call", "count", input]);
    let in_flight = running.wait_for(
        "the slow execution to start",
        Duration::from_secs(60),
        || {
            bench
                .rows("ledger.db")
                .into_iter()
                .find(|e| e.label == "slow")
        },
    );
    assert_eq!(in_flight.finished_ms, None, "{in_flight:?}");
    assert!(running.running(), "the call is still sleeping");
    let killed = running.kill9();
    assert!(
        killed.stdout.is_empty(),
        "a killed call printed no output: {killed:#?}"
    );
    let rows = bench.rows("ledger.db");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        rows[0].finished_ms, None,
        "the killed execution never finished"
    );
    assert_eq!(rows[0].call_id, in_flight.call_id);
}
