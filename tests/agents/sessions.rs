//! One task at a time per session, across processes: a second `warden agent run` on a busy
//! session is refused (exit 8, naming the session, suggesting `--wait`), or with `--wait` runs
//! once the first is done, and sees its history.

use std::time::Duration;

use serde_json::json;

use crate::model::{Conversation, FakeModel, Reply, call};
use crate::site::{Options, Site, Store, expect_answered, expect_code};

const SLOW_TASK: &str = "First: count slowly.";
const SLOW_ANSWER: &str = "First done.";
const NEXT_TASK: &str = "Second: what came first?";
const NEXT_ANSWER: &str = "Second saw the first.";

fn script(c: &Conversation) -> Reply {
    match (c.task(), c.turn()) {
        (SLOW_TASK, 0) => Reply::calls(vec![call(
            "call_slow",
            &c.tool("counter", "count"),
            json!({"label": "slow", "sleep_ms": 4000}),
        )]),
        (SLOW_TASK, 1) => Reply::answer(SLOW_ANSWER),
        (NEXT_TASK, 0) if c.has("assistant", SLOW_ANSWER) => Reply::answer(NEXT_ANSWER),
        (NEXT_TASK, 0) => Reply::unexpected("the second task does not see the first's answer", c),
        _ => Reply::unexpected("not a turn of either task", c),
    }
}

fn two_processes_on_one_session(store: Store) {
    let model = FakeModel::start(script);
    let Some(site) = Site::open(
        "busy_session",
        &model,
        Options {
            store,
            ..Options::default()
        },
    ) else {
        return;
    };
    let mut first = site.spawn(&Site::run_args(SLOW_TASK, &["--json"]));
    let slow = first.wait_for(
        "the first task's slow call to start",
        Duration::from_secs(60),
        || {
            site.executions_of("slow")
                .into_iter()
                .find(|e| e.finished_ms.is_none())
        },
    );
    let session = slow.session.clone();

    let refused = site.run_task(NEXT_TASK, &["--session", &session]);
    expect_code(&refused, 8, &model);
    let error = refused.error_line().to_string();
    assert!(
        error.contains(&session),
        "the refusal names the busy session: {refused:#?}"
    );
    assert!(
        refused.stderr.contains("--wait"),
        "the refusal suggests --wait: {refused:#?}"
    );
    assert!(
        first.running(),
        "the first task ended before the second was refused; the refusal proves nothing"
    );
    assert!(
        model.answered_for(NEXT_TASK).is_empty(),
        "a refused task reached the model\n{}",
        model.describe()
    );

    let waiting = site.spawn(&Site::run_args(
        NEXT_TASK,
        &["--json", "--session", &session, "--wait"],
    ));
    assert!(
        first.running(),
        "the first task ended before the waiting one started; --wait is not under test"
    );
    let first = first.finish(Duration::from_secs(120));
    let first = expect_answered(&first, &model);
    assert_eq!(first.answer.as_deref(), Some(SLOW_ANSWER));
    let second = expect_answered(&waiting.finish(Duration::from_secs(120)), &model);
    assert_eq!(second.session, session);
    assert_eq!(second.answer.as_deref(), Some(NEXT_ANSWER));

    // The second task's model call came after the first task's last one.
    let received = model.received();
    let last_first = received
        .iter()
        .rposition(|r| {
            r.conversation
                .as_ref()
                .is_some_and(|c| c.task() == SLOW_TASK)
        })
        .unwrap();
    let first_second = received
        .iter()
        .position(|r| {
            r.conversation
                .as_ref()
                .is_some_and(|c| c.task() == NEXT_TASK)
        })
        .unwrap();
    assert!(
        last_first < first_second,
        "the tasks were interleaved\n{}",
        model.describe()
    );
    assert_eq!(site.executions_of("slow").len(), 1);
    let journal = site.journal(&session);
    let started = journal
        .iter()
        .filter(|e| e.kind.as_str() == "task_started")
        .count();
    assert_eq!(
        started, 2,
        "the refused run left no task in the journal: {journal:#?}"
    );
}

#[test]
fn a_second_task_on_a_busy_session_is_refused_and_with_wait_runs_after_the_first() {
    two_processes_on_one_session(Store::Sqlite);
}

#[test]
fn a_second_task_on_a_busy_session_is_refused_and_with_wait_runs_after_the_first_on_postgres() {
    two_processes_on_one_session(Store::Postgres);
}
