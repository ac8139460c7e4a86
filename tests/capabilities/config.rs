//! The operator's config: `warden config check` reports every problem with its key, and
//! `warden call` refuses what the config does not allow.

use crate::workspace::Workspace;

#[test]
fn a_good_config_checks_clean() {
    let ws = Workspace::new();
    ws.write("handbook/a.md", "a");
    ws.config(
        r#"
        [plugins.files]
        path = "{plugins}/files.wasm"
        max = ["dir:*:ro"]
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [agents.support]
        tools = ["files/*"]
        grants = ["handbook:ro"]
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(0);
    assert!(run.stdout.contains("ok"), "{run:#?}");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [plugins.files]
        path = "missing.wasm"
        max = ["dir:*"]
        [sources.handbook]
        kind = "dir"
        path = "no-such-folder"
        [sources.crm]
        kind = "postgres"
        [agents.support]
        grants = ["tickets:ro", "handbook:sometimes"]
        colour = "blue"
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    for key in [
        "plugins.files.path",
        "plugins.files.max[0]",
        "sources.handbook.path",
        "sources.crm.url_env",
        "agents.support",
    ] {
        assert!(run.stderr.contains(key), "missing {key}: {run:#?}");
    }
    assert!(run.stderr.contains("colour"), "{run:#?}");
    assert!(
        run.stderr.contains("dir:*:ro"),
        "the fix for a max without a mode: {run:#?}"
    );
}

#[test]
fn a_grant_naming_an_unknown_source_lists_the_sources() {
    let ws = Workspace::new();
    ws.write("handbook/a.md", "a");
    ws.config(
        r#"
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [agents.support]
        grants = ["handbok:ro"]
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    assert!(
        run.stderr.contains("agents.support.grants[0]") && run.stderr.contains("handbook"),
        "{run:#?}"
    );
}

#[test]
fn a_plugin_that_no_longer_matches_its_pin_is_refused() {
    let ws = Workspace::new();
    let wrong = "0".repeat(64);
    ws.config(&format!(
        r#"
        [plugins.files]
        path = "{{plugins}}/files.wasm"
        sha256 = "{wrong}"
        [agents.support]
        tools = ["files/*"]
        "#
    ));
    let run = ws.call("support", "files", "list", r#"{"source":"x"}"#);
    assert!(run.code == 7 || run.code == 6, "{run:#?}");
    assert!(run.stderr.contains("sha256"), "{run:#?}");
    let check = ws.warden(&["config", "check", "--config", "warden.toml"]);
    check.assert_code(7);
    assert!(check.stderr.contains("plugins.files.sha256"), "{check:#?}");
}

#[test]
fn a_matching_pin_is_accepted() {
    let ws = Workspace::new();
    let bytes = std::fs::read(crate::workspace::built("files")).unwrap();
    let pin = warden::plugins::sha256_hex(&bytes);
    ws.write("handbook/a.md", "a");
    ws.config(&format!(
        r#"
        [plugins.files]
        path = "{{plugins}}/files.wasm"
        sha256 = "{pin}"
        max = ["dir:*:ro"]
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [agents.support]
        tools = ["files/*"]
        grants = ["handbook:ro"]
        "#
    ));
    ws.call(
        "support",
        "files",
        "read",
        r#"{"source":"handbook","path":"a.md"}"#,
    )
    .assert_code(0);
}

#[test]
fn an_unknown_plugin_or_agent_is_named() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [plugins.files]
        path = "{plugins}/files.wasm"
        [agents.support]
        tools = ["files/*"]
        "#,
    );
    ws.call("support", "filez", "list", "{}")
        .assert_fails_with(6, "files");
    ws.call("nobody", "files", "list", "{}")
        .assert_fails_with(2, "support");
}

#[test]
fn agent_without_config_is_refused() {
    let ws = Workspace::new();
    let plugin = crate::workspace::built("text-tools");
    let run = ws.warden(&[
        "call",
        "--agent",
        "support",
        plugin.to_str().unwrap(),
        "echo",
        "--input",
        r#"{"text":"x"}"#,
    ]);
    run.assert_fails_with(2, "--config");
}
