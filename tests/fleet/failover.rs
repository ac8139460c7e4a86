//! The failover test (issue 14, item 6), with the stateless-host check (item 1): three hosts on
//! one PostgreSQL database, 30 tasks across them; one host is killed with SIGKILL while its
//! calls are in flight, another is stopped (SIGSTOP) for longer than the lease and continued.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::harness::{
    Api, Database, Fleet, Host, HostSpec, Incident, LEASE_MS, Started, check_runs, files_under,
    fleet_script, held_by, now_ms, postgres_url, read_executions, read_journal, read_leases,
    serial, tails, task_input, wait_all,
};
use crate::model::FakeModel;

/// How many tasks.
const TASKS: usize = 30;
/// How long the paused host stays stopped: well past its lease.
const PAUSE: Duration = Duration::from_millis(LEASE_MS * 2 + 1_000);
/// How long every task may take to end, from the first start.
const DEADLINE: Duration = Duration::from_secs(120);

/// Writes `text` to the process's stderr directly, past the test harness's capture, so the CI
/// log shows it even when the test passes.
pub fn report(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// The model turn a ledger label (`t{task}-{turn}-{call}`) belongs to.
fn turn_of(label: &str) -> Option<usize> {
    label.split('-').nth(1)?.parse().ok()
}

/// Waits (at most `deadline`) until the ledger shows an execution on `host` that has not
/// finished, of a second or later turn (so its task has journaled results already, which must
/// not run again); returns it.
fn wait_in_flight(
    ledger: &str,
    host: &str,
    deadline: Duration,
    hosts: &mut [Host],
) -> crate::harness::Execution {
    let start = Instant::now();
    loop {
        if let Some(x) = read_executions(ledger)
            .unwrap_or_default()
            .into_iter()
            .find(|x| x.host == host && x.finished_ms.is_none() && turn_of(&x.label) >= Some(1))
        {
            return x;
        }
        for h in hosts.iter_mut() {
            assert!(
                h.running(),
                "host {} exited while the test waited for a call in flight on {host}:\n{}",
                h.name,
                h.tail(40)
            );
        }
        assert!(
            start.elapsed() < deadline,
            "no call was in flight on {host} within {} s; the ledger: {:#?}\nthe journal: {:#?}\n{}",
            deadline.as_secs(),
            read_executions(ledger),
            read_journal(ledger).map(|j| j.into_iter().rev().take(10).collect::<Vec<_>>()),
            tails(&hosts.iter().collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The sessions whose live lease `pid` holds.
fn sessions_held_by(db: &str, pid: i32) -> BTreeSet<String> {
    let now = now_ms();
    read_leases(db)
        .unwrap_or_else(|e| panic!("read the leases: {e}"))
        .into_iter()
        .filter(|l| l.holder.as_deref().is_some_and(|h| held_by(h, pid)) && l.expires_at_ms > now)
        .map(|l| l.session)
        .collect()
}

/// For the sessions in `held`, how long after `at_ms` another host first wrote to their
/// journal (the slowest of them), and how many were taken over.
fn recovery(db: &str, held: &BTreeSet<String>, at_ms: i64) -> (Option<i64>, usize) {
    let journal = read_journal(db).unwrap_or_default();
    let mut firsts: BTreeMap<&str, i64> = BTreeMap::new();
    for e in &journal {
        if held.contains(&e.session) && e.recorded_at_ms > at_ms {
            let first = firsts.entry(e.session.as_str()).or_insert(i64::MAX);
            *first = (*first).min(e.recorded_at_ms);
        }
    }
    (firsts.values().map(|t| t - at_ms).max(), firsts.len())
}

#[test]
fn three_hosts_finish_every_task_when_one_is_killed_and_another_paused_past_its_lease() {
    let _serial = serial();
    let Some(admin) = postgres_url("failover") else {
        return;
    };
    let db = Database::create(&admin, "failover");
    let model = FakeModel::start(fleet_script);
    // The ledger is a table of the same database.
    let fleet = Fleet::new(&db.url, &db.url, &model);
    let specs: Vec<HostSpec> = (1..=3)
        .map(|i| {
            let mut spec = fleet.host(&format!("fleet-h{i}"));
            // A compile cache in each host's own folder: what the stateless check allows.
            spec.cache = spec.workdir.join("cache");
            spec
        })
        .collect();
    let mut hosts = Host::start_all(&specs);
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let apis: Vec<Api> = hosts.iter().map(|h| h.api(&fleet.token)).collect();

    let first_start = Instant::now();
    let t_begin = now_ms();
    let tasks: Vec<Started> = (0..TASKS)
        .map(|n| {
            let h = n % hosts.len();
            let (session, task) = apis[h].start_task(&task_input(n));
            Started {
                n,
                host: names[h].clone(),
                session,
                task,
            }
        })
        .collect();

    // Kill -9 the first host while one of its calls runs.
    let victim_call = wait_in_flight(&db.url, &names[0], Duration::from_secs(60), &mut hosts);
    let held_by_killed = sessions_held_by(&db.url, hosts[0].pid);
    hosts[0].kill9();
    let t_kill = now_ms();

    // Then stop the second one while one of its calls runs, past its lease, and continue it.
    std::thread::sleep(Duration::from_millis(200));
    let paused_call = wait_in_flight(&db.url, &names[1], Duration::from_secs(30), &mut hosts[1..]);
    let held_by_paused = sessions_held_by(&db.url, hosts[1].pid);
    hosts[1].stop();
    let t_stop = now_ms();
    std::thread::sleep(PAUSE);
    let t_cont = now_ms();
    hosts[1].cont();

    // Every task ends; the third host, never harmed, answers for all of them.
    let (ends, t_done) = {
        let refs: Vec<&Host> = hosts.iter().collect();
        wait_all(
            &apis[2],
            &tasks,
            DEADLINE.saturating_sub(first_start.elapsed()),
            &refs,
            &db.url,
            &model,
        )
    };
    assert!(
        hosts[1].running() && hosts[2].running(),
        "a surviving host exited:\n{}",
        tails(&hosts.iter().collect::<Vec<_>>())
    );
    // Let the paused host finish whatever it still had in hand before the ledger is read.
    std::thread::sleep(Duration::from_millis(LEASE_MS));

    let refs: Vec<&Host> = hosts.iter().collect();
    let incidents = [
        Incident {
            what: format!("the kill -9 of {}", names[0]),
            host: Some(names[0].clone()),
            at_ms: t_kill,
        },
        Incident {
            what: format!("the SIGSTOP of {}", names[1]),
            host: Some(names[1].clone()),
            at_ms: t_stop,
        },
    ];
    // The paused host started nothing for the sessions it held once it woke.
    let executions = read_executions(&db.url).unwrap_or_default();
    let after_wake: Vec<_> = executions
        .iter()
        .filter(|x| x.host == names[1] && x.started_ms >= t_cont)
        .collect();
    let fenced_out: Vec<_> = after_wake
        .iter()
        .filter(|x| held_by_paused.contains(&x.session))
        .collect();
    if !fenced_out.is_empty() {
        let sessions: BTreeSet<&str> = fenced_out.iter().map(|x| x.session.as_str()).collect();
        let journals: Vec<String> = read_journal(&db.url)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| sessions.contains(e.session.as_str()))
            .map(|e| {
                format!(
                    "{} step {} {} token {} at {} (t_cont{:+} ms) {}",
                    e.session,
                    e.step,
                    e.kind,
                    e.token,
                    e.recorded_at_ms,
                    e.recorded_at_ms - t_cont,
                    e.call_id.unwrap_or_default()
                )
            })
            .collect();
        let leases: Vec<_> = read_leases(&db.url)
            .unwrap_or_default()
            .into_iter()
            .filter(|l| sessions.contains(l.session.as_str()))
            .collect();
        panic!(
            "{} woke at {t_cont} and started {} call(s) for sessions it held when it was stopped \
             (its lease had lapsed and been taken over): {fenced_out:#?}\nsessions it held: \
             {held_by_paused:?}\ntheir journals:\n{}\ntheir leases now: {leases:#?}\n{}",
            names[1],
            fenced_out.len(),
            journals.join("\n"),
            tails(&refs)
        );
    }
    // Nor anything at all while it was stopped (a sanity check of the clock).
    let while_stopped: Vec<_> = executions
        .iter()
        .filter(|x| x.host == names[1] && x.started_ms > t_stop + 50 && x.started_ms < t_cont)
        .collect();
    assert!(
        while_stopped.is_empty(),
        "{} started calls while stopped: {while_stopped:#?}",
        names[1]
    );
    let checked = check_runs(&db.url, &db.url, &tasks, &ends, &incidents, &refs);
    // The killed host's sessions were taken over.
    let taken_over = tasks
        .iter()
        .filter(|t| held_by_killed.contains(&t.session))
        .count();
    assert!(
        !held_by_killed.is_empty() && taken_over == held_by_killed.len(),
        "the killed host held {held_by_killed:?}"
    );

    let audit = fleet.verify_audit(&refs);

    // Stateless hosts: each one's folder holds nothing but its compile cache.
    let mut disk = Vec::new();
    for h in &hosts {
        let files = files_under(&h.workdir);
        let stray: Vec<_> = files.iter().filter(|p| !p.starts_with("cache")).collect();
        assert!(
            stray.is_empty(),
            "host {} wrote outside its compile cache, in {}: {stray:?}",
            h.name,
            h.workdir.display()
        );
        assert!(
            files.iter().any(|p| p.starts_with("cache")),
            "host {} compiled the counter into no cache at {}",
            h.name,
            h.workdir.join("cache").display()
        );
        disk.push(format!(
            "{}: {} entries, all under cache/",
            h.name,
            files.len()
        ));
    }

    let (kill_recovery, kill_sessions) = recovery(&db.url, &held_by_killed, t_kill);
    let (pause_recovery, pause_sessions) = recovery(&db.url, &held_by_paused, t_stop);
    let resumes: Vec<String> = hosts
        .iter()
        .flat_map(|h| {
            h.stderr_lines()
                .into_iter()
                .filter(|(_, l)| l.contains("resuming task"))
                .map(move |(at, _)| format!("{}@+{}ms", h.name, at - t_kill))
        })
        .collect();
    let woke_lines: Vec<String> = hosts[1]
        .stderr_lines()
        .into_iter()
        .filter(|(at, _)| *at >= t_cont)
        .map(|(_, l)| l)
        .take(8)
        .collect();
    report(&format!(
        "\n=== fleet failover summary ===\n\
         tasks: {TASKS} answered across {hosts} hosts, all done {done} ms after the first start\n\
         tool calls: {calls} journaled, {execs} executions; executions per host: {per_host:?}\n\
         killed {killed} at +{kill} ms (a call of {victim} in flight), holding {nk} session(s); \
         another host wrote to all {kill_sessions} of them within {kill_recovery:?} ms\n\
         stopped {paused} at +{stop} ms for {pause} ms (a call of {paused_label} in flight), \
         holding {np} session(s); taken over ({pause_sessions}) within {pause_recovery:?} ms; \
         after SIGCONT it started {woke} call(s), none for its old sessions\n\
         duplicates ({ndup}): {dups}\n\
         resumptions seen on stderr: {resumes:?}\n\
         the paused host's stderr after SIGCONT: {woke_lines:?}\n\
         audit verify: {audit}\n\
         disk: {disk:?}\n",
        hosts = hosts.len(),
        done = t_done - t_begin,
        calls = checked.calls,
        execs = checked.executions,
        per_host = checked.per_host,
        killed = names[0],
        kill = t_kill - t_begin,
        victim = victim_call.label,
        nk = held_by_killed.len(),
        paused = names[1],
        stop = t_stop - t_begin,
        pause = t_cont - t_stop,
        paused_label = paused_call.label,
        np = held_by_paused.len(),
        woke = after_wake.len(),
        ndup = checked.duplicates.len(),
        dups = if checked.duplicates.is_empty() {
            "none".to_string()
        } else {
            checked.duplicates.join("\n  ")
        },
    ));
    model.assert_script_ok();
}
