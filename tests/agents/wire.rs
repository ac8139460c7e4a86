//! The fake model provider against the host's real model backends: the `model-probe` plugin
//! sends requests through the router to it, on both protocols, so the agent tests rest on a
//! fake that the host demonstrably reads (tool calls, their arguments as sent, usage, 500s).

use serde_json::{Value, json};

use crate::common::{Run, plugin_path, run_command, warden_command};
use crate::model::{
    Conversation, FakeModel, INPUT_TOKENS, OUTPUT_TOKENS, Reply, Wire, call, raw_call,
};

/// A folder whose agent `support` may send model calls to alias `fast`, the fake on `wire`.
struct Probe {
    dir: tempfile::TempDir,
}

impl Probe {
    fn new(model: &FakeModel, wire: Wire) -> Probe {
        let dir = tempfile::tempdir().expect("a temp dir");
        let backend = match wire {
            Wire::OpenAi => "openai",
            Wire::Anthropic => "anthropic",
        };
        let config = format!(
            r#"
[state]
url = "sqlite://{state}"
[plugins.model-probe]
path = "{probe}"
max = ["model:*"]
[models.fast]
backend = "{backend}"
base_url = "{base_url}"
api_key_env = "WARDEN_TEST_MODEL_KEY"
model = "fake-model"
[agents.support]
tools = ["model-probe/*"]
grants = ["model:fast"]
"#,
            state = dir.path().join("state.db").display(),
            probe = plugin_path("model-probe").display(),
            base_url = model.base_url(),
        );
        std::fs::write(dir.path().join("warden.toml"), config).unwrap();
        Probe { dir }
    }

    /// What `model-probe` saw for `input` (a model request).
    fn probe(&self, input: Value) -> Value {
        let input = input.to_string();
        let mut cmd = warden_command(&[
            "call",
            "--config",
            "warden.toml",
            "--agent",
            "support",
            "model-probe",
            "probe",
            "--input",
            &input,
        ]);
        cmd.current_dir(self.dir.path())
            .env_remove("WARDEN_CONFIG")
            .env("WARDEN_TEST_MODEL_KEY", "test-key");
        let run: Run = run_command(cmd, None);
        run.assert_code(0);
        run.json()
    }
}

const TOOLS: &str = r#"[{"name": "counter__count", "description": "Counts.",
    "parameters": {"type": "object", "properties": {"label": {"type": "string"}}}}]"#;

fn script(c: &Conversation) -> Reply {
    match c.turn() {
        0 if c.wire == Wire::OpenAi => Reply::calls(vec![
            call("call_1", &c.tool("counter", "count"), json!({"label": "a"})),
            raw_call("call_2", &c.tool("counter", "count"), "{\"label\": "),
        ]),
        0 => Reply::calls(vec![call(
            "toolu_1",
            &c.tool("counter", "count"),
            json!({"label": "a"}),
        )]),
        1 => Reply::answer(&format!(
            "{} result(s); the first says {}",
            c.results().len(),
            c.results()[0].content
        )),
        _ => Reply::unexpected("a third turn", c),
    }
}

fn round_trip(wire: Wire) {
    let model = FakeModel::start(script);
    let probe = Probe::new(&model, wire);
    let tools: Value = serde_json::from_str(TOOLS).unwrap();
    let first = probe.probe(json!({"model": "fast", "tools": tools, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Count a."},
    ]}));
    let response = &first["response"];
    assert!(
        response.is_object(),
        "the host read no response: {first:#}\n{}",
        model.describe()
    );
    assert_eq!(response["finish_reason"], "tool-calls", "{first:#}");
    assert_eq!(response["usage"]["input_tokens"], INPUT_TOKENS);
    assert_eq!(response["usage"]["output_tokens"], OUTPUT_TOKENS);
    let calls = response["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["name"], "counter__count");
    assert_eq!(calls[0]["arguments"], r#"{"label":"a"}"#, "{first:#}");
    let id = calls[0]["id"].as_str().unwrap();
    if wire == Wire::OpenAi {
        assert_eq!(
            calls[1]["arguments"], "{\"label\": ",
            "arguments that are not JSON reach the host as sent: {first:#}"
        );
    }
    let seen = &model.answered()[0];
    assert_eq!(seen.wire, wire);
    assert_eq!(seen.system(), "Be brief.");
    assert_eq!(seen.task(), "Count a.");
    assert_eq!(seen.tools, ["counter__count"]);

    let second = probe.probe(json!({"model": "fast", "tools": tools, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Count a."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": id, "name": "counter__count", "arguments": {"label": "a"}}
        ]},
        {"role": "tool", "tool_call_id": id, "content": "{\"label\":\"a\"}"},
    ]}));
    assert_eq!(
        second["response"]["message"]["content"],
        "1 result(s); the first says {\"label\":\"a\"}",
        "{second:#}\n{}",
        model.describe()
    );
    assert_eq!(second["response"]["finish_reason"], "stop");
    let seen = &model.answered()[1];
    assert_eq!(seen.turn(), 1, "{}", seen.describe());
    assert_eq!(seen.result_of(id).unwrap().content, "{\"label\":\"a\"}");
    model.assert_script_ok();

    // A failing backend is a backend error to the caller, after the router's retries.
    model.fail();
    let failed = probe
        .probe(json!({"model": "fast", "messages": [{"role": "user", "content": "Count a."}]}));
    assert!(failed["response"].is_null(), "{failed:#}");
    assert_eq!(failed["error"]["kind"], "backend", "{failed:#}");
    assert!(model.received().iter().any(|r| r.status == 500));
}

#[test]
fn the_hosts_openai_backend_reads_the_fake_models_turns() {
    round_trip(Wire::OpenAi);
}

#[test]
fn the_hosts_anthropic_backend_reads_the_fake_models_turns() {
    round_trip(Wire::Anthropic);
}
