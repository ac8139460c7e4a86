//! Several real `warden` processes on one store at once: every call succeeds (no "database is
//! locked"), and the audit log they wrote together is one intact chain.

use std::path::Path;
use std::process::Command;

use crate::backend::{Kind, TestStore};
use crate::common::{run_command, warden_command};

/// How many `warden call` processes run at once.
const PROCESSES: usize = 8;

fn write_config(dir: &Path, state_url: &str) {
    std::fs::create_dir_all(dir.join("handbook")).unwrap();
    std::fs::write(dir.join("handbook/a.md"), "a").unwrap();
    let plugins = Path::new(env!("WARDEN_BUILT_PLUGINS"))
        .display()
        .to_string();
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            r#"
            [state]
            url = "{state_url}"
            [plugins.files]
            path = "{plugins}/files.wasm"
            max = ["dir:*:ro"]
            [sources.handbook]
            kind = "dir"
            path = "handbook"
            [agents.support]
            tools = ["files/*"]
            grants = ["handbook:ro"]
            "#
        ),
    )
    .unwrap();
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = warden_command(args);
    cmd.current_dir(dir).env_remove("WARDEN_CONFIG");
    cmd
}

const CALL: [&str; 9] = [
    "call",
    "--config",
    "warden.toml",
    "--agent",
    "support",
    "files",
    "read",
    "--input",
    r#"{"source":"handbook","path":"a.md"}"#,
];

async fn many_processes_append_to_one_chain(kind: Kind) {
    let Some(t) = TestStore::new(kind, "processes").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &t.config_url);
    // One call first, so the plugin's compiled form is cached and the rest start at once.
    let first = run_command(command(dir.path(), &CALL), None);
    first.assert_code(0);
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| command(dir.path(), &CALL).spawn().expect("spawn warden"))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent call failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let verify = run_command(
        command(dir.path(), &["audit", "verify", "--config", "warden.toml"]),
        None,
    );
    verify.assert_code(0);
    // Each call writes two records: its directory and the call itself.
    let expected = 2 * (PROCESSES + 1);
    assert!(
        verify
            .stdout
            .contains(&format!("audit log ok: {expected} records, chain intact")),
        "{verify:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_appending_to_one_sqlite_file_all_succeed_and_the_chain_verifies() {
    many_processes_append_to_one_chain(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_appending_to_one_postgres_store_all_succeed_and_the_chain_verifies() {
    many_processes_append_to_one_chain(Kind::Postgres).await;
}
