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

const AUDIT_KEY: &str = "an-audit-key-of-at-least-32-bytes-kept-outside-the-store";

/// A workspace whose config signs the audit log with the key in `WARDEN_AUDIT_KEY`, and a second
/// config, `plain.toml`, that reads the same store without the key.
fn signed_workspace_with_records(calls: usize) -> Workspace {
    let ws = Workspace::new();
    ws.write("handbook/a.md", "a");
    let config = r#"
        [state]
        url = "sqlite://state/warden.db"
        audit_key_env = "WARDEN_AUDIT_KEY"
        [plugins.files]
        path = "{plugins}/files.wasm"
        max = ["dir:*:ro"]
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [agents.support]
        tools = ["files/*"]
        grants = ["handbook:ro"]
        "#;
    ws.config(config);
    let plain = std::fs::read_to_string(ws.path().join("warden.toml"))
        .unwrap()
        .replace("audit_key_env = \"WARDEN_AUDIT_KEY\"", "");
    ws.write("plain.toml", &plain);
    for _ in 0..calls {
        ws.warden_with_env(
            &[
                "call",
                "--config",
                "warden.toml",
                "--agent",
                "support",
                "files",
                "read",
                "--input",
                r#"{"source":"handbook","path":"a.md"}"#,
            ],
            &[("WARDEN_AUDIT_KEY", AUDIT_KEY)],
        )
        .assert_code(0);
    }
    ws
}

fn verify(ws: &Workspace, config: &str, extra: &[&str]) -> crate::common::Run {
    let mut args = vec!["audit", "verify", "--config", config];
    args.extend_from_slice(extra);
    ws.warden_with_env(&args, &[("WARDEN_AUDIT_KEY", AUDIT_KEY)])
}

/// The attacker's view of the record hash: sha256 over the length-prefixed fields, as the
/// source code says. What they cannot compute is the HMAC with the audit key.
fn plain_hash(r: &[rusqlite::types::Value]) -> String {
    use sha2::{Digest, Sha256};
    let text = |v: &rusqlite::types::Value| match v {
        rusqlite::types::Value::Integer(i) => i.to_string(),
        rusqlite::types::Value::Text(t) => t.clone(),
        other => panic!("unexpected column {other:?}"),
    };
    // Columns: seq, at_ms, tenant, agent, session, plugin, tool, call_id, capability, target,
    // outcome, detail, prev_hash, hash. The hash input starts with prev_hash.
    let mut fields = vec![text(&r[12])];
    fields.extend(r[..12].iter().map(text));
    let mut h = Sha256::new();
    for f in fields {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Drops the triggers, deletes `victims`, renumbers the rest and rehashes every record from the
/// first victim on, so the chain links up again.
fn rewrite_without_key(db_path: &std::path::Path, victims: &[i64]) {
    let db = rusqlite::Connection::open(db_path).unwrap();
    let mut rows: Vec<Vec<rusqlite::types::Value>> = {
        let mut stmt = db.prepare("SELECT * FROM audit_log ORDER BY seq").unwrap();
        stmt.query_map([], |r| (0..14).map(|i| r.get(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let first = *victims.iter().min().unwrap();
    let seq_of = |r: &[rusqlite::types::Value]| match r[0] {
        rusqlite::types::Value::Integer(s) => s,
        _ => unreachable!("seq is an integer"),
    };
    rows.retain(|r| !victims.contains(&seq_of(r)));
    let mut prev = rows
        .iter()
        .take_while(|r| seq_of(r) < first)
        .last()
        .map(|r| match &r[13] {
            rusqlite::types::Value::Text(t) => t.clone(),
            _ => unreachable!("hash is text"),
        })
        .unwrap_or_else(|| "0".repeat(64));
    for (i, r) in rows.iter_mut().enumerate() {
        let seq = i as i64 + 1;
        if seq < first {
            continue;
        }
        r[0] = rusqlite::types::Value::Integer(seq);
        r[12] = rusqlite::types::Value::Text(prev.clone());
        let hash = plain_hash(r);
        r[13] = rusqlite::types::Value::Text(hash.clone());
        prev = hash;
    }
    db.execute_batch(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log;",
    )
    .unwrap();
    for r in &rows {
        db.execute(
            "INSERT INTO audit_log VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            rusqlite::params_from_iter(r.iter()),
        )
        .unwrap();
    }
}

#[test]
fn a_rewrite_without_the_audit_key_is_caught_with_the_key() {
    let ws = signed_workspace_with_records(3);
    verify(&ws, "warden.toml", &[]).assert_code(0);
    // Delete record 3, renumber 4.. down, rehash from 3 with plain sha256: the links hold.
    rewrite_without_key(&ws.path().join("state/warden.db"), &[3]);
    let run = verify(&ws, "plain.toml", &[]);
    run.assert_code(0);
    assert!(run.stdout.contains("5 records"), "{run:#?}");
    let run = verify(&ws, "warden.toml", &[]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("record 3") && run.stderr.contains("not signed"),
        "{run:#?}"
    );
}

#[test]
fn a_whole_rewrite_without_the_audit_key_is_caught_with_the_key() {
    let ws = signed_workspace_with_records(2);
    rewrite_without_key(&ws.path().join("state/warden.db"), &[1]);
    verify(&ws, "plain.toml", &[]).assert_code(0);
    let run = verify(&ws, "warden.toml", &[]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stderr.contains("record 1"), "{run:#?}");
}

#[test]
fn a_checkpoint_catches_the_newest_records_deleted() {
    let ws = workspace_with_records();
    let out = ws.path().join("outside/checkpoints.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let out = out.to_str().unwrap();
    let run = ws.warden(&[
        "audit",
        "checkpoint",
        "--config",
        "warden.toml",
        "--out",
        out,
    ]);
    run.assert_code(0);
    assert!(run.stdout.contains("record 4"), "{run:#?}");
    verify(&ws, "warden.toml", &["--checkpoint", out]).assert_code(0);
    let db = rusqlite::Connection::open(ws.path().join("state/warden.db")).unwrap();
    db.execute_batch("DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq >= 3;")
        .unwrap();
    verify(&ws, "warden.toml", &[]).assert_code(0);
    let run = verify(&ws, "warden.toml", &["--checkpoint", out]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("record 3") && run.stderr.contains("cut short"),
        "{run:#?}"
    );
}

#[test]
fn a_checkpoint_catches_a_rewritten_chain() {
    let ws = workspace_with_records();
    let run = ws.warden(&["audit", "checkpoint", "--config", "warden.toml"]);
    run.assert_code(0);
    let line: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(line["seq"], 4, "{run:#?}");
    let out = ws.write("checkpoints.jsonl", &format!("{}\n", run.stdout.trim()));
    rewrite_without_key(&ws.path().join("state/warden.db"), &[2]);
    // The rewritten log grows again past the checkpoint, so only the hash can tell.
    ws.call(
        "support",
        "files",
        "read",
        r#"{"source":"handbook","path":"a.md"}"#,
    )
    .assert_code(0);
    verify(&ws, "warden.toml", &[]).assert_code(0);
    let run = verify(&ws, "warden.toml", &["--checkpoint", out.to_str().unwrap()]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("record 4") && run.stderr.contains("rewritten"),
        "{run:#?}"
    );
}

#[test]
fn a_configured_audit_key_must_be_set_and_long_enough() {
    let ws = signed_workspace_with_records(0);
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    assert!(
        run.stderr.contains("state.audit_key_env") && run.stderr.contains("WARDEN_AUDIT_KEY"),
        "{run:#?}"
    );
    let run = ws.warden_with_env(
        &["config", "check", "--config", "warden.toml"],
        &[("WARDEN_AUDIT_KEY", "short")],
    );
    run.assert_code(7);
    assert!(
        run.stderr.contains("at least 32") && !run.stderr.contains("short"),
        "{run:#?}"
    );
    ws.warden_with_env(
        &["config", "check", "--config", "warden.toml"],
        &[("WARDEN_AUDIT_KEY", AUDIT_KEY)],
    )
    .assert_code(0);
}
