//! The shipped `summarize` plugin: a text, or a file of a granted directory source, summarized
//! by a granted model alias.

use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer};

use crate::mock;
use crate::site::Site;

async fn site() -> (MockServer, Site) {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(mock::openai_text("  Refunds within 30 days.  ", 120, 6))
        .mount(&server)
        .await;
    let site = Site::new(&format!(
        r#"
        [plugins.summarize]
        path = "{{plugins}}/summarize.wasm"
        max = ["model:*", "dir:*:ro"]
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [models.fast]
        backend = "openai"
        base_url = "{}/v1"
        api_key_env = "TEST_OPENAI_KEY"
        model = "gpt-test"
        [models.premium]
        backend = "openai"
        base_url = "{}/v1"
        model = "gpt-premium"
        [agents.support]
        tools = ["summarize/*"]
        grants = ["model:fast", "handbook:ro"]
        [agents.intern]
        tools = ["summarize/*"]
        grants = ["model:fast"]
        "#,
        server.uri(),
        server.uri()
    ));
    site.write(
        "handbook/refunds.md",
        "# Refunds\nCustomers may return any item within 30 days for a full refund.\n",
    );
    (server, site)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summarizes_a_text() {
    let (server, site) = site().await;
    let run = site.call(
        "support",
        "summarize",
        "summarize",
        &json!({"text": "Customers may return any item within 30 days.", "model": "fast"})
            .to_string(),
    );
    run.assert_code(0);
    assert_eq!(run.json(), json!({"summary": "Refunds within 30 days."}));
    let sent = mock::body_json(&server.received_requests().await.unwrap()[0]);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(
        sent["messages"][1]["content"],
        "Customers may return any item within 30 days."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summarizes_a_file_of_a_granted_source() {
    let (server, site) = site().await;
    let run = site.call(
        "support",
        "summarize",
        "summarize",
        &json!({"source": "handbook", "path": "refunds.md", "model": "fast"}).to_string(),
    );
    run.assert_code(0);
    assert_eq!(run.json()["summary"], "Refunds within 30 days.");
    let sent = mock::body_json(&server.received_requests().await.unwrap()[0]);
    assert!(
        sent["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("full refund")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_source_is_denied() {
    let (server, site) = site().await;
    site.call(
        "intern",
        "summarize",
        "summarize",
        &json!({"source": "handbook", "path": "refunds.md", "model": "fast"}).to_string(),
    )
    .assert_fails_with(3, "handbook:ro");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_alias_exits_3_naming_the_grant() {
    let (server, site) = site().await;
    site.call(
        "support",
        "summarize",
        "summarize",
        &json!({"text": "hello there", "model": "premium"}).to_string(),
    )
    .assert_fails_with(3, "model:premium");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_alias_exits_2_naming_the_allowed_ones() {
    let (_server, site) = site().await;
    site.call(
        "support",
        "summarize",
        "summarize",
        &json!({"text": "hello there", "model": "gpt-4o"}).to_string(),
    )
    .assert_fails_with(2, "may use: fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_a_file_together_are_refused() {
    let (_server, site) = site().await;
    site.call(
        "support",
        "summarize",
        "summarize",
        &json!({"text": "x", "source": "handbook", "path": "refunds.md", "model": "fast"})
            .to_string(),
    )
    .assert_fails_with(2, "not both");
}

#[test]
fn without_a_config_every_alias_is_denied() {
    let run = crate::common::call(
        "summarize",
        "summarize",
        &json!({"text": "hello", "model": "fast"}).to_string(),
        &[],
    );
    run.assert_fails_with(3, "--config");
}
