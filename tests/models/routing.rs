//! Routing: fallbacks on 429, 5xx and timeouts, retries that honour `Retry-After`, backends that
//! are down, slow or garbled, and aliases that are unknown or not granted.

use std::time::{Duration, Instant};

use serde_json::json;
use warden::models::{ModelError, Window};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::metric;
use crate::mock;
use crate::site::{Site, ask, complete_as};

/// `fast` (openai at `fast_url`) falls back to `local` (openai at `local_url`).
fn two_aliases(fast_url: &str, local_url: &str, fast_timeout_ms: u64) -> String {
    format!(
        r#"
        [plugins.model-probe]
        path = "{{plugins}}/model-probe.wasm"
        max = ["model:*"]
        [models.fast]
        backend = "openai"
        base_url = "{fast_url}"
        model = "gpt-fast"
        fallbacks = ["local"]
        timeout_ms = {fast_timeout_ms}
        [models.local]
        backend = "openai"
        base_url = "{local_url}"
        model = "llama-local"
        timeout_ms = 5000
        [models.secret]
        backend = "openai"
        base_url = "{local_url}"
        model = "gpt-secret"
        [agents.support]
        tools = ["model-probe/*"]
        grants = ["model:fast", "model:local"]
        limits = {{ quota = {{ calls_per_day = 100, tokens_per_day = 100000 }} }}
        "#
    )
}

async fn server_answering(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn v1(server: &MockServer) -> String {
    format!("{}/v1", server.uri())
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v1")
}

async fn call(site: &Site, alias: &str) -> Result<warden::models::Completion, ModelError> {
    complete_as(
        &site.capabilities(),
        "support",
        &["fast", "local"],
        ask(alias, "hello"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_falls_back_to_the_next_alias() {
    let fast = server_answering(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "30")
            .set_body_json(json!({"error": {"message": "Rate limit reached", "type": "requests"}})),
    )
    .await;
    let local = server_answering(mock::openai_text("from the fallback", 5, 3)).await;
    let site = Site::new(&two_aliases(&v1(&fast), &v1(&local), 5000));
    let started = Instant::now();
    let report = site.probe("support", json!({"model": "fast"}));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it waited for the Retry-After"
    );
    assert_eq!(report["response"]["backend"], "local", "{report}");
    assert_eq!(
        report["response"]["message"]["content"],
        "from the fallback"
    );
    assert_eq!(report["response"]["model"], "mock-gpt");
    // With a fallback at hand, a rate-limited backend is not asked again.
    assert_eq!(fast.received_requests().await.unwrap().len(), 1);

    let calls = site.model_calls();
    let detail = calls.last().unwrap();
    assert_eq!(detail["alias"], "fast");
    assert_eq!(detail["served_by"], "local");
    assert_eq!(detail["fallback"], true);
    assert_eq!(detail["attempts"][0]["outcome"], "rate-limited");
    assert!(
        detail["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached")
    );
    assert_eq!(detail["attempts"][1]["outcome"], "ok");
    assert_eq!(detail["record"]["outcome"], "allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_backend_attempt_is_timed_and_the_serving_alias_counts_the_tokens() {
    let limited = server_answering(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "30")
            .set_body_json(json!({"error": {"message": "Rate limit reached"}})),
    )
    .await;
    let local = server_answering(mock::openai_text("metered", 5, 3)).await;
    // Aliases of its own: the suite's other tests record into this process's metrics as well.
    let site = Site::new(&format!(
        r#"
        [models.metered-fast]
        backend = "openai"
        base_url = "{}"
        model = "gpt-fast"
        fallbacks = ["metered-local"]
        [models.metered-local]
        backend = "openai"
        base_url = "{}"
        model = "llama-local"
        "#,
        v1(&limited),
        v1(&local)
    ));
    let completion = complete_as(
        &site.capabilities(),
        "metered",
        &["metered-fast", "metered-local"],
        ask("metered-fast", "hello"),
    )
    .await
    .expect("the fallback serves");
    assert_eq!(completion.served_by, "metered-local");

    let attempts = |alias: &str, outcome: &str| {
        metric(&format!(
            "warden_model_call_duration_seconds_count{{alias=\"{alias}\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(attempts("metered-fast", "rate-limited"), 1.0);
    assert_eq!(attempts("metered-local", "ok"), 1.0);
    let tokens = |alias: &str, direction: &str| {
        metric(&format!(
            "warden_model_tokens_total{{alias=\"{alias}\",agent=\"metered\",direction=\"{direction}\"}}"
        ))
    };
    assert_eq!(tokens("metered-local", "input"), 5.0);
    assert_eq!(tokens("metered-local", "output"), 3.0);
    assert_eq!(
        tokens("metered-fast", "input"),
        0.0,
        "only the serving alias counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_and_the_retry_serves() {
    let fast = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fast)
        .await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(mock::openai_text("second time lucky", 4, 3))
        .mount(&fast)
        .await;
    let local = server_answering(mock::openai_text("fallback", 1, 1)).await;
    let site = Site::new(&two_aliases(&v1(&fast), &v1(&local), 5000));
    let completion = call(&site, "fast").await.unwrap();
    assert_eq!(completion.served_by, "fast");
    assert_eq!(completion.message.content, "second time lucky");
    assert_eq!(fast.received_requests().await.unwrap().len(), 2);
    assert!(local.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_on_the_last_backend() {
    let local = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&local)
        .await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(mock::openai_text("after waiting", 1, 1))
        .mount(&local)
        .await;
    let site = Site::new(&two_aliases(&closed_port_url(), &v1(&local), 5000));
    let started = Instant::now();
    let completion = call(&site, "local").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}, sooner than Retry-After",
        started.elapsed()
    );
    assert_eq!(completion.message.content, "after waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_past_the_cap_is_not_waited_for() {
    let local = server_answering(
        ResponseTemplate::new(503)
            .insert_header("retry-after", "3600")
            .set_body_json(json!({"error": {"message": "down for maintenance"}})),
    )
    .await;
    let site = Site::new(&two_aliases(&closed_port_url(), &v1(&local), 5000));
    let started = Instant::now();
    let err = call(&site, "local").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&err, ModelError::Backend(m) if m.contains("HTTP 503") && m.contains("down for maintenance")),
        "{err}"
    );
    assert_eq!(local.received_requests().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_times_out_with_a_clear_error_and_falls_back() {
    let slow =
        server_answering(mock::openai_text("too late", 1, 1).set_delay(Duration::from_secs(10)))
            .await;
    let local = server_answering(mock::openai_text("in time", 1, 1)).await;
    let site = Site::new(&two_aliases(&v1(&slow), &v1(&local), 300));
    let started = Instant::now();
    let completion = call(&site, "fast").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(completion.served_by, "local");

    // Alone, the slow backend is a `backend` error within its timeout, and the host goes on.
    let site = Site::new(
        &two_aliases(&v1(&slow), &v1(&slow), 300)
            .replace("fallbacks = [\"local\"]", "fallbacks = []"),
    );
    let started = Instant::now();
    let report = site.probe("support", json!({"model": "fast"}));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report["error"]["kind"], "backend", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("no answer within 300 ms"), "{message}");
    let detail = site.model_calls().pop().unwrap();
    assert_eq!(detail["attempts"][0]["outcome"], "timeout");
    assert_eq!(detail["record"]["outcome"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_fails_clearly_and_releases_the_reservation() {
    let local = server_answering(mock::openai_text("still here", 2, 2)).await;
    let config = two_aliases(&closed_port_url(), &v1(&local), 2000)
        .replace("fallbacks = [\"local\"]", "fallbacks = []");
    let site = Site::new(&config);
    let caps = site.capabilities();
    let call = |alias: &str| complete_as(&caps, "support", &["fast", "local"], ask(alias, "hello"));
    let started = Instant::now();
    let err = call("fast").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(&err, ModelError::Backend(m) if m.contains("cannot reach the endpoint") && m.contains("`fast` (openai)")),
        "{err}"
    );
    assert_eq!(
        support_usage_today(&caps).await,
        (0, 0),
        "the reservation was kept"
    );

    // The same router serves the next call.
    let completion = call("local").await.unwrap();
    assert_eq!(completion.message.content, "still here");
    assert_eq!(support_usage_today(&caps).await, (1, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_still_counts_since_the_request_went_out() {
    let garbage = server_answering(
        ResponseTemplate::new(200).set_body_raw("\u{0}\u{1}garbage", "application/json"),
    )
    .await;
    let site = Site::new(&two_aliases(&v1(&garbage), &v1(&garbage), 2000));
    let err = call(&site, "fast").await.unwrap_err();
    assert!(
        matches!(&err, ModelError::Backend(m) if m.contains("not JSON")),
        "{err}"
    );
    // The provider received the request and may bill it: it counts at the reserved amount.
    let caps = site.capabilities();
    let (calls, tokens) = support_usage_today(&caps).await;
    assert_eq!(calls, 1);
    assert!(tokens > 0, "counted at its reservation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_alias_is_invalid_and_names_the_allowed_aliases() {
    let local = server_answering(mock::openai_text("x", 1, 1)).await;
    let site = Site::new(&two_aliases(&v1(&local), &v1(&local), 2000));
    let report = site.probe("support", json!({"model": "gpt-4o"}));
    assert_eq!(report["error"]["kind"], "invalid", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`gpt-4o` is not a model alias") && message.contains("fast, local"),
        "{message}"
    );
    assert!(
        !message.contains("secret"),
        "an ungranted alias was offered: {message}"
    );
    assert!(local.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_alias_is_denied_naming_the_grant() {
    let local = server_answering(mock::openai_text("x", 1, 1)).await;
    let site = Site::new(&two_aliases(&v1(&local), &v1(&local), 2000));
    let report = site.probe("support", json!({"model": "secret"}));
    assert_eq!(report["error"]["kind"], "denied", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"model:secret\"") && message.contains("agents.support.grants"),
        "{message}"
    );
    assert!(local.received_requests().await.unwrap().is_empty());
    let detail = site.model_calls().pop().unwrap();
    assert_eq!(detail["record"]["outcome"], "denied");
    assert_eq!(detail["record"]["target"], "secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_whose_max_leaves_out_models_is_denied_naming_the_max() {
    let local = server_answering(mock::openai_text("x", 1, 1)).await;
    let site = Site::new(
        &two_aliases(&v1(&local), &v1(&local), 2000)
            .replace("max = [\"model:*\"]", "max = [\"model:local\"]"),
    );
    let report = site.probe("support", json!({"model": "fast"}));
    assert_eq!(report["error"]["kind"], "denied", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("plugins.model-probe.max"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_is_invalid_and_never_sent() {
    let local = server_answering(mock::openai_text("x", 1, 1)).await;
    let site = Site::new(&two_aliases(&v1(&local), &v1(&local), 2000));
    let report = site.probe(
        "support",
        json!({"model": "local", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "42"}]}),
    );
    assert_eq!(report["error"]["kind"], "invalid", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`nope`")
    );
    assert!(local.received_requests().await.unwrap().is_empty());
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_call_that_runs_out_of_time_mid_model_call_keeps_its_reservation_counted() {
    let slow =
        server_answering(mock::openai_text("too late", 1, 1).set_delay(Duration::from_secs(20)))
            .await;
    let site = Site::new(&two_aliases(&v1(&slow), &v1(&slow), 60_000));
    let input = json!({"model": "fast"}).to_string();
    let run = site.call_within("support", ("model-probe", "probe"), &input, 800);
    run.assert_fails_with(5, "time").assert_no_panic();
    // The request went out before the plugin's time ran out: the backend may still serve and
    // bill it, so handing the reservation back would let a plugin overspend its quota.
    let caps = site.capabilities();
    let (calls, tokens) = support_usage_today(&caps).await;
    assert_eq!(calls, 1, "the call is counted");
    assert!(tokens > 0, "counted at its reservation");
    let detail = site.model_calls().pop().unwrap();
    assert_eq!(detail["outcome"], "cancelled", "{detail}");
    assert_eq!(detail["record"]["outcome"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_backend_fails_the_tool_clearly_and_the_host_stays_up() {
    let site = Site::new(&format!(
        r#"
        [plugins.summarize]
        path = "{{plugins}}/summarize.wasm"
        max = ["model:*"]
        [models.fast]
        backend = "anthropic"
        base_url = "{}"
        model = "claude-test"
        [agents.support]
        tools = ["summarize/*"]
        grants = ["model:fast"]
        "#,
        closed_port_url()
    ));
    let started = Instant::now();
    site.call(
        "support",
        "summarize",
        "summarize",
        &json!({"text": "hello", "model": "fast"}).to_string(),
    )
    .assert_fails_with(4, "cannot reach the endpoint")
    .assert_no_panic();
    assert!(started.elapsed() < Duration::from_secs(8));
}

/// Calls and tokens of agent `support` counted today.
async fn support_usage_today(caps: &warden::capabilities::Capabilities) -> (u64, u64) {
    let used = caps
        .models
        .ledger()
        .usage("agent:support", Window::Day, now_ms())
        .await
        .unwrap();
    (used.calls, used.tokens)
}
