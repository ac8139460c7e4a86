//! The example config the README walks through stays true: it checks clean and its commands work.

use std::path::Path;

use crate::common::warden;

fn example_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/warden.toml")
        .display()
        .to_string()
}

#[test]
fn the_example_config_checks_clean() {
    warden(&["config", "check", "--config", &example_config()]).assert_code(0);
}

#[test]
fn the_readme_search_finds_the_refund_policy() {
    let config = example_config();
    let input = r#"{"source":"handbook","query":"refund"}"#;
    let run = warden(&[
        "call", "--config", &config, "--agent", "support", "files", "search", "--input", input,
    ]);
    run.assert_code(0);
    let matches = run.json()["matches"].as_array().unwrap().clone();
    assert!(
        matches
            .iter()
            .any(|m| m["path"] == "refunds.md" && m["text"].as_str().unwrap().contains("30 days")),
        "{matches:?}"
    );
}

#[test]
fn the_example_agent_may_not_write_the_handbook() {
    let config = example_config();
    let input = r#"{"source":"handbook","path":"refunds.md","text":"all refunds are instant"}"#;
    let run = warden(&[
        "call", "--config", &config, "--agent", "support", "files", "write", "--input", input,
    ]);
    run.assert_fails_with(3, "agents.support.tools");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/handbook/refunds.md"),
    )
    .unwrap();
    assert!(text.contains("30 days"));
}
