//! The agent loop in-process (`warden::agents::AgentRunner` on a real `WardenHost`, the real
//! text-tools plugin, a real store, and a model that is a real HTTP server on loopback): context
//! compaction, a compaction that fails, and a database lost in the middle of a task.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use warden::agents::{AgentRunner, TaskRequest, TaskStatus, no_events};
use warden::config::WardenConfig;
use warden::error::ErrorKind;
use warden::host::{HostOptions, WardenHost};
use warden::state::journal::StepKind;
use warden::state::testing::{POSTGRES_URL_VAR, run_admin};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// How the scripted model answers the `n`-th request (from 0), given its body.
type Answer = dyn Fn(usize, &Value) -> ResponseTemplate + Send + Sync;

/// A model scripted by a closure over the request body; every body is kept.
#[derive(Clone)]
struct Script {
    answer: Arc<Answer>,
    seen: Arc<Mutex<Vec<Value>>>,
    count: Arc<AtomicUsize>,
}

impl Respond for Script {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(body.clone());
        (self.answer)(n, &body)
    }
}

impl Script {
    fn new(answer: impl Fn(usize, &Value) -> ResponseTemplate + Send + Sync + 'static) -> Script {
        Script {
            answer: Arc::new(answer),
            seen: Arc::default(),
            count: Arc::default(),
        }
    }

    async fn serve(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }

    fn requests(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

fn completion(message: Value) -> ResponseTemplate {
    let finish = if message.get("tool_calls").is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
}

fn text(answer: &str) -> ResponseTemplate {
    completion(json!({"role": "assistant", "content": answer}))
}

fn echo_call(id: &str, said: &str) -> ResponseTemplate {
    completion(json!({
        "role": "assistant",
        "content": null,
        "tool_calls": [{
            "id": id,
            "type": "function",
            "function": {"name": "text-tools__echo", "arguments": json!({"text": said}).to_string()}
        }]
    }))
}

fn is_summary_request(body: &Value) -> bool {
    body["messages"][0]["content"]
        .as_str()
        .is_some_and(|c| c.starts_with("Summarise the conversation"))
}

fn last_role(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["role"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The agent the tests run, with the text-tools plugin.
const HELPER: &str = r#"
[plugins.text-tools]
path = "{plugins}/text-tools.wasm"

[agents.helper]
model = "fast"
instructions = "Be brief."
tools = ["text-tools/*"]
"#;

/// A host on a config with one agent, `helper`, whose alias `fast` is the scripted model.
async fn runner(dir: &Path, model: &MockServer, state: &str, extra: &str) -> AgentRunner {
    runner_with(dir, model, state, extra, HELPER).await
}

/// As [`runner`], with `agent` (plugins and `[agents.helper]`; `{plugins}` is the built
/// plugins' folder) instead of the default.
async fn runner_with(
    dir: &Path,
    model: &MockServer,
    state: &str,
    extra: &str,
    agent: &str,
) -> AgentRunner {
    let plugins = env!("WARDEN_BUILT_PLUGINS");
    let agent = agent.replace("{plugins}", plugins);
    let text = format!(
        r#"
{state}

[models.fast]
backend = "openai"
base_url = "{}/v1"
model = "scripted"
{extra}

{agent}
"#,
        model.uri()
    );
    let config_path = dir.join("warden.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = Arc::new(WardenConfig::load(&config_path).unwrap());
    let host = WardenHost::start(
        crate::common::engine(),
        config,
        &config_path,
        HostOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("start the host: {e}"));
    AgentRunner::new(Arc::new(host))
}

fn task(input: &str, session: Option<warden::state::sessions::SessionId>) -> TaskRequest {
    TaskRequest {
        tenant: "local".into(),
        agent: "helper".into(),
        session,
        input: input.into(),
        wait: false,
    }
}

fn sqlite_state(dir: &Path) -> String {
    format!(
        "[state]\nurl = \"sqlite://{}\"",
        dir.join("state.db").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_tasks_are_summarised_when_the_history_outgrows_the_budget() {
    let long = "x".repeat(4000);
    let script = Script::new(|_, body| {
        if is_summary_request(body) {
            text("SUMMARY: the user sent a long line of x")
        } else {
            text("noted")
        }
    });
    let model = script.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(
        dir.path(),
        &model,
        &sqlite_state(dir.path()),
        "context_tokens = 256",
    )
    .await;
    let first = runner
        .run(task(&long, None), &no_events())
        .await
        .expect("the first task");
    // Nothing older than the first task: no summary was asked for.
    assert_eq!(script.requests().len(), 1);
    let second = runner
        .run(task("and now?", Some(first.session)), &no_events())
        .await
        .expect("the second task");
    assert_eq!(second.status, TaskStatus::Answered);
    let requests = script.requests();
    assert_eq!(requests.len(), 3, "summary, then the task's own request");
    assert!(is_summary_request(&requests[1]));
    let transcript = requests[1]["messages"][1]["content"].as_str().unwrap();
    assert!(
        transcript.contains("xxxx") && transcript.contains("noted"),
        "{transcript}"
    );
    // The task's request carries the summary instead of the turns it covers.
    let sent = requests[2]["messages"].to_string();
    assert!(
        sent.contains("SUMMARY: the user sent a long line of x"),
        "{sent}"
    );
    assert!(
        !sent.contains("xxxx"),
        "the summarised turns were still sent"
    );
    // The original turns stay in the journal, and the summary names the last step it covers.
    let summary = second
        .steps
        .iter()
        .find(|e| e.kind == StepKind::ContextSummary)
        .expect("a context_summary entry");
    assert_eq!(
        summary.payload["through_step"].as_u64(),
        Some(second.steps[0].step - 1)
    );
    assert!(first.steps[0].payload["input"].as_str().unwrap().len() == 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_compaction_changes_nothing() {
    let long = "y".repeat(4000);
    let script = Script::new(|_, body| {
        if is_summary_request(body) {
            // A refusal the router does not retry: the compaction fails at once.
            ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "no"}}))
        } else {
            text("fine")
        }
    });
    let model = script.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(
        dir.path(),
        &model,
        &sqlite_state(dir.path()),
        "context_tokens = 256",
    )
    .await;
    let first = runner.run(task(&long, None), &no_events()).await.unwrap();
    let second = runner
        .run(task("again", Some(first.session)), &no_events())
        .await
        .expect("the task goes on without a summary");
    assert_eq!(second.answer.as_deref(), Some("fine"));
    assert!(
        second
            .steps
            .iter()
            .all(|e| e.kind != StepKind::ContextSummary),
        "a failed summary was journaled"
    );
    let requests = script.requests();
    assert!(is_summary_request(&requests[1]));
    let sent = requests.last().unwrap()["messages"].to_string();
    assert!(sent.contains("yyyy"), "the turns were dropped: {sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_the_model_names_wrongly_comes_back_as_its_result() {
    let script = Script::new(|n, body| match n {
        0 => completion(json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [
                {"id": "a", "type": "function",
                 "function": {"name": "no-such__tool", "arguments": "{}"}},
                {"id": "b", "type": "function",
                 "function": {"name": "text-tools__echo", "arguments": "{not json"}},
                {"id": "c", "type": "function",
                 "function": {"name": "text-tools__echo", "arguments": "{\"text\":\"ok\"}"}}
            ]
        })),
        _ => {
            assert_eq!(last_role(body), "tool");
            text("handled")
        }
    });
    let model = script.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path(), &model, &sqlite_state(dir.path()), "").await;
    let report = runner.run(task("go", None), &no_events()).await.unwrap();
    assert_eq!(report.answer.as_deref(), Some("handled"));
    let requests = script.requests();
    let tool_messages: Vec<&Value> = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_messages.len(), 3);
    let content = |i: usize| tool_messages[i]["content"].as_str().unwrap().to_string();
    assert!(
        content(0).contains("unknown-tool") && content(0).contains("no-such__tool"),
        "{}",
        content(0)
    );
    assert!(content(1).contains("not valid JSON"), "{}", content(1));
    assert_eq!(content(2), r#"{"text":"ok"}"#);
}

/// A database of its own on the test server, dropped afterwards; `None` without the variable.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(label: &str) -> Option<PgDatabase> {
        let Ok(admin) = std::env::var(POSTGRES_URL_VAR) else {
            println!("skipped: set {POSTGRES_URL_VAR} to run {label}");
            return None;
        };
        let name = format!(
            "warden_{label}_{}_{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        run_admin(&admin, &format!("CREATE DATABASE \"{name}\""));
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b.to_string(), format!("?{q}")),
            None => (admin.clone(), String::new()),
        };
        let root = &base[..base.rfind('/').expect("a database URL")];
        let url = format!("{root}/{name}{query}");
        Some(PgDatabase { admin, name, url })
    }

    /// Refuses new connections and ends the open ones: the database is lost to the host.
    fn cut_off(&self) {
        run_admin(
            &self.admin,
            &format!(
                "ALTER DATABASE \"{0}\" WITH ALLOW_CONNECTIONS false;
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'",
                self.name
            ),
        );
    }

    fn restore(&self) {
        run_admin(
            &self.admin,
            &format!(
                "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
                self.name
            ),
        );
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        run_admin(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_interrupts_the_step_and_the_task_resumes_later() {
    let Some(db) = PgDatabase::create("lost") else {
        return;
    };
    let db = Arc::new(db);
    let cut = db.clone();
    let script = Script::new(move |n, _| match n {
        0 => echo_call("e1", "before the loss"),
        // The tool's result is journaled; the database goes away while the model answers, so
        // this answer cannot be journaled.
        1 => {
            cut.cut_off();
            text("lost answer")
        }
        _ => text("answered after resume"),
    });
    let model = script.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let var = format!("WARDEN_LOST_DB_URL_{}", std::process::id());
    // SAFETY: set before the host reads it, and only this test reads this variable.
    unsafe { std::env::set_var(&var, &db.url) };
    let state = format!("[state]\nurl_env = \"{var}\"\nsession_lease_ms = 1000");
    let runner = runner(dir.path(), &model, &state, "").await;
    let err = runner
        .run(task("go", None), &no_events())
        .await
        .expect_err("the step must fail while the database is gone");
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
    assert!(err.message().contains("warden agent resume"), "{err}");
    db.restore();
    // The session is the only one in the database; find it through the store.
    let store = warden::state::StateStore::open(&warden::state::StateUrl::Postgres(db.url.clone()))
        .await
        .unwrap()
        .agent_state();
    let sessions = store
        .list_sessions("local", &Default::default())
        .await
        .unwrap();
    let session = sessions.sessions[0].id;
    let resumed = tokio::time::timeout(
        Duration::from_secs(60),
        runner.resume("local", session, true, &no_events()),
    )
    .await
    .expect("resume within a minute")
    .expect("the task finishes");
    assert_eq!(resumed.answer.as_deref(), Some("answered after resume"));
    let results = resumed
        .steps
        .iter()
        .filter(|e| e.kind == StepKind::ToolResult)
        .count();
    assert_eq!(results, 1, "the completed tool call ran again");
    // Asked: the tool call, the lost answer, and once more after the resume; never the first
    // response again.
    assert_eq!(script.requests().len(), 3);
}

fn probe_call(id: &str, tool: &str, input: Value) -> ResponseTemplate {
    completion(json!({
        "role": "assistant",
        "content": null,
        "tool_calls": [{
            "id": id,
            "type": "function",
            "function": {"name": format!("memory-probe__{tool}"), "arguments": input.to_string()}
        }]
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_memory_written_in_one_task_is_read_in_the_next_and_not_in_another_session() {
    // Each task: the model calls one memory tool, then answers with the tool's result.
    let script = Script::new(|_, body| {
        let messages = body["messages"].as_array().unwrap();
        let last = messages.last().unwrap();
        if last["role"] == "tool" {
            return text(last["content"].as_str().unwrap());
        }
        match last["content"].as_str().unwrap() {
            "remember" => probe_call(
                "w",
                "put",
                json!({"ns": "session", "key": "plan", "value": "gold"}),
            ),
            _ => probe_call("r", "get", json!({"ns": "session", "key": "plan"})),
        }
    });
    let model = script.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = r#"
[plugins.memory-probe]
path = "{plugins}/memory-probe.wasm"
max = ["memory:session:rw"]

[agents.helper]
model = "fast"
tools = ["memory-probe/*"]
"#;
    let runner = runner_with(dir.path(), &model, &sqlite_state(dir.path()), "", agent).await;
    let first = runner
        .run(task("remember", None), &no_events())
        .await
        .unwrap();
    assert!(
        first
            .answer
            .as_deref()
            .unwrap_or_default()
            .contains("\"result\":1"),
        "the put reports version 1: {:?}",
        first.answer
    );
    let second = runner
        .run(task("recall", Some(first.session)), &no_events())
        .await
        .unwrap();
    let recalled: Value = serde_json::from_str(second.answer.as_deref().unwrap()).unwrap();
    assert_eq!(recalled["result"]["value"], "gold", "{recalled}");
    assert_eq!(recalled["result"]["written_by_agent"], "helper");
    assert_eq!(recalled["result"]["written_by_tool"], "memory-probe/put");
    // Another session of the same agent has its own, empty, session memory.
    let other = runner
        .run(task("recall", None), &no_events())
        .await
        .unwrap();
    let seen: Value = serde_json::from_str(other.answer.as_deref().unwrap()).unwrap();
    assert_eq!(seen["result"], Value::Null, "{seen}");
    assert_ne!(other.session, first.session);
}
