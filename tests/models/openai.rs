//! The OpenAI-compatible protocol: a tool-call round trip through a plugin, streams split at
//! every awkward place, answers that are not completions.

use serde_json::json;
use warden::models::{ModelError, StreamEvent};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::mock::{self, sse, sse_body};
use crate::site::{Site, ask, complete_as, complete_streaming_as};

fn config(base_url: &str) -> String {
    format!(
        r#"
        [plugins.model-probe]
        path = "{{plugins}}/model-probe.wasm"
        max = ["model:*"]
        [models.fast]
        backend = "openai"
        base_url = "{base_url}"
        api_key_env = "TEST_OPENAI_KEY"
        model = "gpt-test"
        [agents.support]
        tools = ["model-probe/*"]
        grants = ["model:fast"]
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_round_trip_through_a_plugin() {
    let server = MockServer::start().await;
    let is_tool_result = |r: &wiremock::Request| {
        mock::body_json(r)["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"))
    };
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(move |r: &wiremock::Request| !is_tool_result(r))
        .respond_with(sse(sse_body(&mock::openai_tool_call_chunks(
            "call_1",
            "get_weather",
            &["{\"ci", "ty\": \"Pa", "ris\"}"],
        ))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(is_tool_result)
        .respond_with(sse(sse_body(&mock::openai_text_chunks(
            "It is sunny in Paris.",
        ))))
        .expect(1)
        .mount(&server)
        .await;
    let site = Site::new(&config(&format!("{}/v1", server.uri())));
    let tool = json!({
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    });

    let first = site.probe(
        "support",
        json!({"model": "fast", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [tool]}),
    );
    let response = &first["response"];
    assert_eq!(response["finish_reason"], "tool-calls", "{first}");
    let call = &response["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_1");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], r#"{"city": "Paris"}"#);
    assert_eq!(response["backend"], "fast");
    assert_eq!(response["usage"]["input_tokens"], 40);

    let second = site.probe(
        "support",
        json!({"model": "fast", "tools": [tool], "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"}
        ]}),
    );
    assert_eq!(
        second["response"]["message"]["content"], "It is sunny in Paris.",
        "{second}"
    );
    assert_eq!(second["response"]["finish_reason"], "stop");

    let requests = server.received_requests().await.unwrap();
    let sent = mock::body_json(&requests[0]);
    assert_eq!(sent["model"], "gpt-test");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["function"]["parameters"]["required"][0],
        "city"
    );
    let sent = mock::body_json(&requests[1]);
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"})
    );
}

/// The stream of a completion, cut into pieces of `size` bytes.
fn pieces(stream: &str, size: usize) -> Vec<Vec<u8>> {
    stream.as_bytes().chunks(size).map(<[u8]>::to_vec).collect()
}

fn local_config(base_url: &str) -> String {
    format!(
        r#"
        [models.local]
        backend = "openai"
        base_url = "{base_url}"
        model = "llama-test"
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_split_anywhere_are_joined() {
    let text = "Voilà: un café, très bien. ";
    let stream = sse_body(&mock::openai_text_chunks(text)).replace("\n\n", "\r\n\r\n");
    // Pieces of 1, 2, 3, 5 and 7 bytes split lines, `\r\n` pairs and the UTF-8 of `à` and `é`.
    for size in [1, 2, 3, 5, 7] {
        let base = mock::chunked_stream_server(pieces(&stream, size)).await;
        let site = Site::new(&local_config(&base));
        let caps = site.capabilities();
        let mut streamed = String::new();
        let completion = complete_streaming_as(
            &caps,
            "support",
            &["local"],
            ask("local", "Say it."),
            &mut |event| {
                if let StreamEvent::Text(t) = event {
                    streamed.push_str(t);
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("pieces of {size}: {e}"));
        assert_eq!(completion.message.content, text, "pieces of {size}");
        assert_eq!(streamed, text, "pieces of {size}");
        assert_eq!(completion.usage.total(), 16);
        assert_eq!(completion.model, "mock-gpt-stream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_tool_call_arguments_are_joined_across_network_reads() {
    let chunks = mock::openai_tool_call_chunks(
        "call_7",
        "search_handbook",
        &["{\"query\": \"ref", "und pol", "icy\", \"limit\"", ": 3}"],
    );
    let stream = sse_body(&chunks);
    for size in [1, 4, 9, 64] {
        let base = mock::chunked_stream_server(pieces(&stream, size)).await;
        let site = Site::new(&local_config(&base));
        let caps = site.capabilities();
        let completion = complete_as(
            &caps,
            "support",
            &["local"],
            ask("local", "Find the refund policy."),
        )
        .await
        .unwrap_or_else(|e| panic!("pieces of {size}: {e}"));
        let call = &completion.message.tool_calls[0];
        assert_eq!(call.id, "call_7");
        assert_eq!(call.name, "search_handbook");
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(args, json!({"query": "refund policy", "limit": 3}));
        assert_eq!(completion.finish_reason, "tool-calls");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stops_midway_is_a_clear_backend_error() {
    let mut chunks = mock::openai_text_chunks("never finished");
    chunks.truncate(2);
    let body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    let base = mock::chunked_stream_server(vec![body.into_bytes()]).await;
    let site = Site::new(&local_config(&base));
    let caps = site.capabilities();
    let err = complete_as(&caps, "support", &["local"], ask("local", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ModelError::Backend(m) if m.contains("ended before the completion did") && m.contains("`local`")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_answer_is_a_clear_backend_error() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_raw("<html><body>Gateway says hi</body></html>", "text/html"),
        )
        .mount(&server)
        .await;
    let site = Site::new(&config(&format!("{}/v1", server.uri())));
    let report = site.probe("support", json!({"model": "fast"}));
    assert_eq!(report["error"]["kind"], "backend", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not a completion")
            && message.contains("not JSON")
            && message.contains("Gateway says hi")
            && message.contains("`fast` (openai)"),
        "{message}"
    );
    // A malformed answer is not retried: another try would not fix it.
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_stream_is_a_clear_backend_error() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(sse(
            "data: {\"choices\": [{\"delta\": \n\ndata: [DONE]\n\n".into()
        ))
        .mount(&server)
        .await;
    let site = Site::new(&config(&format!("{}/v1", server.uri())));
    let report = site.probe("support", json!({"model": "fast"}));
    assert_eq!(report["error"]["kind"], "backend", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("stream chunk is not JSON"), "{message}");
}
