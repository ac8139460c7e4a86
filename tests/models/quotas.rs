//! Quotas: reserved atomically before the call, settled after it, never overspent by
//! concurrent calls in one process or in several, kept across restarts, and refused with the
//! time they reset.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warden::capabilities::Capabilities;
use warden::models::{ModelError, Window};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer};

use crate::mock;
use crate::site::{Site, ask, complete_as};

const DAY_MS: u64 = 86_400_000;

fn config(base_url: &str, agent_limits: &str, plugin_quota: &str) -> String {
    format!(
        r#"
        [plugins.model-probe]
        path = "{{plugins}}/model-probe.wasm"
        max = ["model:*"]
        {plugin_quota}
        [models.local]
        backend = "openai"
        base_url = "{base_url}"
        model = "llama-test"
        [agents.support]
        tools = ["model-probe/*"]
        grants = ["model:local"]
        limits = {{ {agent_limits} }}
        [agents.sales]
        tools = ["model-probe/*"]
        grants = ["model:local"]
        "#
    )
}

/// A backend that answers after `delay` with 1 prompt and 99 completion tokens.
async fn backend(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(mock::openai_text("ok", 1, 99).set_delay(delay))
        .mount(&server)
        .await;
    server
}

/// Runs `n` calls at once, as `agent` through plugin `model-probe`, each with max-tokens 100.
async fn concurrent_calls(
    caps: &Arc<Capabilities>,
    agent: &str,
    n: usize,
) -> Vec<Result<warden::models::Completion, ModelError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let caps = caps.clone();
            let agent = agent.to_string();
            tokio::spawn(async move {
                let mut request = ask("local", "hi");
                request.max_tokens = Some(100);
                complete_as(&caps, &agent, &["local"], request).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("the call task did not panic"));
    }
    results
}

fn next_midnight(now_ms: u64) -> u64 {
    now_ms - now_ms % DAY_MS + DAY_MS
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_calls_cannot_overspend_a_call_quota() {
    let server = backend(Duration::from_millis(50)).await;
    let site = Site::new(&config(
        &format!("{}/v1", server.uri()),
        "quota = { calls_per_day = 10 }",
        "",
    ));
    let caps = site.capabilities();
    let results = concurrent_calls(&caps, "support", 32).await;
    let served = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(served, 10, "{results:#?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        let ModelError::QuotaExceeded {
            message,
            resets_at_ms,
        } = refused
        else {
            panic!("not a quota error: {refused}");
        };
        assert!(
            message.contains("10 of its 10 model calls per day")
                && message.contains("agents.support.limits.quota.calls_per_day"),
            "{message}"
        );
        assert_eq!(*resets_at_ms, next_midnight(now_ms()));
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 10);
    let used = caps
        .models
        .ledger()
        .usage("agent:support", Window::Day, now_ms())
        .await
        .unwrap();
    assert_eq!((used.calls, used.tokens), (10, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_calls_cannot_overspend_a_token_quota() {
    let server = backend(Duration::from_millis(50)).await;
    let site = Site::new(&config(
        &format!("{}/v1", server.uri()),
        "quota = { tokens_per_day = 1000 }",
        "",
    ));
    let caps = site.capabilities();
    // Each call reserves 101 tokens (max-tokens 100, and "hi" is about one token) and uses 100.
    let results = concurrent_calls(&caps, "support", 32).await;
    let served = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(served, 9, "{results:#?}");
    let used = caps
        .models
        .ledger()
        .usage("agent:support", Window::Day, now_ms())
        .await
        .unwrap();
    assert_eq!(used.tokens, 900);
    assert!(results.iter().any(|r| matches!(r, Err(ModelError::QuotaExceeded { message, .. }) if message.contains("this call reserves 101"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_quota_counts_the_calls_of_every_agent() {
    let server = backend(Duration::ZERO).await;
    let site = Site::new(&config(
        &format!("{}/v1", server.uri()),
        "",
        "quota = { calls_per_minute = 1000, calls_per_day = 3 }",
    ));
    let caps = site.capabilities();
    assert!(
        concurrent_calls(&caps, "support", 2)
            .await
            .iter()
            .all(Result::is_ok)
    );
    let results = concurrent_calls(&caps, "sales", 2).await;
    assert!(results[0].is_ok() ^ results[1].is_ok(), "{results:#?}");
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        matches!(refused, ModelError::QuotaExceeded { message, .. } if message.contains("plugin `model-probe`") && message.contains("plugins.model-probe.quota.calls_per_day")),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_quota_resets_on_the_next_minute() {
    let server = backend(Duration::ZERO).await;
    let site = Site::new(&config(
        &format!("{}/v1", server.uri()),
        "quota = { calls_per_minute = 1 }",
        "",
    ));
    let caps = site.capabilities();
    let results = concurrent_calls(&caps, "support", 2).await;
    let Some(Err(ModelError::QuotaExceeded { resets_at_ms, .. })) =
        results.iter().find(|r| r.is_err())
    else {
        panic!("{results:#?}");
    };
    assert_eq!(resets_at_ms % 60_000, 0);
    let wait = resets_at_ms.saturating_sub(now_ms());
    assert!(wait <= 60_000, "{wait}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_tokens_per_day_limit_is_a_quota_too() {
    let server = backend(Duration::ZERO).await;
    let site = Site::new(&config(
        &format!("{}/v1", server.uri()),
        "tokens_per_day = 50",
        "",
    ));
    let caps = site.capabilities();
    let results = concurrent_calls(&caps, "support", 1).await;
    let Err(ModelError::QuotaExceeded { message, .. }) = &results[0] else {
        panic!("{results:#?}");
    };
    assert!(
        message.contains("0 of its 50 model tokens per day")
            && message.contains("this call reserves 101")
            && message.contains("agents.support.limits.tokens_per_day"),
        "{message}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_shared_by_processes_and_survive_restarts() {
    // The embedded default: one SQLite file in the site.
    quotas_are_shared_by_processes(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_shared_by_processes_and_survive_restarts_on_postgres() {
    let Some(schema) = warden::state::testing::PgTestSchema::create("quotas_processes") else {
        return;
    };
    quotas_are_shared_by_processes(Some(schema.url())).await;
}

/// Six processes at once on one store (`state_url`, or the default SQLite file), with a quota
/// of three calls a day: three are served, and a later process still sees them.
async fn quotas_are_shared_by_processes(state_url: Option<&str>) {
    let server = backend(Duration::from_millis(100)).await;
    let state = state_url
        .map(|url| format!("[state]\nurl = \"{url}\"\n"))
        .unwrap_or_default();
    let site = Site::new(&format!(
        "{state}{}",
        config(
            &format!("{}/v1", server.uri()),
            "quota = { calls_per_day = 3 }",
            "",
        )
    ));
    let input = json!({"model": "local", "max_tokens": 100}).to_string();
    // Six processes at once, on one state file.
    let children: Vec<_> = (0..6)
        .map(|_| site.spawn_call("support", "model-probe", "probe", &input))
        .collect();
    let reports: Vec<serde_json::Value> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let served = reports.iter().filter(|r| !r["response"].is_null()).count();
    assert_eq!(served, 3, "{reports:#?}");
    assert!(
        reports
            .iter()
            .filter(|r| r["response"].is_null())
            .all(|r| r["error"]["kind"] == "quota-exceeded"),
        "{reports:#?}"
    );
    // A later process still sees the day's calls.
    let report = site.probe("support", json!({"model": "local"}));
    assert_eq!(report["error"]["kind"], "quota-exceeded", "{report}");
    assert_eq!(
        report["error"]["resets_at_ms"].as_u64().unwrap(),
        next_midnight(now_ms())
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[test]
fn quota_keys_are_checked_like_every_other_key() {
    let site = Site::new(
        r#"
        [plugins.model-probe]
        path = "{plugins}/model-probe.wasm"
        quota = { calls_per_hour = 5 }
        [agents.support]
        limits = { tokens_per_day = 10, quota = { tokens_per_day = 20, tokens_per_week = 1 } }
        "#,
    );
    let run = site.warden(&["config", "check", "--config", "warden.toml"]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("plugins.model-probe") && run.stderr.contains("calls_per_hour"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("agents.support") && run.stderr.contains("tokens_per_week"),
        "{run:#?}"
    );
}

#[test]
fn setting_tokens_per_day_twice_is_a_config_problem() {
    let site = Site::new(
        r#"
        [agents.support]
        limits = { tokens_per_day = 10, quota = { tokens_per_day = 20 } }
        "#,
    );
    let run = site.warden(&["config", "check", "--config", "warden.toml"]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("agents.support.limits.tokens_per_day")
            && run.stderr.contains("set once"),
        "{run:#?}"
    );
}

/// The attack of the security review: with one call a minute and a backend slower than the
/// plugin's time limit, each timed-out call used to hand its reservation back, so every call
/// reached the backend and the ledger showed none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_times_out_after_its_request_went_out_still_counts() {
    let server = backend(Duration::from_secs(3)).await;
    let site = Site::new(&config(
        &format!("{}/v1", server.uri()),
        "quota = { calls_per_minute = 1 }",
        "",
    ));
    let input = json!({"model": "local"}).to_string();
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let run = site.call_within("support", ("model-probe", "probe"), &input, 1000);
        outcomes.push((run.code, run.stdout.clone(), run.stderr.clone()));
    }
    // The first call timed out waiting on the backend; the next two were refused by the quota
    // before anything was sent.
    assert_eq!(outcomes[0].0, 5, "{outcomes:#?}");
    for (code, stdout, _) in &outcomes[1..] {
        assert_eq!(*code, 0, "{outcomes:#?}");
        assert!(stdout.contains("quota-exceeded"), "{outcomes:#?}");
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    let usage = site
        .capabilities()
        .models
        .ledger()
        .usage("agent:support", Window::Minute, now_ms())
        .await
        .unwrap();
    assert_eq!(usage.calls, 1, "the timed-out call is counted");
    assert!(usage.tokens >= 100, "counted at its reservation: {usage:?}");
}
