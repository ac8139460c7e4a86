//! A task survives its server. Killed with SIGKILL in the middle of a tool call, the task is
//! resumed by the next `warden serve` on the same state (at start, once the dead one's lease has
//! lapsed) and finishes by itself, with no completed tool call run again. Stopped with SIGTERM,
//! the server lets the running step finish, commits it, exits 0, and the next one finishes the
//! task without running that step again.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::{AGENT, LEASE_MS, Options, Site, wait_for};
use crate::model::{Conversation, FakeModel};
use crate::scripts::{self, CRASH_ANSWER, CRASH_TASK};
use crate::site::Store;

/// How long c's count sleeps.
const C_MS: u64 = 5_000;

fn a_killed_server_s_task_is_finished_by_the_next_one(store: Store) {
    let model = FakeModel::start(|c: &Conversation| {
        scripts::any_of(c, &[&|c: &Conversation| scripts::crash(c, C_MS)])
    });
    let Some(site) = Site::open("api_kill9", &model, Options::on(store)) else {
        return;
    };
    let mut serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);
    let task = api.start_task(&session, CRASH_TASK);
    let in_flight = wait_for(
        &mut serve,
        "c's execution to start",
        Duration::from_secs(120),
        || {
            site.executions_of("c")
                .into_iter()
                .find(|e| e.finished_ms.is_none())
        },
    );
    assert_eq!(in_flight.session, session);
    let status = api.task(&session, &task);
    assert_eq!(status["status"], "running", "{status:#}");
    serve.kill9();

    // What the killed server had done: a and b finished, c not; two model turns.
    let done_at_kill: BTreeSet<String> = site
        .executions()
        .into_iter()
        .filter(|e| e.finished_ms.is_some())
        .map(|e| e.call_id)
        .collect();
    for label in ["a", "b"] {
        let e = &site.executions_of(label);
        assert_eq!(e.len(), 1, "{label} ran once before the kill: {e:#?}");
        assert!(e[0].finished_ms.is_some(), "{e:#?}");
    }
    assert_eq!(
        model.answered().len(),
        2,
        "two model turns before c ran\n{}",
        model.describe()
    );

    // The next server, once the dead one's lease has lapsed.
    std::thread::sleep(Duration::from_millis(LEASE_MS + 500));
    let restarted = site.serve();
    let api = restarted.api(&site.acme);
    let done = api.wait_task_end(&session, &task, Duration::from_secs(60));
    assert_eq!(
        done["status"],
        "answered",
        "the restarted server finished the task by itself: {done:#}\n{}\nstderr:\n{}",
        model.describe(),
        restarted.stderr()
    );
    assert_eq!(done["answer"], CRASH_ANSWER, "{done:#}");
    assert_eq!(done["tool_calls"], 3, "a, b and c: {done:#}");
    assert_eq!(done["model_steps"], 3, "{done:#}");
    model.assert_script_ok();

    // a and b ran once; c twice, with the same call id; nothing completed ran again.
    let runs = site.runs_per_call_id();
    assert_eq!(runs.len(), 3, "{runs:?}");
    for label in ["a", "b"] {
        let id = &site.executions_of(label)[0].call_id;
        assert_eq!(runs[id], 1, "{label} completed before the kill: {runs:?}");
    }
    let c = site.executions_of("c");
    assert_eq!(c.len(), 2, "c was in flight, so it runs again: {c:#?}");
    assert_eq!(
        c[0].call_id, c[1].call_id,
        "the retried step keeps its call id"
    );
    assert!(c[1].finished_ms.is_some(), "{c:#?}");
    for (call_id, n) in &runs {
        if *n > 1 {
            assert!(
                !done_at_kill.contains(call_id),
                "{call_id} ran again although it had completed before the kill: {runs:?}"
            );
        }
    }
    // The model: 3 answered requests across both servers, none asked twice.
    assert_eq!(
        model.received().len(),
        3,
        "a journaled model response was asked for again\n{}",
        model.describe()
    );
    let resp = api.get(&format!("/v1/sessions/{session}"));
    assert_eq!(resp.expect(200)["status"], "idle", "{resp:?}");
}

#[test]
fn a_task_of_a_killed_server_is_finished_by_the_next_server_without_repeating_completed_calls() {
    a_killed_server_s_task_is_finished_by_the_next_one(Store::Sqlite);
}

#[test]
fn a_task_of_a_killed_server_is_finished_by_the_next_server_on_postgres() {
    a_killed_server_s_task_is_finished_by_the_next_one(Store::Postgres);
}

fn sigterm_drains_then_a_restart_finishes(store: Store) {
    let model = FakeModel::start(|c: &Conversation| {
        scripts::any_of(c, &[&|c: &Conversation| scripts::crash(c, C_MS)])
    });
    let Some(site) = Site::open("api_sigterm", &model, Options::on(store)) else {
        return;
    };
    let mut serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);
    let task = api.start_task(&session, CRASH_TASK);
    let in_flight = wait_for(
        &mut serve,
        "c's execution to start",
        Duration::from_secs(120),
        || {
            site.executions_of("c")
                .into_iter()
                .find(|e| e.finished_ms.is_none())
        },
    );
    serve.signal(libc::SIGTERM);
    let status = serve.wait_exit(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM exits 0 ({status:?}); stderr:\n{}",
        serve.stderr()
    );
    // The step in flight finished before the exit.
    let c = site.executions_of("c");
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_eq!(c[0].call_id, in_flight.call_id);
    assert!(
        c[0].finished_ms.is_some(),
        "the running tool call finished before the exit: {c:#?}"
    );
    drop(serve);

    // The next server finishes the task (the lease was released: no wait for it to lapse).
    let restarted = site.serve();
    let api = restarted.api(&site.acme);
    let done = api.wait_task_end(&session, &task, Duration::from_secs(60));
    assert_eq!(
        done["status"],
        "answered",
        "{done:#}\n{}\nstderr:\n{}",
        model.describe(),
        restarted.stderr()
    );
    assert_eq!(done["answer"], CRASH_ANSWER, "{done:#}");
    model.assert_script_ok();
    let runs = site.runs_per_call_id();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(
        runs.values().all(|n| *n == 1),
        "a step committed at SIGTERM ran again: {runs:?}"
    );
    assert_eq!(
        model.received().len(),
        3,
        "a journaled model response was asked for again\n{}",
        model.describe()
    );
}

#[test]
fn sigterm_during_a_task_exits_0_and_a_restart_finishes_the_task() {
    sigterm_drains_then_a_restart_finishes(Store::Sqlite);
}

#[test]
fn sigterm_during_a_task_exits_0_and_a_restart_finishes_the_task_on_postgres() {
    sigterm_drains_then_a_restart_finishes(Store::Postgres);
}
