//! `warden session show`: the session, its conversation, its tool calls, its memory, its lease
//! and its whole journal, as text and as JSON.

use serde_json::json;
use uuid::Uuid;

use warden::state::journal::{MAX_READ_ENTRIES, StepKind};

use crate::fixture::{ANSWER, FIRST_TURN, Fixture, INPUT, Kind, step};
use crate::on_both_stores;

on_both_stores!(
    json_gives_every_part_of_the_session,
    text_gives_every_part_of_the_session,
    stored_text_is_escaped_and_long_text_clipped_only_in_the_text_view,
    a_journal_longer_than_one_read_is_shown_whole,
);

async fn json_gives_every_part_of_the_session(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "show_json").await else {
        return;
    };
    let w = fx.task("local", "support").await;
    let lease = fx.lease("local", &w.session, "host-a/task-1").await;
    let id = w.session.id.to_string();
    let run = fx.warden(&["session", "show", &id, "--json"]);
    run.assert_code(0);
    let doc = run.json();

    let s = &doc["session"];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["tenant"], "local");
    assert_eq!(s["agent"], "support");
    assert_eq!(s["status"], "idle");
    assert_eq!(s["created_at_ms"], w.session.created_at_ms);

    let conversation = doc["conversation"].as_array().unwrap();
    let types: Vec<&str> = conversation
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["user", "assistant", "tool", "tool", "assistant", "answer"]
    );
    assert_eq!(conversation[0]["text"], INPUT);
    assert_eq!(conversation[0]["task"], w.task.to_string());
    assert_eq!(conversation[1]["text"], FIRST_TURN);
    assert_eq!(conversation[1]["usage"]["input_tokens"], 120);
    assert_eq!(conversation[1]["tool_calls"][1]["id"], "call_b");
    assert_eq!(conversation[4]["finish_reason"], "stop");
    assert_eq!(conversation[5]["text"], ANSWER);

    let calls = doc["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["call_id"], w.call_ids[0].as_str());
    assert_eq!(calls[0]["model_call_id"], "call_a");
    assert_eq!(calls[0]["plugin"], "files");
    assert_eq!(calls[0]["tool"], "read");
    assert_eq!(calls[0]["arguments"], json!({"path": "a.md"}));
    assert_eq!(calls[0]["status"], "ok");
    assert_eq!(calls[0]["output"], json!({"text": "alpha"}));
    assert_eq!(calls[0]["elapsed_ms"], 12);
    assert_eq!(calls[0]["step"], 2);
    assert_eq!(calls[0]["result_step"], 4);
    assert!(calls[0]["finished_at_ms"].as_u64().unwrap() >= calls[0]["at_ms"].as_u64().unwrap());
    assert_eq!(calls[1]["status"], "error");
    assert_eq!(calls[1]["error"]["kind"], "denied");

    let session_memory = doc["memory"]["session"].as_array().unwrap();
    assert_eq!(session_memory.len(), 1);
    assert_eq!(session_memory[0]["key"], "summary");
    assert_eq!(session_memory[0]["value"], json!({"text": "alpha"}));
    assert_eq!(session_memory[0]["version"], 1);
    assert_eq!(session_memory[0]["written_by_agent"], "support");
    assert_eq!(session_memory[0]["written_by_tool"], "notes/remember");
    let agent_memory = doc["memory"]["agent"].as_array().unwrap();
    assert_eq!(agent_memory.len(), 1);
    assert_eq!(agent_memory[0]["key"], "style");
    assert_eq!(agent_memory[0]["value"], "terse");

    let l = &doc["lease"];
    assert_eq!(l["holder"], "host-a/task-1");
    assert_eq!(l["token"], lease.token.0);
    assert_eq!(l["expires_at_ms"], lease.expires_at_ms);
    assert_eq!(l["live"], true);

    let journal = doc["journal"].as_array().unwrap();
    assert_eq!(journal.len(), 8);
    let kinds: Vec<&str> = journal
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "task_started",
            "model_response",
            "tool_call",
            "tool_call",
            "tool_result",
            "tool_result",
            "model_response",
            "final_answer"
        ]
    );
    for (i, e) in journal.iter().enumerate() {
        assert_eq!(e["step"], i);
        assert_eq!(e["task"], w.task.to_string());
        assert!(e["token"].as_u64().unwrap() >= 1);
    }
    assert_eq!(journal[2]["call_id"], w.call_ids[0].as_str());
    assert_eq!(journal[0]["payload"], json!({"input": INPUT}));

    // A released lease is no lease at all.
    assert!(fx.agents.release_lease("local", &lease).await.unwrap());
    let after = fx.warden(&["session", "show", &id, "--json"]);
    after.assert_code(0);
    assert_eq!(after.json()["lease"], serde_json::Value::Null);
}

async fn text_gives_every_part_of_the_session(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "show_text").await else {
        return;
    };
    let w = fx.task("local", "support").await;
    fx.lease("local", &w.session, "host-a/task-1").await;
    let id = w.session.id.to_string();
    let run = fx.warden(&["session", "show", &id]);
    run.assert_code(0);
    let out = &run.stdout;
    for needle in [
        format!("session  {id}"),
        "agent    support".into(),
        "status   idle".into(),
        "lease    held by `host-a/task-1`".into(),
        "live, lapses in".into(),
        "conversation (6 items)".into(),
        format!("task {}", w.task),
        INPUT.into(),
        "assistant  model gpt-test, via local-openai, 120 in / 30 out tokens, finish tool_calls"
            .into(),
        FIRST_TURN.into(),
        r#"asks for files_read {"path":"secret.md"}"#.into(),
        "tool files/read  ok in 12 ms".into(),
        "tool files/read  error in 3 ms (denied)".into(),
        r#"output: {"text":"alpha"}"#.into(),
        "no grant covers secret.md".into(),
        "answer".into(),
        ANSWER.into(),
        "tool calls (2)".into(),
        format!("call id {}", w.call_ids[1]),
        "memory: session (1 entry)".into(),
        "summary  v1  by support with notes/remember".into(),
        "memory: agent `support` (1 entry)".into(),
        "style  v1".into(),
        r#"    {"text":"alpha"}"#.into(),
        "journal (8 entries)".into(),
        "tool_result".into(),
        "final_answer".into(),
    ] {
        assert!(
            out.contains(&needle),
            "the text view lacks {needle:?}:\n{out}"
        );
    }
    // The parts come in this order.
    let at = |s: &str| out.find(s).unwrap();
    assert!(
        at("conversation (") < at("tool calls (") && at("tool calls (") < at("memory: session")
    );
    assert!(at("memory: agent") < at("journal ("));
}

async fn stored_text_is_escaped_and_long_text_clipped_only_in_the_text_view(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "show_hostile").await else {
        return;
    };
    let session = fx.agents.create_session("local", "support").await.unwrap();
    let task = Uuid::now_v7();
    // A model answer that tries to clear the screen and forge a line, and a tool output far
    // longer than a screen.
    let hostile = "done\u{1b}[2J\r\nerror: forged\u{9b}31m\u{202e}";
    let long = "x".repeat(50_000);
    let lease = fx.lease("local", &session, "test-host/writer").await;
    fx.append(
        "local",
        &session,
        &lease,
        0,
        &[
            step(task, StepKind::TaskStarted, None, json!({"input": "go"})),
            step(
                task,
                StepKind::ToolCall,
                Some("c-1"),
                json!({"index": 0, "model_call_id": "m1", "name": "t", "plugin": "p",
                       "tool": "t", "arguments": {}}),
            ),
            step(
                task,
                StepKind::ToolResult,
                Some("c-1"),
                json!({"index": 0, "model_call_id": "m1", "ok": true,
                       "output": {"text": long}, "error": null, "elapsed_ms": 1}),
            ),
            step(task, StepKind::FinalAnswer, None, json!({"text": hostile})),
        ],
    )
    .await;
    let id = session.id.to_string();

    let text = fx.warden(&["session", "show", &id]);
    text.assert_code(0);
    assert!(
        !text
            .stdout
            .chars()
            .any(|c| c == '\u{1b}' || c == '\u{9b}' || c == '\u{202e}' || c == '\r'),
        "a control character reached the terminal:\n{}",
        text.stdout
    );
    assert!(text.stdout.contains(r"done\u{1b}[2J\r"));
    assert!(
        !text.stdout.lines().any(|l| l.starts_with("error: forged")),
        "stored text started a line of its own:\n{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("more characters; --full or --json shows all]"),
        "the long output should be clipped with a marker:\n{}",
        text.stdout
    );
    assert!(
        text.stdout.len() < 30_000,
        "the text view printed {} bytes",
        text.stdout.len()
    );

    let full = fx.warden(&["session", "show", &id, "--full"]);
    full.assert_code(0);
    assert!(full.stdout.contains(&long));
    assert!(!full.stdout.contains('\u{1b}'));

    let json = fx.warden(&["session", "show", &id, "--json"]);
    json.assert_code(0);
    assert!(
        !json
            .stdout
            .chars()
            .any(|c| c == '\u{1b}' || c == '\u{9b}' || c == '\u{202e}'),
        "a control character reached the terminal in --json"
    );
    let doc = json.json();
    assert_eq!(
        doc["conversation"][2]["text"], hostile,
        "--json keeps every character"
    );
    assert_eq!(
        doc["tool_calls"][0]["output"]["text"],
        long.as_str(),
        "--json never clips"
    );
}

async fn a_journal_longer_than_one_read_is_shown_whole(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "show_long").await else {
        return;
    };
    let session = fx.agents.create_session("local", "support").await.unwrap();
    let task = Uuid::now_v7();
    let pairs = MAX_READ_ENTRIES as usize / 2 + 100;
    let mut steps = vec![step(
        task,
        StepKind::TaskStarted,
        None,
        json!({"input": "long"}),
    )];
    for i in 0..pairs {
        let call = format!("call-{i}");
        steps.push(step(
            task,
            StepKind::ToolCall,
            Some(&call),
            json!({"index": 0, "model_call_id": call, "name": "count", "plugin": "p",
                   "tool": "count", "arguments": {"i": i}}),
        ));
        steps.push(step(
            task,
            StepKind::ToolResult,
            Some(&call),
            json!({"index": 0, "model_call_id": call, "ok": true, "output": i, "error": null,
                   "elapsed_ms": 1}),
        ));
    }
    steps.push(step(
        task,
        StepKind::FinalAnswer,
        None,
        json!({"text": "counted"}),
    ));
    let total = steps.len();
    assert!(total > MAX_READ_ENTRIES as usize);
    let lease = fx.lease("local", &session, "test-host/writer").await;
    fx.append("local", &session, &lease, 0, &steps).await;

    let id = session.id.to_string();
    let run = fx.warden(&["session", "show", &id, "--json"]);
    run.assert_code(0);
    let doc = run.json();
    let journal = doc["journal"].as_array().unwrap();
    assert_eq!(journal.len(), total);
    for (i, e) in journal.iter().enumerate() {
        assert_eq!(e["step"], i, "the journal has a gap or a repeat at {i}");
    }
    let calls = doc["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), pairs);
    assert_eq!(calls[pairs - 1]["output"], pairs - 1);
    assert_eq!(
        doc["conversation"].as_array().unwrap().last().unwrap()["text"],
        "counted"
    );

    let text = fx.warden(&["session", "show", &id]);
    text.assert_code(0);
    assert!(text.stdout.contains(&format!("journal ({total} entries)")));
    assert!(text.stdout.contains(&format!("tool calls ({pairs})")));
}
