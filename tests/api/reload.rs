//! SIGHUP re-reads the config: a good one is swapped in (an agent added is served), a broken
//! one is refused (`reload refused:` on stderr) and the old one keeps serving.

use serde_json::json;

use crate::harness::{AGENT, Extra, Options, Site};
use crate::model::{Conversation, FakeModel};
use crate::scripts;

fn agent_names(api: &crate::harness::Api) -> Vec<String> {
    let resp = api.get("/v1/agents");
    resp.expect(200)["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("{resp:?}"))
        .iter()
        .map(|a| a["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn sighup_swaps_in_a_good_config_and_refuses_a_broken_one() {
    let model = FakeModel::start(|c: &Conversation| scripts::any_of(c, &[]));
    let site = Site::sqlite(&model, Options::default());
    let mut serve = site.serve();
    let api = serve.api(&site.acme);
    assert_eq!(agent_names(&api), [AGENT]);
    let session = api.create_session(AGENT);

    // A good config: agent `helper` added, and granted to acme.
    let good = site.config(&Extra {
        toml: r#"
[agents.helper]
model = "fast"
instructions = "You echo."
tools = ["text-tools/echo"]
grants = ["model:fast"]
"#
        .to_string(),
        acme_agents: vec!["helper".to_string()],
    });
    site.write_config(&good);
    serve.signal(libc::SIGHUP);
    serve.wait_stderr("`reloaded`", 1, |l| l.contains("reloaded"));
    let mut names = agent_names(&api);
    names.sort();
    assert_eq!(names, ["counting", "helper"], "the added agent is served");
    let resp = api.get("/v1/agents/helper/tools");
    let tools = resp.expect(200);
    assert_eq!(tools["tools"].as_array().map(Vec::len), Some(1), "{resp:?}");
    assert_eq!(tools["tools"][0]["tool"], "echo", "{resp:?}");
    let helper_session = api.create_session("helper");
    let resp = api.post(
        &format!("/v1/sessions/{helper_session}/tools/text-tools/echo"),
        &json!({"text": "from helper"}),
    );
    assert_eq!(resp.expect(200), json!({"text": "from helper"}), "{resp:?}");
    // globex was not given the agent.
    let other = serve.api(&site.globex);
    assert_eq!(agent_names(&other), [AGENT]);

    // Broken configs: not TOML, then TOML that names a plugin that is not there.
    let broken = [
        "this is [not toml\n".to_string(),
        site.config(&Extra {
            toml: r#"
[agents.broken]
model = "fast"
tools = ["no-such-plugin/*"]
"#
            .to_string(),
            acme_agents: vec!["helper".to_string(), "broken".to_string()],
        }),
    ];
    for (i, text) in broken.iter().enumerate() {
        site.write_config(text);
        serve.signal(libc::SIGHUP);
        serve.wait_stderr("a `reload refused:` line", i + 1, |l| {
            l.starts_with("reload refused:")
        });
        assert!(serve.running(), "a refused reload does not stop the server");
        // The old config keeps serving: both agents, the sessions, the tools.
        let mut names = agent_names(&api);
        names.sort();
        assert_eq!(names, ["counting", "helper"], "after broken config #{i}");
        let resp = api.post(
            &format!("/v1/sessions/{session}/tools/text-tools/echo"),
            &json!({"text": "still here"}),
        );
        assert_eq!(resp.expect(200), json!({"text": "still here"}), "{resp:?}");
        api.get(&format!("/v1/sessions/{helper_session}"))
            .expect(200);
        let resp = serve.anonymous().get("/healthz");
        assert_eq!(resp.expect(200), json!({"status": "ok"}));
    }
    // Tokens are still checked against the old config.
    assert_eq!(
        serve.anonymous().get("/v1/agents").status,
        401,
        "the old config's auth still holds"
    );
}
