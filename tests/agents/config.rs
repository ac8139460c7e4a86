//! The config every agent test writes is one `warden config check` accepts, on both model
//! protocols and both stores: a failing agent test is then about the loop, not its config.

use crate::model::{Conversation, FakeModel, Reply, Wire};
use crate::site::{Options, Site, Store};

fn check(store: Store, wire: Wire) {
    let model =
        FakeModel::start(|c: &Conversation| Reply::unexpected("config check asks no model", c));
    let Some(site) = Site::configure(
        "config_check",
        &model,
        Options {
            store,
            wire,
            ..Options::default()
        },
    ) else {
        return;
    };
    let run = site.warden(&["config", "check", "--config", "warden.toml"]);
    assert_eq!(
        run.code,
        0,
        "the agent tests' config (with `[state] session_lease_ms`, new in issue 11) does not \
         pass `warden config check`: {run:#?}\nconfig:\n{}",
        std::fs::read_to_string(site.path().join("warden.toml")).unwrap_or_default()
    );
    assert!(run.stdout.contains("ok"), "{run:#?}");
    assert!(model.received().is_empty());
}

#[test]
fn the_agent_tests_config_passes_config_check() {
    check(Store::Sqlite, Wire::OpenAi);
    check(Store::Sqlite, Wire::Anthropic);
}

#[test]
fn the_agent_tests_config_passes_config_check_on_postgres() {
    check(Store::Postgres, Wire::OpenAi);
}
