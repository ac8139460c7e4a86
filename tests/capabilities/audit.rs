//! The audit log: `warden audit verify` checks the hash chain and names the first bad record.

use crate::workspace::{Workspace, audit_records};

fn workspace_with_records() -> Workspace {
    let ws = Workspace::new();
    ws.write("handbook/a.md", "a");
    ws.config(
        r#"
        [state]
        url = "sqlite://state/warden.db"
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
    for _ in 0..2 {
        ws.call(
            "support",
            "files",
            "read",
            r#"{"source":"handbook","path":"a.md"}"#,
        )
        .assert_code(0);
    }
    ws
}

#[test]
fn an_untouched_log_verifies() {
    let ws = workspace_with_records();
    let run = ws.warden(&["audit", "verify", "--config", "warden.toml"]);
    run.assert_code(0);
    assert!(run.stdout.contains("4 records"), "{run:#?}");
}

#[test]
fn an_edited_record_is_detected_and_named() {
    let ws = workspace_with_records();
    let db = rusqlite::Connection::open(ws.path().join("state/warden.db")).unwrap();
    let err = db
        .execute("UPDATE audit_log SET outcome = 'denied' WHERE seq = 2", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // A deliberate tamperer drops the guard first; the chain still tells.
    db.execute_batch(
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET outcome = 'denied' WHERE seq = 2;",
    )
    .unwrap();
    let run = ws.warden(&["audit", "verify", "--config", "warden.toml"]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stderr.contains("record 2"), "{run:#?}");
}

#[test]
fn a_deleted_record_is_detected_and_named() {
    let ws = workspace_with_records();
    let db = rusqlite::Connection::open(ws.path().join("state/warden.db")).unwrap();
    db.execute_batch("DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 3;")
        .unwrap();
    let run = ws.warden(&["audit", "verify", "--config", "warden.toml"]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stderr.contains("record 3"), "{run:#?}");
}

#[test]
fn tail_shows_the_last_records_as_json() {
    let ws = workspace_with_records();
    let run = ws.warden(&[
        "audit",
        "tail",
        "--config",
        "warden.toml",
        "--json",
        "-n",
        "2",
    ]);
    let lines = audit_records(&run);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["seq"], 3);
    for key in [
        "tenant",
        "agent",
        "session",
        "plugin",
        "tool",
        "call_id",
        "capability",
        "target",
        "outcome",
        "at_ms",
        "hash",
        "prev_hash",
    ] {
        assert!(lines[1].get(key).is_some(), "missing {key}: {:?}", lines[1]);
    }
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
}
