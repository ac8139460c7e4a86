//! Directory sources: a granted source is a preopen, and the sandbox refuses everything else.
//! Each test names one enforcement point and would fail if that check were removed.

use crate::workspace::{AUDIT_TAIL_JSON, Workspace, audit_records};

const SECRET: &str = "the-secret-outside-the-handbook";

/// A handbook the agent may read, a folder beside it that it may not, and a symlink inside the
/// handbook that points at the secret.
fn handbook(max: &str, grant: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "handbook/refunds.md",
        "Refunds take 5 days.\nAsk for the order number.\n",
    );
    ws.write(
        "handbook/policies/shipping.md",
        "Shipping is free over 50 EUR.\n",
    );
    let secret = ws.write("other/secret.txt", SECRET);
    std::os::unix::fs::symlink(&secret, ws.path().join("handbook/link.txt")).unwrap();
    ws.config(&format!(
        r#"
        [state]
        url = "sqlite://state.db"
        [plugins.files]
        path = "{{plugins}}/files.wasm"
        max = [{max}]
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [sources.other]
        kind = "dir"
        path = "other"
        [agents.support]
        tools = ["files/*"]
        grants = [{grant}]
        [agents.reader]
        tools = ["files/list"]
        grants = ["handbook:ro"]
        "#
    ));
    ws
}

fn read(ws: &Workspace, source: &str, path: &str) -> crate::common::Run {
    let input = serde_json::json!({"source": source, "path": path}).to_string();
    ws.call("support", "files", "read", &input)
}

#[test]
fn reads_a_file_in_a_granted_dir() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    let run = read(&ws, "handbook", "refunds.md");
    run.assert_code(0);
    assert_eq!(
        run.json()["text"],
        "Refunds take 5 days.\nAsk for the order number.\n"
    );
}

#[test]
fn lists_and_searches_a_granted_dir() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    let run = ws.call("support", "files", "list", r#"{"source":"handbook"}"#);
    run.assert_code(0);
    let names: Vec<String> = run.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"refunds.md".to_string()) && names.contains(&"policies".to_string()),
        "{names:?}"
    );
    let run = ws.call(
        "support",
        "files",
        "search",
        r#"{"source":"handbook","query":"free over"}"#,
    );
    run.assert_code(0);
    let matches = &run.json()["matches"];
    assert_eq!(matches[0]["path"], "policies/shipping.md");
    assert_eq!(matches[0]["line"], 1);
}

#[test]
fn denies_a_dir_that_is_not_configured() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    let run = read(&ws, "payroll", "salaries.csv");
    run.assert_fails_with(3, "`payroll`");
}

#[test]
fn denies_a_dir_the_agent_was_not_granted() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    let run = read(&ws, "other", "secret.txt");
    run.assert_fails_with(3, "other:ro");
    assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));
}

#[test]
fn denies_a_dir_outside_the_plugins_max() {
    let ws = handbook(r#""sql:*:ro""#, r#""handbook:ro""#);
    read(&ws, "handbook", "refunds.md").assert_fails_with(3, "handbook");
}

#[test]
fn refuses_a_path_that_climbs_out_with_dot_dot() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    let run = read(&ws, "handbook", "../other/secret.txt");
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(!run.stdout.contains(SECRET), "{run:#?}");
}

#[test]
fn refuses_an_absolute_path() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    let secret = ws.path().join("other/secret.txt");
    for path in ["/etc/passwd", secret.to_str().unwrap()] {
        let run = read(&ws, "handbook", path);
        assert_ne!(run.code, 0, "{path}: {run:#?}");
        assert!(
            !run.stdout.contains(SECRET) && !run.stdout.contains("root:"),
            "{path}: {run:#?}"
        );
    }
}

#[test]
fn refuses_a_symlink_that_points_outside() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    let run = read(&ws, "handbook", "link.txt");
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(!run.stdout.contains(SECRET), "{run:#?}");
}

#[test]
fn refuses_a_write_through_a_read_only_grant() {
    let ws = handbook(r#""dir:*:rw""#, r#""handbook:ro""#);
    let input = r#"{"source":"handbook","path":"new.md","text":"hello"}"#;
    ws.call("support", "files", "write", input)
        .assert_fails_with(3, "new.md");
    assert!(!ws.path().join("handbook/new.md").exists());
}

#[test]
fn refuses_a_write_when_the_plugins_max_is_read_only() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:rw""#);
    let input = r#"{"source":"handbook","path":"new.md","text":"hello"}"#;
    ws.call("support", "files", "write", input)
        .assert_fails_with(3, "new.md");
    assert!(!ws.path().join("handbook/new.md").exists());
}

#[test]
fn writes_through_a_read_write_grant() {
    let ws = handbook(r#""dir:*:rw""#, r#""handbook:rw""#);
    let input = r#"{"source":"handbook","path":"new.md","text":"hello"}"#;
    ws.call("support", "files", "write", input).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("handbook/new.md")).unwrap(),
        "hello"
    );
}

#[test]
fn denies_a_tool_outside_the_agents_tools() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    let input = r#"{"source":"handbook","path":"refunds.md"}"#;
    ws.call("reader", "files", "read", input)
        .assert_fails_with(3, "agents.reader.tools");
    ws.call("reader", "files", "list", r#"{"source":"handbook"}"#)
        .assert_code(0);
}

#[test]
fn audits_the_preopen_the_call_and_the_denial() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    read(&ws, "handbook", "refunds.md").assert_code(0);
    read(&ws, "other", "secret.txt").assert_code(3);
    let records = audit_records(&ws.warden(&AUDIT_TAIL_JSON));
    let has = |capability: &str, target: &str, outcome: &str| {
        records.iter().any(|r| {
            r["capability"] == capability && r["target"] == target && r["outcome"] == outcome
        })
    };
    assert!(has("dir", "handbook", "allowed"), "{records:#?}");
    assert!(has("call", "files/read", "allowed"), "{records:#?}");
    assert!(has("call", "files/read", "denied"), "{records:#?}");
    for r in &records {
        assert_eq!(r["agent"], "support");
        assert_eq!(r["plugin"], "files");
        assert!(!r["call_id"].as_str().unwrap().is_empty());
    }
}

/// Holds `BEGIN EXCLUSIVE` on a state store, as another process could, until dropped.
struct StoreLock(rusqlite::Connection);

impl StoreLock {
    fn take(db: &std::path::Path) -> StoreLock {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        StoreLock(conn)
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

/// Makes a file unwritable until dropped: `chattr +i` (which binds root too), else, when that
/// is not possible, mode 0444 on the file and 0555 on its folder.
struct Unwritable {
    path: std::path::PathBuf,
    immutable: bool,
}

impl Unwritable {
    fn make(path: &std::path::Path) -> Unwritable {
        use std::os::unix::fs::PermissionsExt as _;
        let immutable = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !immutable {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
            let dir = path.parent().unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        Unwritable {
            path: path.to_path_buf(),
            immutable,
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt as _;
        if self.immutable {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.path)
                .status();
        } else {
            let dir = self.path.parent().unwrap();
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o644));
        }
    }
}

#[test]
fn a_locked_audit_store_refuses_the_read_within_the_call_limit() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    let started = std::time::Instant::now();
    read(&ws, "handbook", "refunds.md").assert_code(0);
    let unlocked = started.elapsed();
    let _lock = StoreLock::take(&ws.path().join("state.db"));
    let started = std::time::Instant::now();
    let run = read(&ws, "handbook", "refunds.md");
    let locked = started.elapsed();
    run.assert_fails_with(1, "audit store");
    assert!(run.error_line().contains("state.db"), "{run:#?}");
    assert!(!run.stderr.contains("Refunds take"), "{run:#?}");
    // Two records wait for the lock (the directory's and the call's); each wait is bounded so
    // that a locked store cannot eat the call's 10 s limit.
    assert!(
        locked < unlocked + std::time::Duration::from_secs(4),
        "the refusal took {locked:?} (an unlocked call {unlocked:?}); {run:#?}"
    );
}

#[test]
fn an_unwritable_audit_store_refuses_the_read() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    read(&ws, "handbook", "refunds.md").assert_code(0);
    let _guard = Unwritable::make(&ws.path().join("state.db"));
    let run = read(&ws, "handbook", "refunds.md");
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(run.error_line().contains("state.db"), "{run:#?}");
    assert!(!run.stderr.contains("Refunds take"), "{run:#?}");
}

/// A read-write grant on `data`, beside the state store, for the planter plugin.
fn planter_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("data/crm.db", "not really a database");
    ws.write("data/notes.md", "notes");
    ws.config(
        r#"
        [state]
        url = "sqlite://state.db"
        [plugins.planter]
        path = "{plugins}/planter.wasm"
        max = ["dir:*:rw"]
        [sources.data]
        kind = "dir"
        path = "data"
        [agents.support]
        tools = ["planter/*"]
        grants = ["data:rw"]
        "#,
    );
    ws
}

fn plant(ws: &Workspace, link: &str, target: &str) -> String {
    let input = serde_json::json!({"link": link, "target": target, "replace": true}).to_string();
    let run = ws.call("support", "planter", "symlink", &input);
    run.assert_code(0);
    run.json()["result"].as_str().unwrap().to_string()
}

#[test]
fn a_plugin_cannot_plant_a_symlink_that_climbs_out_of_its_dir() {
    let ws = planter_workspace();
    for target in ["../state.db", "sub/../../state.db", "/etc/passwd"] {
        let result = plant(&ws, "/data/crm.db", target);
        assert!(result.starts_with("error"), "{target}: {result}");
        let planted = ws.path().join("data/crm.db").symlink_metadata();
        assert!(
            !planted.is_ok_and(|m| m.file_type().is_symlink()),
            "{target}: a symlink was planted"
        );
    }
    let records = audit_records(&ws.warden(&AUDIT_TAIL_JSON));
    assert!(
        records.iter().any(|r| r["capability"] == "dir"
            && r["target"] == "symlink"
            && r["outcome"] == "denied"
            && r["detail"].as_str().unwrap().contains("../state.db")),
        "{records:#?}"
    );
}

#[test]
fn a_plugin_may_plant_a_symlink_that_stays_inside_its_dir() {
    let ws = planter_workspace();
    assert_eq!(plant(&ws, "/data/alias.md", "notes.md"), "created");
    let link = ws.path().join("data/alias.md");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("notes.md")
    );
}

/// Has `planter`'s `tool` write `message`, and checks that the host's log shows it on one
/// line, as `escaped`, with no raw carriage return or terminal escape.
fn assert_logged_escaped(tool: &str, message: &str, escaped: &str) {
    let ws = planter_workspace();
    let input = serde_json::json!({ "message": message }).to_string();
    let run = ws.call("support", "planter", tool, &input);
    run.assert_code(0);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("forged host line"))
        .collect();
    assert_eq!(lines.len(), 1, "{run:#?}");
    assert!(lines[0].contains(escaped), "{run:#?}");
    assert!(
        !run.stderr.contains('\r') && !run.stderr.contains('\u{1b}'),
        "{run:#?}"
    );
}

#[test]
fn plugin_log_lines_cannot_forge_host_log_lines() {
    assert_logged_escaped(
        "log",
        "hello\nERROR warden: forged host line\r\u{1b}[2K\u{2028}done",
        "hello\\nERROR warden: forged host line\\r\\u{1b}[2K\\u{2028}done",
    );
}

#[test]
fn plugin_stderr_cannot_forge_host_log_lines() {
    // stdout and stderr are split into lines first; what is left inside a line is escaped.
    assert_logged_escaped(
        "stderr",
        "hello\rERROR warden: forged host line\u{1b}[2K\u{2028}done",
        "hello\\rERROR warden: forged host line\\u{1b}[2K\\u{2028}done",
    );
}

#[test]
fn a_plugin_may_log_up_to_the_cap_and_no_more() {
    let ws = planter_workspace();
    let log = |bytes: usize| {
        let message = format!("start{}end", "x".repeat(bytes));
        let input = serde_json::json!({ "message": message }).to_string();
        let run = ws.call_stdin("support", "planter", "log", &input);
        run.assert_code(0);
        run
    };
    // 200 KiB is within the 256 KiB a call may log: it reaches the log whole.
    let within = log(200 * 1024);
    assert!(
        within
            .stderr
            .contains(&format!("start{}end", "x".repeat(200 * 1024))),
        "a line within the cap was cut or dropped"
    );
    // Exactly the cap (the 8 bytes of `start` and `end` included) is still within it.
    let cap = warden::capabilities::log::MAX_LOG_BYTES;
    let at_cap = log(cap - 8);
    assert!(
        at_cap
            .stderr
            .contains(&format!("start{}end", "x".repeat(cap - 8))),
        "a line of exactly the cap was dropped"
    );
    // 300 KiB is past it: dropped, with one warning naming the cap.
    let past = log(300 * 1024);
    assert!(
        !past.stderr.contains("start"),
        "a line past the cap was logged"
    );
    assert!(
        past.stderr.contains(&format!(
            "more than {} bytes",
            warden::capabilities::log::MAX_LOG_BYTES
        )),
        "{}",
        &past.stderr[..past.stderr.len().min(2000)]
    );
}

/// Makes the store refuse new audit records of one capability, as a full disk or a broken store
/// would refuse them all, while every other record goes in.
fn refuse_records_of(ws: &Workspace, capability: &str) {
    let db = rusqlite::Connection::open(ws.path().join("state.db")).unwrap();
    db.execute_batch(&format!(
        "CREATE TRIGGER refuse_{capability} BEFORE INSERT ON audit_log WHEN NEW.capability = '{capability}' \
         BEGIN SELECT RAISE(ABORT, 'records of {capability} are refused'); END;"
    ))
    .unwrap();
}

#[test]
fn the_output_is_withheld_when_the_call_record_cannot_be_committed() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    read(&ws, "handbook", "refunds.md").assert_code(0);
    refuse_records_of(&ws, "call");
    let run = read(&ws, "handbook", "refunds.md");
    run.assert_fails_with(1, "audit store");
    assert!(!run.stderr.contains("Refunds take"), "{run:#?}");
}

#[test]
fn a_dir_whose_record_cannot_be_committed_is_not_opened() {
    let ws = handbook(r#""dir:*:ro""#, r#""handbook:ro""#);
    read(&ws, "handbook", "refunds.md").assert_code(0);
    refuse_records_of(&ws, "dir");
    let run = read(&ws, "handbook", "refunds.md");
    run.assert_fails_with(1, "audit store");
    assert!(!run.stderr.contains("Refunds take"), "{run:#?}");
    // The call itself is still on record, as failed, with the reason.
    let records = audit_records(&ws.warden(&AUDIT_TAIL_JSON));
    let last = records.last().unwrap();
    assert_eq!(last["capability"], "call", "{records:#?}");
    assert_eq!(last["outcome"], "failed", "{records:#?}");
    assert!(
        last["detail"].as_str().unwrap().contains("audit store"),
        "{records:#?}"
    );
}
