//! The fake model provider: a real HTTP server on 127.0.0.1 (wiremock's) that speaks OpenAI chat
//! completions (`POST /v1/chat/completions`) and the Anthropic Messages API (`POST /v1/messages`).
//!
//! A test scripts it with a closure from the conversation so far (the request, read into one
//! provider-neutral shape) to a [`Reply`]. The reply is decided by the conversation's state, not
//! by how many requests came before, so the script stays right when the host retries a request,
//! or resumes a task in another process. Every request is recorded (body, conversation, status),
//! and the server can be switched to answer 500, at once or after some answers, and back.
//!
//! Replies are whole JSON bodies even when the host asks for a stream: the host reads a server
//! that ignores `stream` (many OpenAI-compatible servers do), and a whole body can carry tool
//! call arguments that are not JSON, which a test of that case needs.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The input tokens every answer reports, so a test can find them in the journal and progress.
pub const INPUT_TOKENS: u64 = 321;
/// The output tokens every answer reports.
pub const OUTPUT_TOKENS: u64 = 45;
/// The model name the fake server reports serving.
pub const SERVED_MODEL: &str = "fake-model-1";

/// Which provider's wire protocol a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST …/chat/completions`.
    OpenAi,
    /// `POST …/messages`.
    Anthropic,
}

/// A tool call as the conversation holds it (asked for by an assistant turn).
#[derive(Debug, Clone, PartialEq)]
pub struct SeenCall {
    /// The model's id for the call.
    pub id: String,
    /// The tool's name, as offered.
    pub name: String,
    /// The arguments as text (JSON, for a well-behaved model).
    pub arguments: String,
}

/// One message of the conversation, in one shape for both providers: `system`, `user`,
/// `assistant` (text and tool calls), or `tool` (one tool call's result; Anthropic's
/// `tool_result` blocks become these).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text (for a `tool` message, the result or the error the host sent).
    pub content: String,
    /// The calls an assistant message asked for.
    pub tool_calls: Vec<SeenCall>,
    /// For a `tool` message, the model's id of the call it answers.
    pub tool_call_id: Option<String>,
}

/// A request, read: the conversation so far and the tools offered.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// The protocol it came in.
    pub wire: Wire,
    /// The messages, oldest first; a system prompt is the first message, role `system`.
    pub messages: Vec<Message>,
    /// The names of the tools offered.
    pub tools: Vec<String>,
    /// The request body as sent.
    pub body: Value,
}

impl Conversation {
    /// Index of the last `user` message: where the current task begins.
    fn task_start(&self) -> Option<usize> {
        self.messages.iter().rposition(|m| m.role == "user")
    }

    /// The current task's input: the last user message's text (empty if there is none).
    pub fn task(&self) -> &str {
        self.task_start()
            .map(|i| self.messages[i].content.as_str())
            .unwrap_or("")
    }

    /// The messages of the current task, after its input.
    pub fn this_task(&self) -> &[Message] {
        match self.task_start() {
            Some(i) => &self.messages[i + 1..],
            None => &self.messages,
        }
    }

    /// How many times the model has answered in the current task: 0 for the task's first
    /// request, 1 after the first answer's tool results, and so on.
    pub fn turn(&self) -> usize {
        self.this_task()
            .iter()
            .filter(|m| m.role == "assistant")
            .count()
    }

    /// The tool results of the current task, oldest first.
    pub fn results(&self) -> Vec<&Message> {
        self.this_task()
            .iter()
            .filter(|m| m.role == "tool")
            .collect()
    }

    /// The result of the call the model knew as `id`, anywhere in the conversation.
    pub fn result_of(&self, id: &str) -> Option<&Message> {
        self.messages
            .iter()
            .find(|m| m.role == "tool" && m.tool_call_id.as_deref() == Some(id))
    }

    /// The system prompt (every system message's text, joined).
    pub fn system(&self) -> String {
        self.messages
            .iter()
            .filter(|m| m.role == "system")
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether any message of role `role` contains `needle`.
    pub fn has(&self, role: &str, needle: &str) -> bool {
        self.messages
            .iter()
            .any(|m| m.role == role && m.content.contains(needle))
    }

    /// The offered name of `plugin`'s `tool`: `PLUGIN__TOOL` where that is offered, else the one
    /// offered name that starts with the plugin's name and ends with the tool's (a sanitised name
    /// with a hash). Panics, listing what was offered, when there is none.
    pub fn tool(&self, plugin: &str, tool: &str) -> String {
        let plain = format!("{plugin}__{tool}");
        if self.tools.contains(&plain) {
            return plain;
        }
        let mut like = self
            .tools
            .iter()
            .filter(|t| t.starts_with(&plugin[..plugin.len().min(8)]) && t.contains(tool));
        match (like.next(), like.next()) {
            (Some(one), None) => one.clone(),
            _ => panic!(
                "the request offers no tool for {plugin}/{tool} (expected `{plain}`); it offers {:?}",
                self.tools
            ),
        }
    }

    /// A short account of the conversation, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = format!("{:?} request, tools {:?}\n", self.wire, self.tools);
        for m in &self.messages {
            let _ = write!(out, "  [{}] {}", m.role, preview(&m.content));
            if let Some(id) = &m.tool_call_id {
                let _ = write!(out, " (result of {id})");
            }
            for c in &m.tool_calls {
                let _ = write!(out, " call {} {}({})", c.id, c.name, preview(&c.arguments));
            }
            out.push('\n');
        }
        out
    }
}

fn preview(text: &str) -> String {
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

/// A tool call the fake model asks for.
#[derive(Debug, Clone)]
pub struct Call {
    /// The model's id for it.
    pub id: String,
    /// The tool's offered name.
    pub name: String,
    /// The arguments, as the text the model sends (need not be JSON).
    pub arguments: String,
}

/// A call of `name` with `arguments` (JSON).
pub fn call(id: &str, name: &str, arguments: Value) -> Call {
    Call {
        id: id.into(),
        name: name.into(),
        arguments: arguments.to_string(),
    }
}

/// A call of `name` whose arguments are `text`, as sent (for arguments that are not JSON).
pub fn raw_call(id: &str, name: &str, text: &str) -> Call {
    Call {
        id: id.into(),
        name: name.into(),
        arguments: text.into(),
    }
}

/// What the fake model answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A turn: text (may be empty) and tool calls (none means a final answer).
    Turn {
        /// The text.
        text: String,
        /// The tool calls asked for.
        calls: Vec<Call>,
    },
    /// The script did not expect this conversation: the server answers 400 with the message,
    /// and the test sees it in [`FakeModel::script_errors`].
    Unexpected(String),
}

impl Reply {
    /// A final answer.
    pub fn answer(text: &str) -> Reply {
        Reply::Turn {
            text: text.into(),
            calls: Vec::new(),
        }
    }

    /// Tool calls, without text.
    pub fn calls(calls: Vec<Call>) -> Reply {
        Reply::Turn {
            text: String::new(),
            calls,
        }
    }

    /// The script's way to say "this conversation is not one I expected".
    pub fn unexpected(why: impl Into<String>, conversation: &Conversation) -> Reply {
        Reply::Unexpected(format!("{}\n{}", why.into(), conversation.describe()))
    }
}

/// The test's script.
pub type Script = Arc<dyn Fn(&Conversation) -> Reply + Send + Sync>;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The conversation it carried (`None` when the body could not be read as one).
    pub conversation: Option<Conversation>,
    /// The raw body, as text.
    pub body: String,
    /// The status the server answered with.
    pub status: u16,
}

/// Whether the server answers or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The script answers.
    Answer,
    /// Every request gets a 500.
    Fail,
    /// The script answers this many more requests, then every request gets a 500.
    FailAfter(usize),
}

struct Shared {
    script: Script,
    mode: Mode,
    received: Vec<Received>,
    script_errors: Vec<String>,
}

/// The fake provider. Dropping it stops the server.
pub struct FakeModel {
    server: MockServer,
    shared: Arc<Mutex<Shared>>,
    // The runtime the server was started on; wiremock serves from a thread of its own.
    _runtime: tokio::runtime::Runtime,
}

impl FakeModel {
    /// Starts a server answering with `script`.
    pub fn start(script: impl Fn(&Conversation) -> Reply + Send + Sync + 'static) -> FakeModel {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fake model server");
        let shared = Arc::new(Mutex::new(Shared {
            script: Arc::new(script),
            mode: Mode::Answer,
            received: Vec::new(),
            script_errors: Vec::new(),
        }));
        let server = runtime.block_on(async {
            let server = MockServer::start().await;
            let state = shared.clone();
            Mock::given(wiremock::matchers::any())
                .respond_with(move |request: &Request| respond(&state, request))
                .mount(&server)
                .await;
            server
        });
        FakeModel {
            server,
            shared,
            _runtime: runtime,
        }
    }

    /// The base URL for `[models.ALIAS] base_url`: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, every request gets a 500.
    pub fn fail(&self) {
        self.lock().mode = Mode::Fail;
    }

    /// The script answers `n` more requests; every one after them gets a 500.
    pub fn fail_after(&self, n: usize) {
        self.lock().mode = Mode::FailAfter(n);
    }

    /// From now on, the script answers again.
    pub fn recover(&self) {
        self.lock().mode = Mode::Answer;
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The conversations the script answered (status 200), oldest first.
    pub fn answered(&self) -> Vec<Conversation> {
        self.lock()
            .received
            .iter()
            .filter(|r| r.status == 200)
            .filter_map(|r| r.conversation.clone())
            .collect()
    }

    /// The answered conversations whose current task is `task`.
    pub fn answered_for(&self, task: &str) -> Vec<Conversation> {
        self.answered()
            .into_iter()
            .filter(|c| c.task() == task)
            .collect()
    }

    /// What the script or the server could not handle: unexpected conversations, unreadable
    /// requests, unknown paths. Empty in a good run.
    pub fn script_errors(&self) -> Vec<String> {
        self.lock().script_errors.clone()
    }

    /// Every request and script error, for failure messages.
    pub fn describe(&self) -> String {
        let shared = self.lock();
        let mut out = format!(
            "the fake model received {} request(s):\n",
            shared.received.len()
        );
        for (i, r) in shared.received.iter().enumerate() {
            let _ = write!(out, "#{i} answered {}: ", r.status);
            match &r.conversation {
                Some(c) => out.push_str(&c.describe()),
                None => {
                    let _ = writeln!(out, "unreadable body {}", preview(&r.body));
                }
            }
        }
        for e in &shared.script_errors {
            let _ = writeln!(out, "script error: {e}");
        }
        out
    }

    /// Asserts that the script met no conversation it did not expect.
    pub fn assert_script_ok(&self) {
        let errors = self.script_errors();
        assert!(
            errors.is_empty(),
            "the fake model met requests its script did not expect:\n{}",
            self.describe()
        );
    }
}

/// Answers one request: records it, then fails, or asks the script.
fn respond(state: &Mutex<Shared>, request: &Request) -> ResponseTemplate {
    let body_text = String::from_utf8_lossy(&request.body).into_owned();
    let path = request.url.path().to_string();
    let wire = if path.ends_with("/chat/completions") {
        Some(Wire::OpenAi)
    } else if path.ends_with("/messages") {
        Some(Wire::Anthropic)
    } else {
        None
    };
    let parsed = serde_json::from_slice::<Value>(&request.body)
        .map_err(|e| format!("the body is not JSON: {e}"))
        .and_then(|body| match wire {
            Some(Wire::OpenAi) => read_openai(body),
            Some(Wire::Anthropic) => read_anthropic(body),
            None => Err(format!(
                "{} {path}: the fake model serves POST /v1/chat/completions and POST /v1/messages",
                request.method
            )),
        });
    let mut shared = state.lock().unwrap_or_else(|e| e.into_inner());
    let conversation = match parsed {
        Ok(c) => c,
        Err(why) => {
            shared.script_errors.push(why.clone());
            shared.received.push(Received {
                conversation: None,
                body: body_text,
                status: 400,
            });
            return error_response(wire.unwrap_or(Wire::OpenAi), 400, &why);
        }
    };
    let failing = match shared.mode {
        Mode::Answer => false,
        Mode::Fail => true,
        Mode::FailAfter(0) => {
            shared.mode = Mode::Fail;
            true
        }
        Mode::FailAfter(n) => {
            shared.mode = Mode::FailAfter(n - 1);
            false
        }
    };
    if failing {
        shared.received.push(Received {
            conversation: Some(conversation),
            body: body_text,
            status: 500,
        });
        return error_response(
            wire.unwrap_or(Wire::OpenAi),
            500,
            "the fake backend is failing",
        );
    }
    let script = shared.script.clone();
    // The script runs outside the lock (it may be slow, or panic).
    drop(shared);
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| script(&conversation)))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Reply::Unexpected(format!(
                "the script panicked: {message}\n{}",
                conversation.describe()
            ))
        });
    let (status, response) = match reply {
        Reply::Turn { text, calls } => match encode(conversation.wire, &text, &calls) {
            Ok(body) => (200, ResponseTemplate::new(200).set_body_json(body)),
            Err(why) => {
                state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .script_errors
                    .push(why.clone());
                (400, error_response(conversation.wire, 400, &why))
            }
        },
        Reply::Unexpected(why) => {
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .script_errors
                .push(why.clone());
            (400, error_response(conversation.wire, 400, &why))
        }
    };
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .received
        .push(Received {
            conversation: Some(conversation),
            body: body_text,
            status,
        });
    response
}

fn error_response(wire: Wire, status: u16, message: &str) -> ResponseTemplate {
    let body = match wire {
        Wire::OpenAi => {
            json!({"error": {"message": message, "type": "server_error", "code": null}})
        }
        Wire::Anthropic => {
            json!({"type": "error", "error": {"type": "api_error", "message": message}})
        }
    };
    ResponseTemplate::new(status).set_body_json(body)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        // Content as a list of parts or blocks: their texts, joined.
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("text").and_then(Value::as_str) {
                Some(t) => t.to_string(),
                None => text_of(p.get("content").unwrap_or(&Value::Null)),
            })
            .collect::<Vec<_>>()
            .join(""),
        other => other.to_string(),
    }
}

fn read_openai(body: Value) -> Result<Conversation, String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("an OpenAI request without a `messages` list")?;
    let mut out = Vec::new();
    for m in messages {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a message without a role: {m}"))?;
        let mut tool_calls = Vec::new();
        for c in m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let function = c.get("function").unwrap_or(&Value::Null);
            tool_calls.push(SeenCall {
                id: c.get("id").and_then(Value::as_str).unwrap_or("").into(),
                name: function
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                arguments: match function.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                },
            });
        }
        out.push(Message {
            role: role.into(),
            content: text_of(m.get("content").unwrap_or(&Value::Null)),
            tool_calls,
            tool_call_id: m
                .get("tool_call_id")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect();
    Ok(Conversation {
        wire: Wire::OpenAi,
        messages: out,
        tools,
        body,
    })
}

fn read_anthropic(body: Value) -> Result<Conversation, String> {
    let mut out = Vec::new();
    let system = text_of(body.get("system").unwrap_or(&Value::Null));
    if !system.is_empty() {
        out.push(Message {
            role: "system".into(),
            content: system,
            tool_calls: Vec::new(),
            tool_call_id: None,
        });
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("an Anthropic request without a `messages` list")?;
    for m in messages {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a message without a role: {m}"))?;
        let blocks = match m.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(blocks)) => blocks.clone(),
            _ => return Err(format!("a message without content: {m}")),
        };
        // A turn's text and tool calls make one message; each tool_result its own `tool` one.
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut results = Vec::new();
        for b in &blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
                Some("tool_use") => calls.push(SeenCall {
                    id: b.get("id").and_then(Value::as_str).unwrap_or("").into(),
                    name: b.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    arguments: b.get("input").cloned().unwrap_or(Value::Null).to_string(),
                }),
                Some("tool_result") => results.push(Message {
                    role: "tool".into(),
                    content: text_of(b.get("content").unwrap_or(&Value::Null)),
                    tool_calls: Vec::new(),
                    tool_call_id: b
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }),
                other => return Err(format!("a content block of type {other:?}: {b}")),
            }
        }
        out.extend(results);
        if !text.is_empty() || !calls.is_empty() {
            out.push(Message {
                role: role.into(),
                content: text,
                tool_calls: calls,
                tool_call_id: None,
            });
        }
    }
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    Ok(Conversation {
        wire: Wire::Anthropic,
        messages: out,
        tools,
        body,
    })
}

fn encode(wire: Wire, text: &str, calls: &[Call]) -> Result<Value, String> {
    let usage_openai = json!({
        "prompt_tokens": INPUT_TOKENS,
        "completion_tokens": OUTPUT_TOKENS,
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    });
    match wire {
        Wire::OpenAi => {
            let mut message = json!({
                "role": "assistant",
                "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
            });
            if !calls.is_empty() {
                message["tool_calls"] = calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        })
                    })
                    .collect();
            }
            Ok(json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": SERVED_MODEL,
                "choices": [{
                    "index": 0,
                    "message": message,
                    "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" },
                }],
                "usage": usage_openai,
            }))
        }
        Wire::Anthropic => {
            let mut content = Vec::new();
            if !text.is_empty() {
                content.push(json!({"type": "text", "text": text}));
            }
            for c in calls {
                let input: Value = serde_json::from_str(&c.arguments).map_err(|e| {
                    format!(
                        "the script asked for tool call {} with arguments that are not JSON ({e}), \
                         which the Anthropic wire cannot carry",
                        c.id
                    )
                })?;
                content
                    .push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
            }
            Ok(json!({
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": SERVED_MODEL,
                "content": content,
                "stop_reason": if calls.is_empty() { "end_turn" } else { "tool_use" },
                "stop_sequence": null,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
            }))
        }
    }
}

/// The fake server's own tests: its wire shapes, read back the way the host sends them.
#[cfg(test)]
mod tests {
    use super::*;

    fn post(model: &FakeModel, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", model.base_url());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {url}: {e}"));
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("an answer body");
            (
                status,
                serde_json::from_slice(&bytes).expect("a JSON answer"),
            )
        })
    }

    fn script(c: &Conversation) -> Reply {
        match c.turn() {
            0 => Reply::calls(vec![
                call("call_a", &c.tool("counter", "count"), json!({"label": "a"})),
                raw_call("call_b", &c.tool("counter", "count"), "{not json"),
            ]),
            _ => Reply::answer(&format!("got {} results", c.results().len())),
        }
    }

    #[test]
    fn openai_turns_follow_the_conversation_and_are_recorded() {
        let model = FakeModel::start(script);
        let tools =
            json!([{"type": "function", "function": {"name": "counter__count", "parameters": {}}}]);
        let (status, first) = post(
            &model,
            "/chat/completions",
            json!({"model": "m", "tools": tools, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "count"},
            ]}),
        );
        assert_eq!(status, 200, "{first}");
        let message = &first["choices"][0]["message"];
        assert_eq!(first["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            message["tool_calls"][0]["function"]["name"],
            "counter__count"
        );
        assert_eq!(
            message["tool_calls"][1]["function"]["arguments"],
            "{not json"
        );
        assert_eq!(first["usage"]["prompt_tokens"], INPUT_TOKENS);

        let (status, second) = post(
            &model,
            "/chat/completions",
            json!({"model": "m", "tools": tools, "messages": [
                {"role": "user", "content": "count"},
                {"role": "assistant", "content": null, "tool_calls": message["tool_calls"]},
                {"role": "tool", "tool_call_id": "call_a", "content": "{\"label\":\"a\"}"},
                {"role": "tool", "tool_call_id": "call_b", "content": "error: not JSON"},
            ]}),
        );
        assert_eq!(status, 200, "{second}");
        assert_eq!(second["choices"][0]["message"]["content"], "got 2 results");
        assert_eq!(second["choices"][0]["finish_reason"], "stop");

        let answered = model.answered();
        assert_eq!(answered.len(), 2);
        assert_eq!(answered[0].system(), "be brief");
        assert_eq!(answered[1].turn(), 1);
        assert_eq!(
            answered[1].result_of("call_b").unwrap().content,
            "error: not JSON"
        );
        assert_eq!(answered[1].messages[1].tool_calls[1].arguments, "{not json");
        model.assert_script_ok();
    }

    #[test]
    fn anthropic_blocks_read_into_the_same_conversation() {
        let model = FakeModel::start(|c: &Conversation| match c.turn() {
            0 => Reply::calls(vec![call(
                "toolu_1",
                &c.tool("counter", "count"),
                json!({"label": "x"}),
            )]),
            _ => Reply::answer(&format!("result: {}", c.results()[0].content)),
        });
        let tools = json!([{"name": "counter__count", "input_schema": {"type": "object"}}]);
        let (status, first) = post(
            &model,
            "/messages",
            json!({"model": "m", "max_tokens": 10, "system": "be brief", "tools": tools,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "count"}]}]}),
        );
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["stop_reason"], "tool_use");
        assert_eq!(first["content"][0]["type"], "tool_use");
        assert_eq!(first["content"][0]["input"], json!({"label": "x"}));
        assert_eq!(first["usage"]["input_tokens"], INPUT_TOKENS);
        let (status, second) = post(
            &model,
            "/messages",
            json!({"model": "m", "max_tokens": 10, "tools": tools, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "count"}]},
                {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"}]},
            ]}),
        );
        assert_eq!(status, 200, "{second}");
        assert_eq!(second["content"][0]["text"], "result: done");
        assert_eq!(second["stop_reason"], "end_turn");
        let answered = model.answered();
        assert_eq!(answered[1].task(), "count");
        assert_eq!(answered[1].turn(), 1);
        assert_eq!(answered[0].system(), "be brief");
        model.assert_script_ok();
    }

    #[test]
    fn the_server_fails_when_told_and_recovers() {
        let model = FakeModel::start(|_: &Conversation| Reply::answer("ok"));
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        model.fail_after(1);
        assert_eq!(post(&model, "/chat/completions", body.clone()).0, 200);
        let (status, error) = post(&model, "/chat/completions", body.clone());
        assert_eq!(status, 500);
        assert!(error["error"]["message"].is_string(), "{error}");
        assert_eq!(post(&model, "/chat/completions", body.clone()).0, 500);
        model.recover();
        assert_eq!(post(&model, "/chat/completions", body.clone()).0, 200);
        let statuses: Vec<u16> = model.received().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 500, 500, 200]);
        assert_eq!(model.answered().len(), 2);
    }

    #[test]
    fn an_unexpected_conversation_is_reported_not_answered() {
        let model = FakeModel::start(|c: &Conversation| Reply::unexpected("no such turn", c));
        let (status, _) = post(
            &model,
            "/chat/completions",
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(status, 400);
        let (status, _) = post(&model, "/embeddings", json!({}));
        assert_eq!(status, 400);
        let errors = model.script_errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("no such turn"), "{errors:?}");
        assert!(errors[1].contains("/embeddings"), "{errors:?}");
    }
}
