//! `/openapi.json` against the real routes: every operation the document lists is served by
//! the running server (never the unknown-route fallback, never 405), and every status it
//! answers is one the document lists for that operation.

use serde_json::{Value, json};

use crate::harness::{AGENT, Options, Site};
use crate::model::{Conversation, FakeModel};
use crate::scripts;

#[test]
fn every_operation_in_openapi_json_is_a_real_route_answering_a_documented_status() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let serve = site.serve();
    let api = serve.api(&site.acme);
    let doc = serve.anonymous().get("/openapi.json").expect(200);
    let paths = doc["paths"].as_object().expect("paths").clone();
    assert!(paths.len() >= 11, "{doc:#}");
    let mut checked = 0;
    for (template, item) in &paths {
        for (method, operation) in item.as_object().expect("a path item") {
            // The operation's session is made fresh, so a DELETE cannot spoil a later check.
            let session = api.create_session(AGENT);
            let path = template
                .replace("{id}", &session)
                .replace("{task}", "01a23790-eeee-77c9-b0c1-e7de6e742ac0")
                .replace("{plugin}", "text-tools")
                .replace("{tool}", "echo")
                .replace("{agent}", AGENT);
            let method = method.to_uppercase();
            let body = match (method.as_str(), template.as_str()) {
                ("POST", "/v1/sessions") => Some(json!({"agent": AGENT})),
                ("POST", t) if t.ends_with("/tasks") => Some(json!({"input": "hello"})),
                ("POST", _) => Some(json!({"text": "hello"})),
                _ => None,
            };
            let resp = api.send(
                &method,
                &path,
                &[("content-type", "application/json")],
                body.map(|b| b.to_string().into_bytes()),
            );
            assert_ne!(
                resp.status, 405,
                "{method} {template} is documented: {resp:?}"
            );
            assert!(
                !resp.body.contains("there is no route"),
                "{method} {template} is documented but not routed: {resp:?}"
            );
            let documented: Vec<&String> = operation["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            assert!(
                documented.iter().any(|s| **s == resp.status.to_string()),
                "{method} {template} answered {}, which its responses ({documented:?}) do not \
                 list: {resp:?}",
                resp.status
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} operations were checked");
    // And a route that is not documented is the fallback, so the check above can fail.
    let resp = api.get("/v1/not-a-route");
    assert_eq!(resp.status, 404, "{resp:?}");
    assert!(resp.body.contains("there is no route"), "{resp:?}");
    let _: Value = resp.json();
}
