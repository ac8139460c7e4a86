//! Keys never enter a plugin: the host adds them to the outbound request, and nothing the
//! plugin sees (its environment, its arguments, any field of a response or an error) carries
//! them, even from a backend that echoes them back.

use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::mock;
use crate::site::{ANTHROPIC_KEY, HEADER_SECRET, OPENAI_KEY, Site};

/// A backend that writes the credentials it received into its answer, and its error.
struct EchoCredentials;

impl Respond for EchoCredentials {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let get = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let seen = format!(
            "authorization={} x-api-key={} org={}",
            get("authorization"),
            get("x-api-key"),
            get("openai-organization")
        );
        if request.url.path().ends_with("/messages") {
            mock::anthropic_message(json!([{"type": "text", "text": seen}]), "end_turn")
        } else {
            ResponseTemplate::new(200).set_body_json(json!({
                "model": format!("model-{}", get("authorization")),
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": seen,
                    "tool_calls": [{"id": get("authorization"), "type": "function",
                        "function": {"name": "echo", "arguments": json!({"key": get("authorization")}).to_string()}}]
                }}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1}
            }))
        }
    }
}

fn config(openai: &str, anthropic: &str) -> String {
    format!(
        r#"
        [plugins.model-probe]
        path = "{{plugins}}/model-probe.wasm"
        max = ["model:*"]
        [models.fast]
        backend = "openai"
        base_url = "{openai}"
        api_key_env = "TEST_OPENAI_KEY"
        model = "gpt-test"
        headers = {{ OpenAI-Organization = "env:TEST_HEADER_SECRET", X-Team = "support" }}
        [models.smart]
        backend = "anthropic"
        base_url = "{anthropic}"
        api_key_env = "TEST_ANTHROPIC_KEY"
        model = "claude-test"
        [agents.support]
        tools = ["model-probe/*"]
        grants = ["model:fast", "model:smart"]
        "#
    )
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [OPENAI_KEY, ANTHROPIC_KEY, HEADER_SECRET] {
        assert!(!text.contains(secret), "{what} shows a secret: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_sends_the_keys_and_the_plugin_sees_none() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/chat/completions"))
        .and(header(
            "authorization",
            format!("Bearer {OPENAI_KEY}").as_str(),
        ))
        .and(header("openai-organization", HEADER_SECRET))
        .and(header("x-team", "support"))
        .respond_with(EchoCredentials)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/anthropic/messages"))
        .and(header("x-api-key", ANTHROPIC_KEY))
        .respond_with(EchoCredentials)
        .expect(1)
        .mount(&server)
        .await;
    let site = Site::new(&config(
        &format!("{}/openai", server.uri()),
        &format!("{}/anthropic", server.uri()),
    ));
    for alias in ["fast", "smart"] {
        let run = site.call(
            "support",
            "model-probe",
            "probe",
            &json!({"model": alias}).to_string(),
        );
        run.assert_code(0);
        let report = run.json();
        // The backend did answer, with what it received.
        let content = report["response"]["message"]["content"].as_str().unwrap();
        assert!(content.contains("[redacted]"), "{report}");
        assert!(report["env"].as_array().unwrap().is_empty(), "{report}");
        assert!(report["args"].as_array().unwrap().len() <= 1, "{report}");
        assert_no_secret("the plugin's report", &run.stdout);
        assert_no_secret("warden's log", &run.stderr);
    }
    let audit = site.warden(&["audit", "tail", "--config", "warden.toml", "--json"]);
    assert_no_secret("the audit log", &audit.stdout);
    // `expect(1)` on each mock: both requests arrived, each with its key.
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_that_quotes_the_key_reaches_the_plugin_redacted() {
    let server = MockServer::start().await;
    Mock::given(path("/openai/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": format!("Incorrect API key provided: {OPENAI_KEY}."), "type": "invalid_request_error"}
        })))
        .mount(&server)
        .await;
    let site = Site::new(&config(
        &format!("{}/openai", server.uri()),
        &format!("{}/anthropic", server.uri()),
    ));
    let run = site.call(
        "support",
        "model-probe",
        "probe",
        &json!({"model": "fast"}).to_string(),
    );
    run.assert_code(0);
    let report = run.json();
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("HTTP 401") && message.contains("Incorrect API key provided: [redacted]"),
        "{message}"
    );
    assert_no_secret("the plugin's report", &run.stdout);
    let audit = site.warden(&["audit", "tail", "--config", "warden.toml", "--json"]);
    assert_no_secret("the audit log", &audit.stdout);
}

#[test]
fn a_key_that_is_not_set_is_a_config_problem() {
    let site = Site::new(
        r#"
        [models.fast]
        backend = "openai"
        base_url = "http://127.0.0.1:9/v1"
        api_key_env = "TEST_NO_SUCH_KEY_VARIABLE"
        model = "gpt-test"
        headers = { Authorization = "env:TEST_NO_SUCH_HEADER_VARIABLE" }
        "#,
    );
    let run = site.warden(&["config", "check", "--config", "warden.toml"]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("models.fast.api_key_env")
            && run.stderr.contains("TEST_NO_SUCH_KEY_VARIABLE")
            && run.stderr.contains("models.fast.headers.Authorization"),
        "{run:#?}"
    );
}
