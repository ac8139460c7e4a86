//! A rolling upgrade (issue 14, item 3): two hosts on version N serve; `warden_next` (N+1, one
//! more additive migration) starts on the same database and migrates it; the N hosts keep
//! serving; a new N host refuses the newer schema with a clear message; N+1 serves too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::WARDEN;
use crate::failover::report;
use crate::harness::{
    Api, Database, Fleet, Host, fleet_script, postgres_url, schema_version, serial, tails,
    task_answer, task_input,
};
use crate::model::FakeModel;

/// `target/release/examples/warden_next`, next to the `warden` under test.
fn warden_next() -> PathBuf {
    let warden = PathBuf::from(WARDEN);
    let path = warden
        .parent()
        .expect("the binary's folder")
        .join("examples")
        .join("warden_next");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test --release` builds it from host/examples/warden_next.rs",
        path.display()
    );
    path
}

/// Runs scripted task `n` on each of `apis` at once and waits (at most 60 s) until each answered.
fn run_tasks(apis: &[(&Api, &str)], n: usize, hosts: &[&Host]) {
    let started: Vec<_> = apis
        .iter()
        .enumerate()
        .map(|(i, (api, name))| (api, *name, n + i, api.start_task(&task_input(n + i))))
        .collect();
    let start = Instant::now();
    for (api, name, n, (session, task)) in started {
        loop {
            let body = api.task(&session, &task).json();
            if body["status"] == "answered" {
                assert_eq!(body["answer"], task_answer(n).as_str(), "{body}");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "task #{n} on {name} did not finish within 60 s: {body}\n{}",
                tails(hosts)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_rolling_upgrade_migrates_while_old_hosts_serve_and_a_new_old_host_refuses() {
    let _serial = serial();
    let Some(admin) = postgres_url("upgrade") else {
        return;
    };
    let next_binary = warden_next();
    let db = Database::create(&admin, "upgrade");
    let model = FakeModel::start(fleet_script);
    let fleet = Fleet::new(&db.url, &db.url, &model);

    let old = Host::start_all(&[fleet.host("old-1"), fleet.host("old-2")]);
    let old_apis: Vec<Api> = old.iter().map(|h| h.api(&fleet.token)).collect();
    let before = schema_version(&db.url);
    assert!(
        before > 0,
        "the N hosts migrated the database (warden_schema)"
    );
    run_tasks(
        &[(&old_apis[0], "old-1"), (&old_apis[1], "old-2")],
        0,
        &old.iter().collect::<Vec<_>>(),
    );

    // N+1 joins and migrates.
    let mut spec = fleet.host("next");
    spec.binary = next_binary.clone();
    let next = Host::start(&spec);
    let after = schema_version(&db.url);
    let all: Vec<&Host> = old.iter().chain([&next]).collect();
    assert_eq!(
        after,
        before + 1,
        "warden_next applies one more migration (schema {before} before it started)\n{}",
        tails(&all)
    );

    // The N hosts keep serving: a task started and finished on each after the migration.
    run_tasks(
        &[(&old_apis[0], "old-1"), (&old_apis[1], "old-2")],
        10,
        &all,
    );
    // N+1 serves too.
    let next_api = next.api(&fleet.token);
    run_tasks(&[(&next_api, "next")], 20, &all);

    // A new N host refuses the newer schema.
    let refused = match Host::try_start(&fleet.host("old-3")) {
        Ok(host) => panic!(
            "a host on version N started on a database at schema {after} (newer than its own):\n{}",
            host.tail(40)
        ),
        Err(refused) => refused,
    };
    let code = refused.status.and_then(|s| s.code());
    assert!(
        code.is_some_and(|c| c != 0),
        "the refusing host should exit non-zero by itself: {refused:#?}"
    );
    assert!(
        refused.stderr.contains("newer than this binary's"),
        "the refusal should say the schema is `newer than this binary's`: {refused:#?}"
    );
    // The running N hosts still serve after the refusal.
    run_tasks(&[(&old_apis[0], "old-1")], 30, &all);
    model.assert_script_ok();
    report(&format!(
        "\n=== fleet rolling upgrade summary ===\n\
         schema {before} -> {after} by {}; N hosts served before and after; a new N host exited \
         {code:?}: {}\n",
        next_binary.display(),
        refused
            .stderr
            .lines()
            .find(|l| l.contains("newer than"))
            .unwrap_or("")
    ));
}
