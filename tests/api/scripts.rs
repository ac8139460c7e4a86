//! The fake model's scripts the API tests share. Each reply is decided by the conversation's
//! state (which task, which turn, which results), so a retried or resumed request gets the same.

use serde_json::json;

use crate::model::{Conversation, Reply, call};

/// A task that calls `text-tools/echo` once, then answers.
pub const ECHO_TASK: &str = "Echo hello, then answer.";
/// Its answer.
pub const ECHO_ANSWER: &str = "The echo said hello.";

/// Turn 0: echo "hello"; turn 1 (after the result): the answer.
pub fn echo(c: &Conversation) -> Option<Reply> {
    if c.task() != ECHO_TASK {
        return None;
    }
    Some(match c.turn() {
        0 => Reply::calls(vec![call(
            "call_echo",
            &c.tool("text-tools", "echo"),
            json!({"text": "hello"}),
        )]),
        1 if c
            .result_of("call_echo")
            .is_some_and(|r| r.content.contains("hello")) =>
        {
            Reply::answer(ECHO_ANSWER)
        }
        _ => Reply::unexpected("not a turn of the echo task", c),
    })
}

/// A task that counts slowly (4 s) once, then answers.
pub const SLOW_TASK: &str = "Count slowly, then answer.";
/// Its answer.
pub const SLOW_ANSWER: &str = "Counted slowly.";
/// A task that only answers, which must wait for the slow one.
pub const NEXT_TASK: &str = "What came before?";
/// Its answer.
pub const NEXT_ANSWER: &str = "The slow count came before.";

/// The slow task, and the next one.
pub fn slow(c: &Conversation) -> Option<Reply> {
    Some(match (c.task(), c.turn()) {
        (SLOW_TASK, 0) => Reply::calls(vec![call(
            "call_slow",
            &c.tool("counter", "count"),
            json!({"label": "slow", "sleep_ms": 4000}),
        )]),
        (SLOW_TASK, 1) if c.result_of("call_slow").is_some() => Reply::answer(SLOW_ANSWER),
        (NEXT_TASK, 0) if c.has("assistant", SLOW_ANSWER) => Reply::answer(NEXT_ANSWER),
        (SLOW_TASK | NEXT_TASK, _) => Reply::unexpected("not a turn of the slow tasks", c),
        _ => return None,
    })
}

/// A task that counts a and b, then c slowly, then answers (as tests/agents/crash.rs).
pub const CRASH_TASK: &str = "Count a and b, then c slowly, then answer.";
/// Its answer.
pub const CRASH_ANSWER: &str = "Counted a, b and c.";

/// Turn 0: a and b; turn 1: c, which takes `c_ms`; turn 2: the answer.
pub fn crash(c: &Conversation, c_ms: u64) -> Option<Reply> {
    if c.task() != CRASH_TASK {
        return None;
    }
    let count = c.tool("counter", "count");
    Some(match c.turn() {
        0 => Reply::calls(vec![
            call("call_a", &count, json!({"label": "a"})),
            call("call_b", &count, json!({"label": "b"})),
        ]),
        1 if c.results().len() == 2 => Reply::calls(vec![call(
            "call_c",
            &count,
            json!({"label": "c", "sleep_ms": c_ms}),
        )]),
        2 if c.result_of("call_c").is_some() => Reply::answer(CRASH_ANSWER),
        _ => Reply::unexpected("not a turn of the crash script", c),
    })
}

/// A script for some tasks: `None` for a conversation whose task it does not know.
pub type Partial<'a> = &'a dyn Fn(&Conversation) -> Option<Reply>;

/// The first script that knows the conversation's task, else an unexpected reply.
pub fn any_of(c: &Conversation, scripts: &[Partial<'_>]) -> Reply {
    scripts
        .iter()
        .find_map(|s| s(c))
        .unwrap_or_else(|| Reply::unexpected("no script knows this task", c))
}
