//! A task's events as server-sent events: `POST …/tasks` with `Accept: text/event-stream`
//! streams the task to its end (`done`, with the TaskStatus), and `GET …/tasks/{task}` with the
//! same header replays them while this process holds them.

use serde_json::{Value, json};

use crate::harness::{AGENT, Event, Options, Resp, Site, parse_sse};
use crate::model::{Conversation, FakeModel};
use crate::scripts::{self, ECHO_ANSWER, ECHO_TASK};

/// The names of `events`, in order.
fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

/// Asserts that `wanted` occur in `events` in this order (other events may come between).
fn assert_in_order(events: &[Event], wanted: &[&str], resp: &Resp) {
    let mut at = 0;
    for name in wanted {
        match events[at..].iter().position(|e| e.name == *name) {
            Some(i) => at += i + 1,
            None => panic!(
                "no `{name}` after position {at}; the events were {:?}\n{resp:?}",
                names(events)
            ),
        }
    }
}

/// Checks an echo task's stream, read to its end, and returns the `done` data.
fn check_echo_stream(resp: &Resp, session: &str) -> Value {
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "an event stream: {resp:?}"
    );
    let events = parse_sse(&resp.body);
    assert_in_order(
        &events,
        &[
            "task_started",
            "model_turn",
            "tool_started",
            "tool_finished",
            "model_turn",
            "answer",
            "done",
        ],
        resp,
    );
    assert_eq!(
        events.last().map(|e| e.name.as_str()),
        Some("done"),
        "`done` is the last event: {:?}",
        names(&events)
    );
    assert_eq!(
        events.iter().filter(|e| e.name == "done").count(),
        1,
        "{:?}",
        names(&events)
    );
    for e in &events {
        // Every event's data is JSON.
        let _ = e.json();
    }
    let of = |name: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.name == name)
            .map(Event::json)
            .collect()
    };
    let started = of("task_started");
    assert_eq!(started.len(), 1, "{:?}", names(&events));
    let turns = of("model_turn");
    assert_eq!(turns.len(), 2, "{:?}", names(&events));
    assert_eq!(turns[0]["tool_calls"], 1, "{:#}", turns[0]);
    assert_eq!(turns[1]["tool_calls"], 0, "{:#}", turns[1]);
    let tool_started = of("tool_started");
    let tool_finished = of("tool_finished");
    assert_eq!(tool_started.len(), 1, "{:?}", names(&events));
    assert_eq!(tool_finished.len(), 1, "{:?}", names(&events));
    assert!(
        tool_started[0]["name"]
            .as_str()
            .is_some_and(|n| n.contains("echo")),
        "{:#}",
        tool_started[0]
    );
    assert!(
        tool_started[0]["call_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{:#}",
        tool_started[0]
    );
    assert_eq!(
        tool_started[0]["call_id"], tool_finished[0]["call_id"],
        "the finished call is the started one"
    );
    assert_eq!(tool_finished[0]["ok"], true, "{:#}", tool_finished[0]);
    let answer = of("answer");
    assert_eq!(answer.len(), 1, "{:?}", names(&events));
    assert_eq!(answer[0]["text"], ECHO_ANSWER, "{:#}", answer[0]);

    let done = of("done").remove(0);
    assert_eq!(done["status"], "answered", "{done:#}");
    assert_eq!(done["session"], session, "{done:#}");
    assert_eq!(done["answer"], ECHO_ANSWER, "{done:#}");
    assert_eq!(done["input"], ECHO_TASK, "{done:#}");
    assert_eq!(done["model_steps"], 2, "{done:#}");
    assert_eq!(done["tool_calls"], 1, "{done:#}");
    assert_eq!(
        started[0]["task"], done["task"],
        "task_started names the task `done` reports"
    );
    done
}

#[test]
fn a_task_posted_for_an_event_stream_streams_every_step_to_done() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[&scripts::echo]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);

    let resp = api.send(
        "POST",
        &format!("/v1/sessions/{session}/tasks"),
        &[
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
        ],
        Some(json!({"input": ECHO_TASK}).to_string().into_bytes()),
    );
    let done = check_echo_stream(&resp, &session);
    model.assert_script_ok();
    let task = done["task"].as_str().unwrap().to_string();

    // The store agrees with the stream.
    let status = api.task(&session, &task);
    assert_eq!(status["status"], "answered", "{status:#}");
    assert_eq!(status["answer"], ECHO_ANSWER, "{status:#}");

    // Replayed from the start by GET with the same header, ending with `done` again.
    let replay = api.send(
        "GET",
        &format!("/v1/sessions/{session}/tasks/{task}"),
        &[("accept", "text/event-stream")],
        None,
    );
    let again = check_echo_stream(&replay, &session);
    assert_eq!(again["task"], task.as_str());
    assert_eq!(
        model.answered_for(ECHO_TASK).len(),
        2,
        "replaying asks the model nothing\n{}",
        model.describe()
    );
}
