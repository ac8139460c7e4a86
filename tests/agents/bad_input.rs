//! Tasks that must be refused before any work: an unknown agent or session, an empty or
//! oversized task. Each is a clear error with exit code 2, nothing on stdout, and no model call.

use crate::common::{Run, run_command};
use crate::model::{Conversation, FakeModel, Reply};
use crate::site::{Options, Site};

fn never_called() -> FakeModel {
    FakeModel::start(|c: &Conversation| Reply::unexpected("a refused task reached the model", c))
}

/// Asserts a refusal: exit 2, nothing on stdout, an error line containing `needle`, and no
/// model call nor tool call.
fn assert_refused(run: &Run, needle: &str, site: &Site, model: &FakeModel) {
    assert_eq!(
        run.code,
        2,
        "expected exit 2 (invalid input); the run was {run:#?}\n{}",
        model.describe()
    );
    assert!(
        run.stdout.trim().is_empty(),
        "a refusal printed to stdout: {run:#?}"
    );
    assert!(
        run.error_line().contains(needle),
        "the error should name {needle:?}: {run:#?}"
    );
    assert!(model.received().is_empty(), "{}", model.describe());
    assert!(site.executions().is_empty());
}

#[test]
fn a_task_for_an_unknown_agent_is_refused() {
    let model = never_called();
    let site = Site::new(&model, Options::default());
    let run = site.warden(&[
        "agent",
        "run",
        "--config",
        "warden.toml",
        "no-such-agent",
        "Count something.",
        "--json",
    ]);
    assert_refused(&run, "no-such-agent", &site, &model);
}

#[test]
fn a_task_for_an_unknown_session_is_refused() {
    let model = never_called();
    let site = Site::new(&model, Options::default());
    let unknown = "0190f5a4-7c1e-7000-8000-000000000000";
    let run = site.run_task("Count something.", &["--session", unknown]);
    assert_refused(&run, unknown, &site, &model);
    let run = site.run_task("Count something.", &["--session", "not-a-session-id"]);
    assert_refused(&run, "not-a-session-id", &site, &model);
    let run = site.warden(&[
        "agent",
        "resume",
        "--config",
        "warden.toml",
        "--session",
        unknown,
        "--json",
    ]);
    assert_refused(&run, unknown, &site, &model);
}

#[test]
fn an_empty_task_is_refused() {
    let model = never_called();
    let site = Site::new(&model, Options::default());
    let run = site.run_task("", &[]);
    assert_refused(&run, "empty", &site, &model);
}

#[test]
fn an_oversized_task_is_refused() {
    let model = never_called();
    let site = Site::new(&model, Options::default());
    // Linux caps one argument at 128 KiB, so a 2 MiB task comes on stdin, as `TASK` = `-` (the
    // convention of `warden call --input -`).
    let task = "count ".repeat(2 * 1024 * 1024 / 6 + 1);
    let cmd = site.command(&Site::run_args("-", &["--json"]));
    let run = run_command(cmd, Some(task.as_bytes()));
    assert_eq!(
        run.code,
        2,
        "a 2 MiB task on stdin (`TASK` given as `-`) should be refused as too large, exit 2; \
         the run was {:#?}",
        Run {
            code: run.code,
            stdout: run.stdout.chars().take(2000).collect(),
            stderr: run.stderr.chars().take(2000).collect(),
        }
    );
    let error = run.error_line();
    assert!(
        error.contains("bytes") || error.contains("KiB") || error.contains("MiB"),
        "the error says how large the task is, or may be: {error}"
    );
    assert!(
        error.len() < 1000,
        "the error does not echo the task: {} bytes",
        error.len()
    );
    assert!(model.received().is_empty(), "{}", model.describe());
    assert!(site.executions().is_empty());
}
