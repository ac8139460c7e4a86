//! The errors a client meets, each with its status and kind: a body that is not JSON (400, with
//! serde's reason), a body that is not declared JSON (415), a bad query (400), an unknown agent,
//! session, task, plugin or tool (404, naming it), a tool input against its schema (422), and a
//! busy session (409), which with `"wait": true` runs the task after the running one instead.

use std::time::Duration;

use serde_json::json;

use crate::harness::{AGENT, Options, Site, wait_for};
use crate::model::{Conversation, FakeModel};
use crate::scripts::{self, NEXT_ANSWER, NEXT_TASK, SLOW_ANSWER, SLOW_TASK};

#[test]
fn a_body_that_is_not_json_is_400_with_serdes_reason() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);
    let json_header = [("content-type", "application/json")];

    for (path, body) in [
        ("/v1/sessions".to_string(), r#"{"agent": "counting""#),
        (format!("/v1/sessions/{session}/tasks"), "not json"),
        (
            format!("/v1/sessions/{session}/tasks"),
            r#"{"input": "x",}"#,
        ),
        (
            format!("/v1/sessions/{session}/tools/text-tools/echo"),
            r#"{"text": "unterminated"#,
        ),
    ] {
        let resp = api.send("POST", &path, &json_header, Some(body.as_bytes().to_vec()));
        let message = resp.expect_error(400, &["invalid_input"]);
        // serde_json's errors end with where they are: "... at line 1 column N".
        assert!(
            message.contains("line 1 column"),
            "the message gives serde's reason, with its position:\n{resp:?}"
        );
    }
    // The reason itself, for an object cut short.
    let resp = api.send(
        "POST",
        "/v1/sessions",
        &json_header,
        Some(br#"{"agent": "counting""#.to_vec()),
    );
    let message = resp.expect_error(400, &["invalid_input"]);
    assert!(message.contains("EOF while parsing"), "{resp:?}");

    // Not declared JSON: 415.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let resp = api.send(
            "POST",
            "/v1/sessions",
            &[("content-type", content_type)],
            Some(json!({"agent": AGENT}).to_string().into_bytes()),
        );
        assert_eq!(resp.status, 415, "Content-Type: {content_type}\n{resp:?}");
    }
    let resp = api.send(
        "POST",
        "/v1/sessions",
        &[],
        Some(json!({"agent": AGENT}).to_string().into_bytes()),
    );
    assert_eq!(resp.status, 415, "no Content-Type:\n{resp:?}");

    // A bad query: 400 invalid_input.
    for path in [
        "/v1/sessions?limit=abc",
        "/v1/audit?limit=abc",
        "/v1/audit?limit=-1",
    ] {
        api.get(path).expect_error(400, &["invalid_input"]);
    }
    // None of it made a session or a task.
    let resp = api.get("/v1/sessions");
    assert_eq!(
        resp.expect(200)["sessions"].as_array().unwrap().len(),
        1,
        "{resp:?}"
    );
    assert!(model.received().is_empty(), "{}", model.describe());
}

#[test]
fn unknown_agents_sessions_tasks_plugins_and_tools_are_404_naming_them() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);
    let nowhere = uuid::Uuid::now_v7().hyphenated().to_string();
    let no_task = uuid::Uuid::now_v7().hyphenated().to_string();

    let cases = [
        (
            "no-such-agent",
            api.post("/v1/sessions", &json!({"agent": "no-such-agent"})),
        ),
        ("no-such-agent", api.get("/v1/agents/no-such-agent/tools")),
        (
            nowhere.as_str(),
            api.get(&format!("/v1/sessions/{nowhere}")),
        ),
        (
            nowhere.as_str(),
            api.delete(&format!("/v1/sessions/{nowhere}")),
        ),
        (
            nowhere.as_str(),
            api.post(
                &format!("/v1/sessions/{nowhere}/tasks"),
                &json!({"input": "x"}),
            ),
        ),
        (
            no_task.as_str(),
            api.get(&format!("/v1/sessions/{session}/tasks/{no_task}")),
        ),
        (
            "no-such-plugin",
            api.post(
                &format!("/v1/sessions/{session}/tools/no-such-plugin/echo"),
                &json!({"text": "x"}),
            ),
        ),
        (
            "no-such-tool",
            api.post(
                &format!("/v1/sessions/{session}/tools/text-tools/no-such-tool"),
                &json!({"text": "x"}),
            ),
        ),
    ];
    for (name, resp) in &cases {
        let message = resp.expect_error(404, &["not_found"]);
        assert!(message.contains(name), "the 404 names {name:?}:\n{resp:?}");
    }
    // A session id that is not even an id is not found either (or a bad input), never a 500.
    let resp = api.get("/v1/sessions/not-a-session-id");
    assert!(
        [400, 404].contains(&resp.status),
        "a malformed session id:\n{resp:?}"
    );
    assert!(resp.json()["error"]["kind"].is_string(), "{resp:?}");
}

#[test]
fn a_tool_input_that_violates_the_schema_is_422() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);
    let path = format!("/v1/sessions/{session}/tools/text-tools/echo");
    for input in [
        json!({"text": 5}),
        json!({}),
        json!({"words": "x"}),
        json!("text"),
    ] {
        let resp = api.post(&path, &input);
        let message = resp.expect_error(422, &["invalid_input"]);
        assert!(!message.is_empty(), "{resp:?}");
    }
    assert_eq!(
        api.post(&path, &json!({"text": "fine"})).expect(200),
        json!({"text": "fine"})
    );
}

#[test]
fn a_second_task_on_a_busy_session_is_409_and_with_wait_runs_after_the_first() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[&scripts::slow]));
    let site = Site::sqlite(&model, Options::default());
    let mut serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);
    let first = api.start_task(&session, SLOW_TASK);
    let slow = wait_for(
        &mut serve,
        "the slow count to start",
        Duration::from_secs(120),
        || {
            site.executions_of("slow")
                .into_iter()
                .find(|e| e.finished_ms.is_none())
        },
    );
    assert_eq!(slow.session, session, "the count runs in the API's session");

    let resp = api.post(
        &format!("/v1/sessions/{session}/tasks"),
        &json!({"input": NEXT_TASK}),
    );
    resp.expect_error(409, &["busy"]);
    // The refusal leaves the running task holding its session: still busy to a DELETE.
    let resp = api.delete(&format!("/v1/sessions/{session}"));
    resp.expect_error(409, &["busy"]);
    let running = api.task(&session, &first);
    assert_eq!(
        running["status"], "running",
        "the first task still ran when the second was refused: {running:#}"
    );
    assert!(
        site.executions_of("slow")[0].finished_ms.is_none(),
        "the slow count ended before the refusals; they prove nothing"
    );
    let resp = api.get(&format!("/v1/sessions/{session}"));
    assert_eq!(resp.expect(200)["status"], "running", "{resp:?}");
    assert!(
        model.answered_for(NEXT_TASK).is_empty(),
        "a refused task reached the model\n{}",
        model.describe()
    );

    // With "wait": true the second task is taken, and runs after the first.
    let resp = api.post(
        &format!("/v1/sessions/{session}/tasks"),
        &json!({"input": NEXT_TASK, "wait": true}),
    );
    let second = resp.expect(202)["task"]
        .as_str()
        .unwrap_or_else(|| panic!("{resp:?}"))
        .to_string();
    assert_ne!(second, first);
    let done = api.wait_task(&session, &first, Duration::from_secs(120));
    assert_eq!(done["status"], "answered", "{done:#}\n{}", model.describe());
    assert_eq!(done["answer"], SLOW_ANSWER);
    let done = api.wait_task(&session, &second, Duration::from_secs(120));
    assert_eq!(done["status"], "answered", "{done:#}\n{}", model.describe());
    assert_eq!(
        done["answer"], NEXT_ANSWER,
        "the second task saw the first's answer"
    );
    model.assert_script_ok();
    assert_eq!(site.executions_of("slow").len(), 1);

    let resp = api.get(&format!("/v1/sessions/{session}"));
    let shown = resp.expect(200);
    assert_eq!(shown["status"], "idle", "{resp:?}");
    assert_eq!(shown["tasks"].as_array().unwrap().len(), 2, "{resp:?}");
    let resp = api.delete(&format!("/v1/sessions/{session}"));
    assert_eq!(
        resp.status, 204,
        "an idle session can be deleted:\n{resp:?}"
    );
}

#[test]
fn deleting_a_session_with_a_running_task_is_409_unless_forced() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[&scripts::slow]));
    let site = Site::sqlite(&model, Options::default());
    let mut serve = site.serve();
    let api = serve.api(&site.acme);
    let session = api.create_session(AGENT);
    let task = api.start_task(&session, SLOW_TASK);
    wait_for(
        &mut serve,
        "the slow count to start",
        Duration::from_secs(120),
        || {
            site.executions_of("slow")
                .into_iter()
                .find(|e| e.finished_ms.is_none())
        },
    );
    let resp = api.delete(&format!("/v1/sessions/{session}"));
    resp.expect_error(409, &["busy"]);
    assert!(
        site.executions_of("slow")[0].finished_ms.is_none(),
        "the slow count ended before the refusal; it proves nothing"
    );
    let running = api.task(&session, &task);
    assert_eq!(running["status"], "running", "{running:#}");

    let resp = api.delete(&format!("/v1/sessions/{session}?force=true"));
    assert_eq!(
        resp.status, 204,
        "?force=true deletes a busy session:\n{resp:?}"
    );
    api.get(&format!("/v1/sessions/{session}"))
        .expect_error(404, &["not_found"]);
}
