//! PostgreSQL restarts in the middle of a run (issue 14, "Bad input"): two hosts whose state
//! store is a private cluster of the test's own, which is restarted (`pg_ctl restart -m fast`)
//! while calls are in flight. The hosts reconnect, every task completes, nothing is lost and
//! no call whose result was journaled runs again. The ledger lives on the shared test server,
//! so that only the state store goes away.

use std::time::{Duration, Instant};

use crate::failover::report;
use crate::harness::{
    Cluster, Database, Fleet, Host, Incident, Started, check_runs, fleet_script, now_ms,
    postgres_bin, postgres_url, read_executions, serial, tails, task_input, wait_all,
};
use crate::model::FakeModel;

/// How many tasks.
const TASKS: usize = 10;

#[test]
fn hosts_ride_out_a_restart_of_their_postgresql() {
    let _serial = serial();
    let Some(bin) = postgres_bin() else {
        let why = "no initdb under /usr/lib/postgresql/*/bin, so no private cluster to restart";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why} (CI=true: this test must run in CI)");
        }
        println!("skipped: {why}");
        return;
    };
    let Some(admin) = postgres_url("pg_restart (its ledger)") else {
        return;
    };
    let ledger = Database::create(&admin, "restart_ledger");
    let cluster = Cluster::start(&bin);
    let state_url = cluster.url("postgres");
    let model = FakeModel::start(fleet_script);
    let fleet = Fleet::new(&state_url, &ledger.url, &model);
    let mut hosts = Host::start_all(&[fleet.host("restart-h1"), fleet.host("restart-h2")]);
    let apis: Vec<_> = hosts.iter().map(|h| h.api(&fleet.token)).collect();

    let first_start = Instant::now();
    let tasks: Vec<Started> = (0..TASKS)
        .map(|n| {
            let h = n % hosts.len();
            let (session, task) = apis[h].start_task(&task_input(n));
            Started {
                n,
                host: hosts[h].name.clone(),
                session,
                task,
            }
        })
        .collect();

    // Restart once a few calls ran and some are in flight.
    let start = Instant::now();
    loop {
        let xs = read_executions(&ledger.url).unwrap_or_default();
        if xs.len() >= 4 && xs.iter().any(|x| x.finished_ms.is_none()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no calls in flight within 60 s: {xs:#?}\n{}",
            tails(&hosts.iter().collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let t_restart = now_ms();
    cluster.restart();
    let t_back = now_ms();

    let refs: Vec<&Host> = hosts.iter().collect();
    let (ends, t_done) = wait_all(
        &apis[0],
        &tasks,
        Duration::from_secs(120).saturating_sub(first_start.elapsed()),
        &refs,
        &state_url,
        &model,
    );
    for h in hosts.iter_mut() {
        assert!(
            h.running(),
            "host {} exited after the restart:\n{}",
            h.name,
            h.tail(40)
        );
    }
    let refs: Vec<&Host> = hosts.iter().collect();
    let incidents = [Incident {
        what: "the restart of PostgreSQL".into(),
        host: None,
        at_ms: t_back,
    }];
    let checked = check_runs(&state_url, &ledger.url, &tasks, &ends, &incidents, &refs);
    let audit = fleet.verify_audit(&refs);
    report(&format!(
        "\n=== fleet PostgreSQL restart summary ===\n\
         tasks: {TASKS} answered on 2 hosts; PostgreSQL down for {down} ms; all done {done} ms \
         after it was back\n\
         tool calls: {calls} journaled, {execs} executions ({per_host:?})\n\
         duplicates ({ndup}): {dups:?}\n\
         audit verify: {audit}\n",
        down = t_back - t_restart,
        done = t_done - t_back,
        calls = checked.calls,
        execs = checked.executions,
        per_host = checked.per_host,
        ndup = checked.duplicates.len(),
        dups = checked.duplicates,
    ));
    model.assert_script_ok();
}
