//! Two hosts started with different configs (issue 14, "Bad input"): the one that joins says,
//! on stderr, which keys differ from each live host's; a host whose config agrees says nothing.

use std::time::{Duration, Instant};

use crate::harness::{
    Database, Fleet, Host, fleet_script, postgres_url, serial, tails, task_answer, task_input,
};
use crate::model::FakeModel;

/// The start of the line a host prints for each live host whose config differs.
const DIFFERS: &str = "warning: this host's config differs from host ";

/// The keys the second config changes.
const CHANGED: [&str; 2] = ["agents.counting.tools", "state.session_lease_ms"];
/// Keys it leaves alone, which must not be named.
const UNCHANGED: [&str; 4] = [
    "plugins.counter",
    "sources.ledger",
    "models.fast",
    "tenants.acme",
];

fn differs_lines(host: &Host) -> Vec<String> {
    host.stderr()
        .lines()
        .filter(|l| l.contains(DIFFERS))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_host_whose_config_differs_names_the_keys_and_one_that_agrees_says_nothing() {
    let _serial = serial();
    let Some(admin) = postgres_url("configs") else {
        return;
    };
    let db = Database::create(&admin, "configs");
    let model = FakeModel::start(fleet_script);
    let fleet = Fleet::new(&db.url, &db.url, &model);

    // Two hosts on the same config file: the second finds the first live and agrees with it.
    // Every host gets the same environment too (the ledger's URL unchanged), so that only the
    // files differ.
    let host = |name: &str| {
        let mut spec = fleet.host(name);
        spec.env = fleet.env("fleet");
        spec
    };
    let first = Host::start(&host("same-a"));
    let second = Host::start(&host("same-b"));
    // The comparison is made at start; give a late one a moment.
    std::thread::sleep(Duration::from_millis(1_000));
    for h in [&first, &second] {
        assert!(
            differs_lines(h).is_empty(),
            "host {} has the same config as the others, yet says it differs:\n{}",
            h.name,
            h.stderr()
        );
    }

    // A third with another tool list and another lease.
    let mut other = fleet.spec.clone();
    other.tools = r#"["counter/count"]"#.to_string();
    other.lease_ms = 3_000;
    let mut spec = host("differs-c");
    spec.config = fleet.write_config("other.toml", &other);
    let third = Host::start(&spec);
    let start = Instant::now();
    let lines = loop {
        let lines = differs_lines(&third);
        if lines.len() >= 2 || start.elapsed() > Duration::from_secs(10) {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let all = tails(&[&first, &second, &third]);
    assert_eq!(
        lines.len(),
        2,
        "the host with another config should print one `{DIFFERS}…` line for each of the two \
         live hosts; it printed {lines:#?}\n{all}"
    );
    for line in &lines {
        for key in CHANGED {
            assert!(
                line.contains(key),
                "the line does not name `{key}`, which differs: {line}\n{all}"
            );
        }
        for key in UNCHANGED {
            assert!(
                !line.contains(key),
                "the line names `{key}`, which is the same in both configs: {line}\n{all}"
            );
        }
    }
    let ids: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.split(DIFFERS).nth(1))
        .filter_map(|rest| rest.split("'s at:").next())
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "one line per other host, each naming it: {lines:#?}"
    );

    // Differing configs are reported, not refused: the odd host serves.
    let api = third.api(&fleet.token);
    let (session, task) = api.start_task(&task_input(0));
    let start = Instant::now();
    loop {
        let body = api.task(&session, &task).json();
        if body["status"] == "answered" {
            assert_eq!(body["answer"], task_answer(0).as_str(), "{body}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the task on the host with the odd config did not finish: {body}\n{}",
            tails(&[&third])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    model.assert_script_ok();
}
