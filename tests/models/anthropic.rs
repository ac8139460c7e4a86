//! The Anthropic Messages API: a tool-use round trip through a plugin, the key in `x-api-key`,
//! the API's own errors.

use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::mock;
use crate::site::{ANTHROPIC_KEY, Site};

fn config(base_url: &str) -> String {
    format!(
        r#"
        [plugins.model-probe]
        path = "{{plugins}}/model-probe.wasm"
        max = ["model:*"]
        [models.smart]
        backend = "anthropic"
        base_url = "{base_url}"
        api_key_env = "TEST_ANTHROPIC_KEY"
        model = "claude-test"
        [agents.support]
        tools = ["model-probe/*"]
        grants = ["model:smart"]
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_use_round_trip_through_a_plugin() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", ANTHROPIC_KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .and(|r: &wiremock::Request| !answers_a_tool(r))
        .respond_with(mock::anthropic_message(
            json!([
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}}
            ]),
            "tool_use",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", ANTHROPIC_KEY))
        .and(answers_a_tool)
        .respond_with(mock::anthropic_message(
            json!([{"type": "text", "text": "Oslo is cold: 2 C."}]),
            "end_turn",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let site = Site::new(&config(&format!("{}/v1", server.uri())));
    let tool = json!({
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
    });

    let first = site.probe(
        "support",
        json!({"model": "smart", "tools": [tool], "max_tokens": 300, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Oslo?"}
        ]}),
    );
    let response = &first["response"];
    assert_eq!(response["finish_reason"], "tool-calls", "{first}");
    assert_eq!(response["message"]["content"], "Let me check.");
    let call = &response["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01");
    assert_eq!(call["arguments"], r#"{"city":"Oslo"}"#);
    assert_eq!(response["usage"]["input_tokens"], 25);
    assert_eq!(response["model"], "mock-claude");
    assert_eq!(response["backend"], "smart");

    let second = site.probe(
        "support",
        json!({"model": "smart", "tools": [tool], "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [{"id": "toolu_01", "name": "get_weather", "arguments": {"city": "Oslo"}}]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "2 C, snow"}
        ]}),
    );
    assert_eq!(
        second["response"]["message"]["content"], "Oslo is cold: 2 C.",
        "{second}"
    );
    assert_eq!(second["response"]["finish_reason"], "stop");

    let requests = server.received_requests().await.unwrap();
    let sent = mock::body_json(&requests[0]);
    assert_eq!(sent["model"], "claude-test");
    assert_eq!(sent["max_tokens"], 300);
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
    let sent = mock::body_json(&requests[1]);
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"][1]["type"], "tool_use");
    assert_eq!(messages[1]["content"][1]["input"], json!({"city": "Oslo"}));
    assert_eq!(
        messages[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_01", "content": "2 C, snow"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_error_is_named_with_the_providers_words() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: must be at most 8192"}
        })))
        .mount(&server)
        .await;
    let site = Site::new(&config(&format!("{}/v1", server.uri())));
    let report = site.probe("support", json!({"model": "smart"}));
    assert_eq!(report["error"]["kind"], "backend", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("HTTP 400") && message.contains("max_tokens: must be at most 8192"),
        "{message}"
    );
    // A refused request is not retried.
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

/// Whether a request carries a `tool_result` block.
fn answers_a_tool(r: &wiremock::Request) -> bool {
    String::from_utf8_lossy(&r.body).contains("\"tool_result\"")
}
