//! A task survives its process: killed with SIGKILL in the middle of a tool call, or stopped by
//! a failing model backend, it is finished by `warden agent resume`, and no tool call that had
//! completed runs again, nor is the model asked again for a response already journaled.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::model::{Conversation, FakeModel, Reply, call};
use crate::site::{Options, Outcome, Site, Store, expect_answered, expect_code, output_of};

const CRASH_TASK: &str = "Count a and b, then c slowly, then answer.";
const CRASH_ANSWER: &str = "Counted a, b and c.";

/// Turn 0: a and b; turn 1: c, which takes 5 s; turn 2: the answer.
fn crash_script(c: &Conversation) -> Reply {
    let count = c.tool("counter", "count");
    match c.turn() {
        0 => Reply::calls(vec![
            call("call_a", &count, json!({"label": "a"})),
            call("call_b", &count, json!({"label": "b"})),
        ]),
        1 if c.results().len() == 2 => Reply::calls(vec![call(
            "call_c",
            &count,
            json!({"label": "c", "sleep_ms": 5000}),
        )]),
        2 if c.result_of("call_c").is_some() => Reply::answer(CRASH_ANSWER),
        _ => Reply::unexpected("not a turn of the crash script", c),
    }
}

fn a_killed_task_resumes(store: Store) {
    let model = FakeModel::start(crash_script);
    let Some(site) = Site::open(
        "crash_resume",
        &model,
        Options {
            store,
            ..Options::default()
        },
    ) else {
        return;
    };
    let mut running = site.spawn(&Site::run_args(CRASH_TASK, &["--json"]));
    let in_flight = running.wait_for("c's execution to start", Duration::from_secs(60), || {
        site.executions_of("c")
            .into_iter()
            .find(|e| e.finished_ms.is_none())
    });
    let killed = running.kill9();
    let session = in_flight.session.clone();

    // The state at the kill: a and b done and journaled, c in flight.
    let at_kill = site.journal(&session);
    assert!(
        !at_kill.is_empty(),
        "the killed task left no journal for session {session}; killed run: {killed:#?}"
    );
    let done_at_kill: BTreeSet<String> = at_kill
        .iter()
        .filter(|e| e.kind.as_str() == "tool_result")
        .filter_map(|e| e.call_id.clone())
        .collect();
    let asked_before_kill = model.answered().len();
    assert_eq!(
        asked_before_kill,
        2,
        "two model turns before c ran\n{}",
        model.describe()
    );
    for label in ["a", "b"] {
        let e = &site.executions_of(label)[0];
        assert!(
            done_at_kill.contains(&e.call_id),
            "{label}'s result was not journaled before the next step began; journal at the kill: \
             {at_kill:#?}\nkilled run: {killed:#?}"
        );
    }
    assert!(
        !done_at_kill.contains(&in_flight.call_id),
        "c was still running, yet its result is journaled: {at_kill:#?}"
    );
    assert!(
        at_kill.iter().any(|e| e.kind.as_str() == "tool_call"
            && e.call_id.as_deref() == Some(in_flight.call_id.as_str())),
        "c's tool_call (its call id) is journaled before c runs: {at_kill:#?}"
    );

    let resumed = site.resume(&session);
    let out = expect_answered(&resumed, &model);
    assert_eq!(out.session, session);
    assert_eq!(out.answer.as_deref(), Some(CRASH_ANSWER));
    assert_eq!(
        out.task,
        at_kill[0].task.hyphenated().to_string(),
        "resume finishes the task that was killed"
    );

    // a and b ran once; c twice, with the same call id; nothing else ran twice.
    let runs = site.runs_per_call_id();
    let call_id_of = |label: &str| site.executions_of(label)[0].call_id.clone();
    assert_eq!(
        runs[&call_id_of("a")],
        1,
        "a completed before the kill: {runs:?}"
    );
    assert_eq!(
        runs[&call_id_of("b")],
        1,
        "b completed before the kill: {runs:?}"
    );
    let c = site.executions_of("c");
    assert_eq!(c.len(), 2, "c was in flight, so it runs again: {c:#?}");
    assert_eq!(
        c[0].call_id, c[1].call_id,
        "the retried step keeps its call id"
    );
    assert!(c[1].finished_ms.is_some(), "{c:#?}");
    for (call_id, n) in &runs {
        assert!(*n <= 2, "{call_id} ran {n} times");
        if *n == 2 {
            assert!(
                !done_at_kill.contains(call_id),
                "{call_id} ran again although its result was journaled before the kill"
            );
        }
    }
    assert_eq!(runs.len(), 3, "{runs:?}");

    // The model: 3 requests across both processes, none asked twice.
    assert_eq!(
        model.received().len(),
        3,
        "a journaled model response was asked for again\n{}",
        model.describe()
    );
    let last = &model.answered()[2];
    assert_eq!(last.turn(), 2, "{}", last.describe());
    let seen: serde_json::Value = serde_json::from_str(&last.result_of("call_c").unwrap().content)
        .expect("c's result is its JSON output");
    assert_eq!(seen["call_id"], in_flight.call_id.as_str());

    // The journal: c's result carries the call id both executions had.
    let result = out.result_for("call_c");
    assert_eq!(result.call_id.as_deref(), Some(in_flight.call_id.as_str()));
    assert_eq!(output_of(result)["label"], "c");
    assert_eq!(out.of_kind("final_answer").len(), 1, "{:?}", out.kinds());
}

#[test]
fn a_task_killed_during_a_tool_call_resumes_and_reruns_only_the_call_in_flight() {
    a_killed_task_resumes(Store::Sqlite);
}

#[test]
fn a_task_killed_during_a_tool_call_resumes_and_reruns_only_the_call_in_flight_on_postgres() {
    a_killed_task_resumes(Store::Postgres);
}

const FLAKY_TASK: &str = "Count a and b, then answer.";
const FLAKY_ANSWER: &str = "Counted a and b.";

#[test]
fn a_model_backend_that_fails_mid_task_interrupts_it_and_resume_finishes_it() {
    let model = FakeModel::start(|c: &Conversation| {
        let count = c.tool("counter", "count");
        match c.turn() {
            0 => Reply::calls(vec![
                call("call_a", &count, json!({"label": "a"})),
                call("call_b", &count, json!({"label": "b"})),
            ]),
            1 if c.results().len() == 2 => Reply::answer(FLAKY_ANSWER),
            _ => Reply::unexpected("not a turn of the flaky-backend script", c),
        }
    });
    // One answer, then 500s until the test says otherwise.
    model.fail_after(1);
    let site = Site::new(&model, Options::default());
    let run = site.run_task(FLAKY_TASK, &[]);
    expect_code(&run, 9, &model);
    assert!(
        run.stderr.contains("resume"),
        "the error says the task can be resumed: {run:#?}"
    );
    if !run.stdout.trim().is_empty() {
        let out = Outcome::of(&run);
        assert_eq!(out.status, "interrupted", "{:#}", out.json);
    }
    let failures = model.received().iter().filter(|r| r.status == 500).count();
    assert!(failures >= 1, "{}", model.describe());
    let runs = site.executions();
    assert_eq!(
        runs.len(),
        2,
        "a and b ran before the backend failed: {runs:#?}"
    );
    let session = runs[0].session.clone();
    let journal = site.journal(&session);
    assert_eq!(
        journal
            .iter()
            .filter(|e| e.kind.as_str() == "tool_result")
            .count(),
        2,
        "the work done before the failure is kept: {journal:#?}"
    );

    model.recover();
    let out = expect_answered(&site.resume(&session), &model);
    assert_eq!(out.session, session);
    assert_eq!(out.answer.as_deref(), Some(FLAKY_ANSWER));
    let again = site.runs_per_call_id();
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(
        again.values().all(|n| *n == 1),
        "a completed tool call ran again on resume: {again:?}"
    );
    let asked = model.answered();
    assert_eq!(
        asked.len(),
        2,
        "the journaled first response was asked for again\n{}",
        model.describe()
    );
    assert!(asked[1].result_of("call_a").is_some() && asked[1].result_of("call_b").is_some());
}
