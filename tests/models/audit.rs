//! Every model call is audited, so the log answers "which backend served every call of agent
//! X": the alias asked for, the alias and backend that served, the model, tokens in and out,
//! latency, outcome, and each attempt on the way.

use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::mock;
use crate::site::Site;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_names_the_backend_that_served_every_call_of_an_agent() {
    let fast = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fast)
        .await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(mock::openai_text("fast answer", 7, 3))
        .mount(&fast)
        .await;
    let local = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(mock::openai_text("local answer", 5, 2))
        .mount(&local)
        .await;
    let site = Site::new(&format!(
        r#"
        [state]
        url = "sqlite://state/warden.db"
        [plugins.model-probe]
        path = "{{plugins}}/model-probe.wasm"
        max = ["model:*"]
        [models.fast]
        backend = "openai"
        base_url = "{}/v1"
        model = "gpt-fast"
        fallbacks = ["local"]
        [models.local]
        backend = "openai"
        base_url = "{}/v1"
        model = "llama-local"
        [agents.support]
        tools = ["model-probe/*"]
        grants = ["model:fast", "model:local"]
        [agents.sales]
        tools = ["model-probe/*"]
        grants = ["model:fast"]
        "#,
        fast.uri(),
        local.uri()
    ));
    // support: fast is rate limited once (served by local), then serves; sales: fast serves.
    site.probe("support", json!({"model": "fast"}));
    site.probe("support", json!({"model": "fast"}));
    site.probe("sales", json!({"model": "fast"}));
    site.probe("support", json!({"model": "local"}));
    let denied = site.probe("sales", json!({"model": "local"}));
    assert_eq!(denied["error"]["kind"], "denied");

    // The question, answered from `warden audit tail --json` alone.
    let support: Vec<serde_json::Value> = site
        .model_calls()
        .into_iter()
        .filter(|d| d["record"]["agent"] == "support")
        .collect();
    let served: Vec<(&str, &str, &str, &str)> = support
        .iter()
        .map(|d| {
            (
                d["alias"].as_str().unwrap(),
                d["served_by"].as_str().unwrap(),
                d["backend"].as_str().unwrap(),
                d["model"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        served,
        [
            ("fast", "local", "openai", "mock-gpt"),
            ("fast", "fast", "openai", "mock-gpt"),
            ("local", "local", "openai", "mock-gpt"),
        ]
    );
    let first = &support[0];
    assert_eq!(first["fallback"], true);
    assert_eq!(first["outcome"], "ok");
    assert_eq!(
        (first["tokens_in"].as_u64(), first["tokens_out"].as_u64()),
        (Some(5), Some(2))
    );
    assert!(first["latency_ms"].is_u64());
    assert_eq!(first["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(first["record"]["capability"], "model");
    assert_eq!(first["record"]["target"], "fast");
    assert_eq!(first["record"]["plugin"], "model-probe");
    assert_eq!(first["record"]["tool"], "probe");
    assert_eq!(support[1]["fallback"], false);
    assert_eq!(support[1]["tokens_in"], 7);

    let sales: Vec<serde_json::Value> = site
        .model_calls()
        .into_iter()
        .filter(|d| d["record"]["agent"] == "sales")
        .collect();
    assert_eq!(sales.len(), 2);
    assert_eq!(sales[0]["served_by"], "fast");
    assert_eq!(sales[1]["outcome"], "denied");
    assert_eq!(sales[1]["record"]["outcome"], "denied");
    assert!(sales[1]["served_by"].is_null());

    site.warden(&["audit", "verify", "--config", "warden.toml"])
        .assert_code(0);
}

/// Fail closed: when the audit store refuses the model's records (here a trigger stands for a
/// full disk), no request goes out to the backend, and the call fails naming the audit store
/// instead of returning an unaudited answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_model_request_goes_out_when_its_audit_record_cannot_be_committed() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(mock::openai_text("answer", 5, 2))
        .mount(&server)
        .await;
    let site = Site::new(&format!(
        r#"
        [plugins.model-probe]
        path = "{{plugins}}/model-probe.wasm"
        max = ["model:*"]
        [models.local]
        backend = "openai"
        base_url = "{}/v1"
        model = "llama-local"
        [agents.support]
        tools = ["model-probe/*"]
        grants = ["model:local"]
        "#,
        server.uri()
    ));
    site.probe("support", json!({"model": "local"}));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    // Each request that went out was recorded before it did, and its outcome after.
    let requests = site.model_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0]["record"]["outcome"], "allowed");
    assert_eq!(site.model_calls().len(), 1);

    let store = rusqlite::Connection::open(site.path().join(".warden/state.db")).unwrap();
    store
        .execute_batch(
            "CREATE TRIGGER refuse_model_records BEFORE INSERT ON audit_log \
             WHEN NEW.capability = 'model' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
    let run = site.call(
        "support",
        "model-probe",
        "probe",
        &json!({"model": "local"}).to_string(),
    );

    run.assert_code(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        run.error_line().contains("audit store") && said.contains("disk is full"),
        "{said}"
    );
    assert!(!said.contains("answer"), "the answer is withheld: {said}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "no request went out while the audit store refused its records"
    );
}
