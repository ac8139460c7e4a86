//! Tasks that run to their end: several model turns with tool calls (two of them at once),
//! history across tasks of one session, tool errors that go back to the model, `max_steps`, the
//! Anthropic protocol, and progress on stderr.

use serde_json::{Value, json};

use crate::model::{
    Conversation, FakeModel, INPUT_TOKENS, OUTPUT_TOKENS, Reply, Wire, call, raw_call,
};
use crate::site::{
    AGENT, INSTRUCTIONS, Options, Outcome, Site, Store, expect_answered, expect_code, output_of,
};

const MULTI_STEP_TASK: &str = "Count p1 and p2 at once, then p3.";
const MULTI_STEP_ANSWER: &str = "Counted p1, p2 and p3.";

/// Turn 0 asks for p1 and p2 at once (400 ms each), turn 1 for p3, turn 2 answers.
fn multi_step(c: &Conversation) -> Reply {
    let count = c.tool("counter", "count");
    match c.turn() {
        0 => Reply::calls(vec![
            call("call_p1", &count, json!({"label": "p1", "sleep_ms": 400})),
            call("call_p2", &count, json!({"label": "p2", "sleep_ms": 400})),
        ]),
        1 if c.results().len() == 2 => {
            Reply::calls(vec![call("call_p3", &count, json!({"label": "p3"}))])
        }
        2 if c.results().len() == 3 => Reply::answer(MULTI_STEP_ANSWER),
        _ => Reply::unexpected("not a turn of the multi-step script", c),
    }
}

/// The JSON a `tool` message carries for a successful `count`, parsed.
fn count_result(c: &Conversation, model_call_id: &str) -> Value {
    let message = c
        .result_of(model_call_id)
        .unwrap_or_else(|| panic!("no result of {model_call_id} in\n{}", c.describe()));
    serde_json::from_str(&message.content).unwrap_or_else(|e| {
        panic!(
            "the result of {model_call_id} is not the tool's JSON output ({e}): {}",
            message.content
        )
    })
}

fn a_multi_step_task_with_parallel_calls(store: Store) {
    let model = FakeModel::start(multi_step);
    let Some(site) = Site::open(
        "multi_step",
        &model,
        Options {
            store,
            ..Options::default()
        },
    ) else {
        return;
    };
    let run = site.run_task(MULTI_STEP_TASK, &[]);
    let out = expect_answered(&run, &model);
    assert_eq!(out.answer.as_deref(), Some(MULTI_STEP_ANSWER));

    // What the model saw: instructions, the task, the agent's tools, and each turn's results.
    let asked = model.answered();
    assert_eq!(asked.len(), 3, "{}", model.describe());
    let first = &asked[0];
    assert!(
        first.system().contains(INSTRUCTIONS),
        "the agent's instructions are the system prompt:\n{}",
        first.describe()
    );
    assert_eq!(first.task(), MULTI_STEP_TASK);
    let mut offered = first.tools.clone();
    offered.sort();
    assert_eq!(
        offered,
        ["counter__count", "counter__fail"],
        "the agent's tools (counter/*), and no others, are offered"
    );
    let count_tool = first.body["tools"]
        .as_array()
        .and_then(|tools| {
            tools
                .iter()
                .find(|t| t["function"]["name"] == "counter__count")
        })
        .unwrap_or_else(|| panic!("counter__count is not offered: {:#}", first.body));
    assert_eq!(
        count_tool["function"]["parameters"]["properties"]["label"]["type"], "string",
        "a tool is offered with its input schema: {count_tool:#}"
    );
    // Both results of the parallel pair reach the model in the next request.
    let second = &asked[1];
    let p1 = count_result(second, "call_p1");
    let p2 = count_result(second, "call_p2");
    assert_eq!(
        (p1["label"].as_str(), p2["label"].as_str()),
        (Some("p1"), Some("p2"))
    );
    let p3 = count_result(&asked[2], "call_p3");
    assert_eq!(p3["label"], "p3");

    // What ran: each call once, for this session and agent; the pair at the same time.
    let runs = site.executions();
    assert_eq!(runs.len(), 3, "{runs:#?}");
    let by_label = |label: &str| {
        runs.iter()
            .find(|e| e.label == label)
            .unwrap_or_else(|| panic!("{label} never ran: {runs:#?}"))
    };
    let (e1, e2, e3) = (by_label("p1"), by_label("p2"), by_label("p3"));
    for e in [e1, e2, e3] {
        assert_eq!(e.session, out.session, "{e:?}");
        assert_eq!(e.agent, AGENT, "{e:?}");
        assert!(e.finished_ms.is_some(), "{e:?}");
    }
    let (f1, f2) = (e1.finished_ms.unwrap(), e2.finished_ms.unwrap());
    assert!(
        e1.started_ms < f2 && e2.started_ms < f1,
        "the two tool calls of one model response ran one after the other, not in parallel: \
         p1 {}..{f1}, p2 {}..{f2}",
        e1.started_ms,
        e2.started_ms
    );
    assert_eq!(
        p1["call_id"],
        e1.call_id.as_str(),
        "the model saw the tool's output"
    );
    assert_eq!(p3["call_id"], e3.call_id.as_str());

    // The journal: every step, in order, with the Warden call ids the plugin saw.
    let kinds = out.kinds();
    assert_eq!(kinds.first(), Some(&"task_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"final_answer"), "{kinds:?}");
    assert_eq!(out.steps[0].payload["input"], MULTI_STEP_TASK);
    assert_eq!(
        out.of_kind("final_answer")[0].payload["text"],
        MULTI_STEP_ANSWER
    );
    assert!(
        out.steps.windows(2).all(|w| w[0].step < w[1].step),
        "steps are in journal order: {kinds:?}"
    );
    let responses = out.of_kind("model_response");
    assert_eq!(responses.len(), 3, "{kinds:?}");
    let ids: Vec<&Value> = responses[0].payload["tool_calls"]
        .as_array()
        .expect("a model_response lists its tool calls")
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids, [&json!("call_p1"), &json!("call_p2")]);
    assert_eq!(responses[0].payload["usage"]["input_tokens"], INPUT_TOKENS);
    assert_eq!(
        responses[0].payload["usage"]["output_tokens"],
        OUTPUT_TOKENS
    );
    assert_eq!(responses[2].payload["text"], MULTI_STEP_ANSWER);
    assert_eq!(out.of_kind("tool_call").len(), 3, "{kinds:?}");
    assert_eq!(out.of_kind("tool_result").len(), 3, "{kinds:?}");
    for (model_id, execution) in [("call_p1", e1), ("call_p2", e2), ("call_p3", e3)] {
        let result = out.result_for(model_id);
        assert_eq!(result.payload["ok"], true, "{:#}", result.payload);
        assert_eq!(
            result.call_id.as_deref(),
            Some(execution.call_id.as_str()),
            "the journal's call id is the one the plugin saw"
        );
        assert_eq!(output_of(result)["call_id"], execution.call_id.as_str());
        let call = out
            .of_kind("tool_call")
            .into_iter()
            .find(|s| s.payload["model_call_id"] == model_id)
            .unwrap_or_else(|| panic!("no tool_call for {model_id}: {:#}", out.json));
        assert_eq!(call.call_id, result.call_id);
        assert!(
            call.step < result.step,
            "a call is journaled before its result"
        );
        assert_eq!(call.payload["plugin"], "counter");
        assert_eq!(call.payload["tool"], "count");
        assert_eq!(call.payload["name"], "counter__count");
    }
    // The same journal, read from the store by another process.
    let stored = site.journal(&out.session);
    let stored_kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(stored_kinds, kinds, "--json's steps are the task's journal");
    assert!(
        stored
            .iter()
            .all(|e| e.task.hyphenated().to_string() == out.task),
        "every entry belongs to task {}",
        out.task
    );
}

#[test]
fn a_multi_step_task_runs_parallel_tool_calls_at_once_and_journals_every_step() {
    a_multi_step_task_with_parallel_calls(Store::Sqlite);
}

#[test]
fn a_multi_step_task_runs_parallel_tool_calls_at_once_and_journals_every_step_on_postgres() {
    a_multi_step_task_with_parallel_calls(Store::Postgres);
}

const FIRST_TASK: &str = "How many apples are there? Count them.";
const FIRST_ANSWER: &str = "There are 3 apples.";
const SECOND_TASK: &str = "What did I ask you before, and what did you say?";
const SECOND_ANSWER: &str = "You asked about apples; I said there are 3.";

#[test]
fn a_second_task_on_the_same_session_sees_the_first_tasks_input_and_answer() {
    let model = FakeModel::start(|c: &Conversation| match (c.task(), c.turn()) {
        (FIRST_TASK, 0) => Reply::calls(vec![call(
            "call_apples",
            &c.tool("counter", "count"),
            json!({"label": "apples"}),
        )]),
        (FIRST_TASK, 1) => Reply::answer(FIRST_ANSWER),
        (SECOND_TASK, 0) => Reply::answer(SECOND_ANSWER),
        _ => Reply::unexpected("not a turn of either task", c),
    });
    let site = Site::new(&model, Options::default());
    let first = expect_answered(&site.run_task(FIRST_TASK, &[]), &model);
    let second = expect_answered(
        &site.run_task(SECOND_TASK, &["--session", &first.session]),
        &model,
    );
    assert_eq!(second.session, first.session);
    assert_ne!(second.task, first.task, "each task has its own id");
    assert_eq!(second.answer.as_deref(), Some(SECOND_ANSWER));

    let asked = model.answered_for(SECOND_TASK);
    assert_eq!(asked.len(), 1, "{}", model.describe());
    let history = &asked[0];
    let position = |role: &str, text: &str| {
        history
            .messages
            .iter()
            .position(|m| m.role == role && m.content.contains(text))
            .unwrap_or_else(|| {
                panic!(
                    "the second task's first request lacks the first task's {role} message \
                     {text:?}:\n{}",
                    history.describe()
                )
            })
    };
    let (input, answer, now) = (
        position("user", FIRST_TASK),
        position("assistant", FIRST_ANSWER),
        position("user", SECOND_TASK),
    );
    assert!(input < answer && answer < now, "{}", history.describe());

    // Each task's --json has its own steps; the session's journal has both.
    assert_eq!(second.steps[0].kind, "task_started");
    assert_eq!(second.steps[0].payload["input"], SECOND_TASK);
    assert!(
        second.of_kind("tool_call").is_empty() && second.of_kind("task_started").len() == 1,
        "the second task's steps are its own: {:?}",
        second.kinds()
    );
    assert!(second.steps[0].step > first.steps.last().unwrap().step);
    let journal = site.journal(&first.session);
    let started: Vec<String> = journal
        .iter()
        .filter(|e| e.kind.as_str() == "task_started")
        .map(|e| e.payload["input"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(started, [FIRST_TASK, SECOND_TASK]);
    assert_eq!(site.executions().len(), 1, "the first task's call ran once");
}

const ERRORS_TASK: &str = "Try four tools that cannot work.";

#[test]
fn tool_errors_go_back_to_the_model_as_tool_results_and_the_task_goes_on() {
    let model = FakeModel::start(|c: &Conversation| match c.turn() {
        0 => Reply::calls(vec![
            // Loaded in the config, but not one of the agent's tools.
            call("call_forbidden", "text-tools__echo", json!({"text": "hi"})),
            call("call_unknown", "nosuchplugin__nosuchtool", json!({})),
            raw_call("call_badjson", &c.tool("counter", "count"), "{\"label\": "),
            call(
                "call_fail",
                &c.tool("counter", "fail"),
                json!({"reason": "on purpose"}),
            ),
        ]),
        1 if c.results().len() == 4 => Reply::answer("All four failed, as expected."),
        _ => Reply::unexpected("not a turn of the tool-errors script", c),
    });
    let site = Site::new(&model, Options::default());
    let run = site.run_task(ERRORS_TASK, &[]);
    let out = expect_answered(&run, &model);
    assert_eq!(out.answer.as_deref(), Some("All four failed, as expected."));

    let asked = model.answered();
    assert_eq!(asked.len(), 2, "{}", model.describe());
    assert!(
        !asked[0].tools.iter().any(|t| t.starts_with("text-tools")),
        "a tool the agent may not use is not offered: {:?}",
        asked[0].tools
    );
    let result = |id: &str| -> String {
        asked[1]
            .result_of(id)
            .unwrap_or_else(|| {
                panic!(
                    "the error of {id} did not come back to the model as its tool result:\n{}",
                    asked[1].describe()
                )
            })
            .content
            .clone()
    };
    let forbidden = result("call_forbidden");
    assert!(
        forbidden.contains("text-tools"),
        "the refusal names the tool asked for: {forbidden:?}"
    );
    let unknown = result("call_unknown");
    assert!(
        unknown.contains("nosuchplugin__nosuchtool"),
        "the error names the unknown tool: {unknown:?}"
    );
    let bad = result("call_badjson");
    assert!(
        bad.to_lowercase().contains("json"),
        "the error says the arguments are not JSON: {bad:?}"
    );
    let failed = result("call_fail");
    assert!(
        failed.contains("the fail tool always fails (on purpose)"),
        "the tool's own error reaches the model: {failed:?}"
    );
    assert!(
        site.executions().is_empty(),
        "count with arguments that are not JSON must not run"
    );
    for id in [
        "call_forbidden",
        "call_unknown",
        "call_badjson",
        "call_fail",
    ] {
        let r = out.result_for(id);
        assert_eq!(r.payload["ok"], false, "{:#}", r.payload);
        assert!(
            r.payload["error"]["kind"]
                .as_str()
                .is_some_and(|k| !k.is_empty())
                && r.payload["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
            "a failed tool result records its error: {:#}",
            r.payload
        );
    }
}

const LOOP_TASK: &str = "Keep counting forever.";
const AFTER_LOOP_TASK: &str = "Stop counting and just answer.";

#[test]
fn max_steps_stops_a_model_that_keeps_calling_tools_and_keeps_its_work() {
    const MAX_STEPS: u32 = 3;
    let model = FakeModel::start(|c: &Conversation| match c.task() {
        LOOP_TASK => Reply::calls(vec![call(
            &format!("call_loop_{}", c.turn()),
            &c.tool("counter", "count"),
            json!({"label": format!("loop{}", c.turn())}),
        )]),
        AFTER_LOOP_TASK => Reply::answer("Stopped."),
        _ => Reply::unexpected("not a task of the max_steps script", c),
    });
    let site = Site::new(
        &model,
        Options {
            max_steps: MAX_STEPS,
            ..Options::default()
        },
    );
    let run = site.run_task(LOOP_TASK, &[]);
    expect_code(&run, 5, &model);
    model.assert_script_ok();
    let out = Outcome::of(&run);
    assert_eq!(out.status, "max_steps", "{:#}", out.json);
    assert_eq!(out.answer, None);
    let responses = out.of_kind("model_response");
    let asked = model.answered_for(LOOP_TASK).len();
    assert!(
        (1..=MAX_STEPS as usize).contains(&responses.len()),
        "{} model steps with max_steps = {MAX_STEPS}",
        responses.len()
    );
    assert_eq!(
        responses.len(),
        asked,
        "every model response was journaled, and none asked for twice"
    );
    let failed = out.of_kind("task_failed");
    assert_eq!(failed.len(), 1, "{:?}", out.kinds());
    assert_eq!(failed[0].payload["reason"], "max_steps");

    // The partial work is kept: each call that ran is in the journal, with its result.
    let runs = site.executions();
    assert!(!runs.is_empty(), "the tool calls before the limit ran");
    let results = out.of_kind("tool_result");
    assert_eq!(results.len(), runs.len(), "{:?} vs {runs:#?}", out.kinds());
    for e in &runs {
        assert!(
            results.iter().any(
                |r| r.call_id.as_deref() == Some(e.call_id.as_str()) && r.payload["ok"] == true
            ),
            "the execution of {} ({}) has no tool_result in the journal",
            e.label,
            e.call_id
        );
    }
    let stored = site.journal(&out.session);
    assert_eq!(
        stored
            .iter()
            .filter(|e| e.kind.as_str() == "tool_result")
            .count(),
        runs.len(),
        "the store keeps the work"
    );
    // The session is free for the next task.
    let next = expect_answered(
        &site.run_task(AFTER_LOOP_TASK, &["--session", &out.session]),
        &model,
    );
    assert_eq!(next.answer.as_deref(), Some("Stopped."));
}

const CLAUDE_TASK: &str = "Count one claude.";

#[test]
fn an_anthropic_backend_runs_a_multi_step_task_with_a_tool_call() {
    let model = FakeModel::start(|c: &Conversation| match c.turn() {
        0 => Reply::calls(vec![call(
            "toolu_01",
            &c.tool("counter", "count"),
            json!({"label": "claude"}),
        )]),
        1 if c.result_of("toolu_01").is_some() => Reply::answer("Counted one claude."),
        _ => Reply::unexpected("not a turn of the Anthropic script", c),
    });
    let site = Site::new(
        &model,
        Options {
            wire: Wire::Anthropic,
            ..Options::default()
        },
    );
    let out = expect_answered(&site.run_task(CLAUDE_TASK, &[]), &model);
    assert_eq!(out.answer.as_deref(), Some("Counted one claude."));
    let asked = model.answered();
    assert_eq!(asked.len(), 2, "{}", model.describe());
    assert!(asked.iter().all(|c| c.wire == Wire::Anthropic));
    assert!(
        asked[0].system().contains(INSTRUCTIONS),
        "{}",
        asked[0].describe()
    );
    let tool = asked[0].body["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "counter__count"))
        .unwrap_or_else(|| panic!("counter__count is not offered: {:#}", asked[0].body));
    assert_eq!(
        tool["input_schema"]["properties"]["label"]["type"],
        "string"
    );
    // The second request carries the assistant's tool_use and the tool_result for it.
    let body = &asked[1].body;
    let blocks: Vec<&Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .collect();
    assert!(
        blocks
            .iter()
            .any(|b| b["type"] == "tool_use" && b["id"] == "toolu_01"),
        "{body:#}"
    );
    assert!(
        blocks
            .iter()
            .any(|b| b["type"] == "tool_result" && b["tool_use_id"] == "toolu_01"),
        "{body:#}"
    );
    let runs = site.executions();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(
        count_result(&asked[1], "toolu_01")["call_id"],
        runs[0].call_id.as_str()
    );
    let response = out.of_kind("model_response")[0];
    assert_eq!(response.payload["usage"]["input_tokens"], INPUT_TOKENS);
    assert_eq!(
        out.result_for("toolu_01").call_id.as_deref(),
        Some(runs[0].call_id.as_str())
    );
}

const SHOWN_TASK: &str = "Count once, visibly.";
const SHOWN_ANSWER: &str = "Counted once.";

#[test]
fn progress_goes_to_stderr_and_quiet_silences_it() {
    let model = FakeModel::start(|c: &Conversation| match c.turn() {
        0 => Reply::calls(vec![call(
            "call_shown",
            &c.tool("counter", "count"),
            json!({"label": "shown"}),
        )]),
        1 => Reply::answer(SHOWN_ANSWER),
        _ => Reply::unexpected("not a turn of the progress script", c),
    });
    let site = Site::new(&model, Options::default());
    let tokens = [
        INPUT_TOKENS.to_string(),
        (INPUT_TOKENS + OUTPUT_TOKENS).to_string(),
    ];

    let shown = site.warden(&Site::run_args(SHOWN_TASK, &[]));
    expect_code(&shown, 0, &model);
    assert!(
        shown.stdout.contains(SHOWN_ANSWER),
        "without --json the answer goes to stdout: {shown:#?}"
    );
    assert!(
        shown.stderr.contains("counter/count") || shown.stderr.contains("counter__count"),
        "progress names each tool call: {shown:#?}"
    );
    assert!(
        tokens.iter().any(|t| shown.stderr.contains(t.as_str())),
        "progress shows the tokens used ({tokens:?}): {shown:#?}"
    );

    let quiet = site.warden(&Site::run_args(SHOWN_TASK, &["--quiet"]));
    expect_code(&quiet, 0, &model);
    assert!(quiet.stdout.contains(SHOWN_ANSWER), "{quiet:#?}");
    assert!(
        !quiet.stderr.contains("count")
            && !tokens.iter().any(|t| quiet.stderr.contains(t.as_str())),
        "--quiet silences progress: {quiet:#?}"
    );
    model.assert_script_ok();
    assert_eq!(site.executions().len(), 2, "one call per run");
}
