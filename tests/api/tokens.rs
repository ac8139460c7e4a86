//! `warden tenant token NAME` makes a token and the config lines that accept it: the printed
//! `token_sha256` is the token's sha256, and a server with those lines takes the token.

use crate::common::warden;
use crate::harness::{AGENT, Api, Options, Site, sha256_hex};
use crate::model::{Conversation, FakeModel};
use crate::scripts;

#[test]
fn tenant_token_json_prints_a_token_whose_sha256_is_token_sha256() {
    let run = warden(&["tenant", "token", "acme", "--json"]);
    run.assert_code(0);
    let out = run.json();
    assert_eq!(out["tenant"], "acme", "{run:#?}");
    let token = out["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {run:#?}"));
    assert!(
        token.len() >= 32,
        "a token long enough to guess at: {run:#?}"
    );
    let sha = out["token_sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("no token_sha256: {run:#?}"));
    assert_eq!(sha.len(), 64, "{run:#?}");
    assert_eq!(
        sha.to_ascii_lowercase(),
        sha256_hex(token),
        "token_sha256 is the token's sha256: {run:#?}"
    );
    let again = warden(&["tenant", "token", "acme", "--json"]);
    again.assert_code(0);
    assert_ne!(
        again.json()["token"],
        out["token"],
        "each run makes a new token"
    );

    // Without --json: the token and the config lines.
    let plain = warden(&["tenant", "token", "globex"]);
    plain.assert_code(0);
    assert!(plain.stdout.contains("[tenants.globex]"), "{plain:#?}");
    let line = plain
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("token_sha256 = \""))
        .unwrap_or_else(|| panic!("no token_sha256 line: {plain:#?}"));
    let hex = line.split('"').nth(1).unwrap_or_default();
    let printed_token = plain
        .stdout
        .split_whitespace()
        .find(|w| sha256_hex(w) == hex.to_ascii_lowercase())
        .unwrap_or_else(|| panic!("no word of the output hashes to {hex}: {plain:#?}"));
    assert!(!printed_token.is_empty());
}

#[test]
fn a_token_made_by_tenant_token_is_accepted_by_serve() {
    let run = warden(&["tenant", "token", "acme", "--json"]);
    run.assert_code(0);
    let out = run.json();
    let token = out["token"].as_str().unwrap().to_string();
    let sha = out["token_sha256"].as_str().unwrap().to_string();

    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    // Acme's config lines become the printed ones, with the old hash kept too (rotation).
    let config = site.config(&Default::default()).replace(
        &format!("token_sha256 = \"{}\"", sha256_hex(&site.acme.token)),
        &format!(
            "token_sha256 = [\"{}\", \"{sha}\"]",
            sha256_hex(&site.acme.token)
        ),
    );
    assert!(config.contains(&sha), "{config}");
    site.write_config(&config);
    let serve = site.serve();
    for api in [Api::new(&serve.base, Some(&token)), serve.api(&site.acme)] {
        let resp = api.get("/v1/agents");
        assert_eq!(resp.expect(200)["agents"][0]["name"], AGENT, "{resp:?}");
    }
    let resp = Api::new(&serve.base, Some(&sha)).get("/v1/agents");
    assert_eq!(resp.status, 401, "the hash is not the token: {resp:?}");
    // The token is acme's, not globex's: acme's sessions are its.
    let session = serve.api(&site.acme).create_session(AGENT);
    let resp = Api::new(&serve.base, Some(&token)).get(&format!("/v1/sessions/{session}"));
    assert_eq!(resp.expect(200)["id"], session.as_str(), "{resp:?}");
}
