//! Who may ask: a bearer token per tenant (none or a wrong one is 401 with
//! `WWW-Authenticate: Bearer`), another tenant's session is 404 — never 403 — on every path that
//! names it, and the Host header must be a loopback name or one of `[serve] allowed_hosts`.

use serde_json::json;

use crate::harness::{AGENT, ALLOWED_HOST, Options, Resp, Site, raw_request};
use crate::model::{Conversation, FakeModel};
use crate::scripts::{self, ECHO_TASK};

fn assert_unauthorized(resp: &Resp) {
    resp.expect_error(401, &["unauthorized"]);
    let challenge = resp
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("a 401 without WWW-Authenticate:\n{resp:?}"));
    assert!(
        challenge.to_ascii_lowercase().starts_with("bearer"),
        "WWW-Authenticate: Bearer:\n{resp:?}"
    );
}

#[test]
fn requests_without_a_token_or_with_a_wrong_one_are_401() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let good = serve.api(&site.acme);
    let session = good.create_session(AGENT);

    let wrong_token = format!("{}x", site.acme.token);
    let globex_sha = crate::harness::sha256_hex(&site.globex.token);
    let clients = [
        ("no token", serve.anonymous()),
        ("a wrong token", good.with_token(Some(&wrong_token))),
        ("an empty token", good.with_token(Some(""))),
        // The config holds hashes; the hash itself is not a token.
        ("the token's sha256", good.with_token(Some(&globex_sha))),
    ];
    for (what, api) in &clients {
        for resp in [
            api.get("/v1/sessions"),
            api.post("/v1/sessions", &json!({"agent": AGENT})),
            api.get(&format!("/v1/sessions/{session}")),
            api.delete(&format!("/v1/sessions/{session}")),
            api.post(
                &format!("/v1/sessions/{session}/tasks"),
                &json!({"input": ECHO_TASK}),
            ),
            api.post(
                &format!("/v1/sessions/{session}/tools/text-tools/echo"),
                &json!({"text": "x"}),
            ),
            api.get("/v1/agents"),
            api.get(&format!("/v1/agents/{AGENT}/tools")),
            api.get("/v1/audit"),
        ] {
            assert_eq!(resp.status, 401, "{what}:\n{resp:?}");
            assert_unauthorized(&resp);
        }
    }
    // Another scheme than Bearer, with the right secret.
    let basic = good.send(
        "GET",
        "/v1/agents",
        &[("authorization", &format!("Basic {}", site.acme.token))],
        None,
    );
    assert_unauthorized(&basic);
    // Nothing was done by the refused requests.
    let resp = good.get(&format!("/v1/sessions/{session}"));
    assert_eq!(resp.expect(200)["tasks"], json!([]), "{resp:?}");
    let resp = good.get("/v1/sessions");
    assert_eq!(
        resp.expect(200)["sessions"].as_array().unwrap().len(),
        1,
        "{resp:?}"
    );
    assert!(model.received().is_empty(), "{}", model.describe());
    // And the right token still works.
    good.get("/v1/agents").expect(200);
}

#[test]
fn another_tenants_session_is_404_on_every_path_that_names_it() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[&scripts::echo]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let acme = serve.api(&site.acme);
    let globex = serve.api(&site.globex);
    let session = acme.create_session(AGENT);
    let task = acme.start_task(&session, ECHO_TASK);
    let done = acme.wait_task(&session, &task, std::time::Duration::from_secs(120));
    assert_eq!(done["status"], "answered", "{done:#}\n{}", model.describe());
    let asked = model.received().len();

    // A session id that exists nowhere, for comparison: the same 404.
    let nowhere = uuid::Uuid::now_v7().hyphenated().to_string();
    for id in [session.as_str(), nowhere.as_str()] {
        for resp in [
            globex.get(&format!("/v1/sessions/{id}")),
            globex.get(&format!("/v1/sessions/{id}/tasks/{task}")),
            globex.post(
                &format!("/v1/sessions/{id}/tasks"),
                &json!({"input": ECHO_TASK}),
            ),
            globex.post(
                &format!("/v1/sessions/{id}/tools/text-tools/echo"),
                &json!({"text": "x"}),
            ),
            globex.delete(&format!("/v1/sessions/{id}")),
            globex.delete(&format!("/v1/sessions/{id}?force=true")),
        ] {
            let message = resp.expect_error(404, &["not_found"]);
            assert!(
                message.contains(id),
                "the 404 names the session it did not find:\n{resp:?}"
            );
            assert!(
                !resp.body.contains(&site.acme.name),
                "a 404 says nothing of the owner:\n{resp:?}"
            );
        }
    }
    let resp = globex.get("/v1/sessions");
    let listed = resp.expect(200)["sessions"].as_array().unwrap().clone();
    assert!(
        listed.iter().all(|s| s["id"] != session.as_str()),
        "another tenant's session is not listed:\n{resp:?}"
    );
    let resp = globex.get("/v1/audit?limit=1000");
    assert!(
        resp.expect(200)["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["session"] != session.as_str()),
        "another tenant's audit is not shown:\n{resp:?}"
    );

    // Nothing globex sent reached the session: acme still has it, with its one task.
    let resp = acme.get(&format!("/v1/sessions/{session}"));
    let shown = resp.expect(200);
    assert_eq!(shown["tasks"].as_array().unwrap().len(), 1, "{resp:?}");
    assert_eq!(model.received().len(), asked, "{}", model.describe());
}

/// `GET path` over a raw socket with `Host: host` and `token`.
fn with_host(
    serve: &crate::harness::Serve,
    host: &str,
    path: &str,
    token: &str,
) -> crate::harness::RawResp {
    raw_request(
        serve.addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        ),
    )
}

#[test]
fn a_host_header_not_allowed_is_403_and_loopback_or_allowed_names_are_served() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let port = serve.addr.port();
    let token = site.acme.token.clone();

    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("{ALLOWED_HOST}.evil.example"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        "example.com".to_string(),
    ] {
        for path in ["/v1/agents", "/v1/sessions"] {
            let resp = with_host(&serve, &host, path, &token);
            assert_eq!(resp.status, 403, "Host: {host}\n{resp:#?}");
            assert_eq!(resp.error_kind(), "host_not_allowed", "{resp:#?}");
        }
    }

    for host in [
        ALLOWED_HOST.to_string(),
        format!("{ALLOWED_HOST}:{port}"),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let resp = with_host(&serve, &host, "/v1/agents", &token);
        assert_eq!(resp.status, 200, "Host: {host} is allowed\n{resp:#?}");
        assert_eq!(resp.json()["agents"][0]["name"], AGENT, "{resp:#?}");
    }
}
