//! `warden session delete`, and the refusals every session command shares: a malformed id, an
//! unknown one, and another tenant's session (refused exactly like an unknown one).

use warden::state::StoreError;
use warden::state::memory::Namespace;
use warden::state::sessions::SessionId;

use crate::fixture::{Fixture, Kind};
use crate::on_both_stores;

on_both_stores!(
    delete_removes_journal_memory_and_lease_but_keeps_the_audit_log,
    a_session_with_a_live_lease_is_deleted_only_with_force,
    delete_asks_for_yes_without_a_terminal,
    malformed_and_unknown_ids_are_refused_with_exit_2,
    another_tenants_session_is_refused_like_a_missing_one,
);

async fn delete_removes_journal_memory_and_lease_but_keeps_the_audit_log(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "delete").await else {
        return;
    };
    let w = fx.task("local", "support").await;
    let kept = fx.task("local", "support").await;
    let id = w.session.id.to_string();
    let audit_before = fx.audit_records().await;
    assert_eq!(audit_before, 2);

    let run = fx.warden(&["session", "delete", &id, "--yes"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains(&format!("deleted session {id}")),
        "{run:#?}"
    );

    assert_eq!(
        fx.agents.get_session("local", w.session.id).await.unwrap(),
        None
    );
    assert!(matches!(
        fx.agents.read_journal("local", w.session.id, 0, 0).await,
        Err(StoreError::NotFound(_))
    ));
    let memory = fx
        .agents
        .list_memory("local", &Namespace::Session(w.session.id), "", None, 0)
        .await
        .unwrap();
    assert!(
        memory.entries.is_empty(),
        "the session's memory survived: {memory:?}"
    );
    // The lease went with the session: asking for it finds no session at all.
    assert!(matches!(
        fx.agents.current_lease("local", w.session.id).await,
        Err(StoreError::NotFound(_))
    ));
    // The agent's memory spans its sessions, and the other session is untouched.
    let agent = fx
        .agents
        .list_memory("local", &Namespace::Agent("support".into()), "", None, 0)
        .await
        .unwrap();
    assert_eq!(agent.entries.len(), 1);
    assert_eq!(
        fx.agents
            .read_journal("local", kept.session.id, 0, 0)
            .await
            .unwrap()
            .len(),
        8
    );

    // The audit log keeps the deleted session's records, and its chain still verifies.
    assert_eq!(fx.audit_records().await, audit_before);
    let tail = fx.warden(&["audit", "tail", "--json"]);
    tail.assert_code(0);
    assert!(
        tail.stdout.contains(&id),
        "the deleted session's audit record is gone"
    );
    fx.warden(&["audit", "verify"]).assert_code(0);

    let again = fx.warden(&["session", "show", &id]);
    again.assert_fails_with(2, &format!("tenant `local` has no session {id}"));
    let listing = fx.warden(&["session", "list", "--json"]);
    listing.assert_code(0);
    assert!(!listing.stdout.contains(&id));

    let json = fx.warden(&[
        "session",
        "delete",
        &kept.session.id.to_string(),
        "--yes",
        "--json",
    ]);
    json.assert_code(0);
    assert_eq!(json.json()["deleted"]["id"], kept.session.id.to_string());
}

async fn a_session_with_a_live_lease_is_deleted_only_with_force(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "delete_busy").await else {
        return;
    };
    let w = fx.task("local", "support").await;
    let lease = fx.lease("local", &w.session, "host-a/task-7").await;
    let id = w.session.id.to_string();

    let refused = fx.warden(&["session", "delete", &id, "--yes"]);
    refused.assert_fails_with(3, "`host-a/task-7` holds its lease until");
    assert!(refused.error_line().contains("--force"));
    assert!(
        fx.agents
            .get_session("local", w.session.id)
            .await
            .unwrap()
            .is_some()
    );
    // The refusal did not touch the lease.
    assert_eq!(
        fx.agents
            .current_lease("local", w.session.id)
            .await
            .unwrap(),
        Some(lease.clone())
    );

    let forced = fx.warden(&["session", "delete", &id, "--yes", "--force"]);
    forced.assert_code(0);
    assert!(
        forced.stderr.contains("warning: deleting session")
            && forced.stderr.contains("host-a/task-7"),
        "{forced:#?}"
    );
    assert_eq!(
        fx.agents.get_session("local", w.session.id).await.unwrap(),
        None
    );
    // The task that held the lease can write no further step.
    let write = fx
        .agents
        .append_steps(
            "local",
            w.session.id,
            8,
            lease.token,
            &[crate::fixture::step(
                w.task,
                warden::state::journal::StepKind::FinalAnswer,
                None,
                serde_json::json!({"text": "late"}),
            )],
        )
        .await;
    assert!(write.is_err(), "a write after the delete landed: {write:?}");

    // A lapsed lease does not block a delete.
    let other = fx.task("local", "support").await;
    fx.agents
        .acquire_lease(
            "local",
            other.session.id,
            "host-b/dead",
            std::time::Duration::from_millis(10),
        )
        .await
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    fx.warden(&["session", "delete", &other.session.id.to_string(), "--yes"])
        .assert_code(0);
}

async fn delete_asks_for_yes_without_a_terminal(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "delete_yes").await else {
        return;
    };
    let w = fx.task("local", "support").await;
    let id = w.session.id.to_string();
    fx.warden(&["session", "delete", &id])
        .assert_fails_with(2, "pass --yes");
    assert!(
        fx.agents
            .get_session("local", w.session.id)
            .await
            .unwrap()
            .is_some()
    );
}

async fn malformed_and_unknown_ids_are_refused_with_exit_2(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "bad_ids").await else {
        return;
    };
    fx.task("local", "support").await;
    // `delete` with --yes, so what is refused is the id, not the missing confirmation.
    for command in [&["session", "show"][..], &["session", "delete", "--yes"]] {
        fn with<'a>(command: &[&'a str], id: &'a str) -> Vec<&'a str> {
            [command, &[id]].concat()
        }
        fx.warden(&with(command, "not-a-uuid"))
            .assert_fails_with(2, "`not-a-uuid` is not a session id");
        // Hostile text in the id is escaped in the message.
        let forged = fx.warden(&with(command, "x\u{1b}[31m\nerror: forged"));
        forged.assert_fails_with(2, r"x\u{1b}[31m\nerror: forged");
        assert_eq!(
            forged
                .stderr
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1
        );
        let unknown = SessionId::new().to_string();
        fx.warden(&with(command, &unknown))
            .assert_fails_with(2, &format!("tenant `local` has no session {unknown}"));
    }
}

async fn another_tenants_session_is_refused_like_a_missing_one(kind: Kind) {
    let Some(fx) = Fixture::new(kind, "tenants").await else {
        return;
    };
    let w = fx.task("tenant-a", "support").await;
    let id = w.session.id.to_string();
    let missing = SessionId::new().to_string();
    for command in [&["session", "show"][..], &["session", "delete", "--yes"]] {
        let theirs = fx.warden(&[command, &[id.as_str(), "--tenant", "tenant-b"]].concat());
        theirs.assert_code(2);
        let nobodys = fx.warden(&[command, &[missing.as_str(), "--tenant", "tenant-b"]].concat());
        nobodys.assert_code(2);
        assert_eq!(
            theirs.error_line().replace(&id, "ID"),
            nobodys.error_line().replace(&missing, "ID"),
            "another tenant's session must be refused exactly like a missing one"
        );
        assert!(theirs.stdout.is_empty());
    }
    let listing = fx.warden(&["session", "list", "--json", "--tenant", "tenant-b"]);
    listing.assert_code(0);
    assert_eq!(listing.json(), serde_json::json!([]));
    // Tenant A still has it, whole.
    let show = fx.warden(&["session", "show", &id, "--tenant", "tenant-a", "--json"]);
    show.assert_code(0);
    assert_eq!(show.json()["journal"].as_array().unwrap().len(), 8);
}
