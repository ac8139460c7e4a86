//! The Rust SDK (`warden-sdk`) from a project of its own: `warden plugin new --lang rust` outside
//! the checkout (the SDK by git) and inside it (by path), each built with cargo for
//! wasm32-wasip2 and called through the real `warden` binary; `lookup-customer`, written with
//! the SDK, on a real SQLite file with and without its grant; and the length of both examples.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::json;

use crate::common::{Run, run_command, warden_command};
use crate::toolchains::{build_rust_project, repo_root, sdk_git_repo};

/// The most lines the template's example and `lookup-customer` may take (issue 15).
const MAX_EXAMPLE_LINES: usize = 25;

/// `warden plugin new NAME --lang rust --dir DIR EXTRA...`, with `env` set.
fn new_rust_project(dir: &Path, name: &str, extra: &[&OsStr], env: &[(&str, &OsStr)]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "plugin".as_ref(),
        "new".as_ref(),
        name.as_ref(),
        "--lang".as_ref(),
        "rust".as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
    ];
    args.extend_from_slice(extra);
    let mut cmd = warden_command(&args);
    cmd.env_remove("WARDEN_SDK_GIT");
    for (key, value) in env {
        cmd.env(key, value);
    }
    run_command(cmd, None)
}

fn manifest(project: &Path) -> String {
    std::fs::read_to_string(project.join("Cargo.toml")).expect("the project's Cargo.toml")
}

#[test]
fn a_project_made_outside_the_checkout_gets_the_sdk_by_git_and_its_tool_answers() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let url = sdk_git_repo(&tmp.path().join("sdk-repo"));
    let project = tmp.path().join("git-greeter");
    // By the variable, as an author would set it once; `--sdk-git` is the same setting.
    let run = new_rust_project(
        &project,
        "git-greeter",
        &[],
        &[("WARDEN_SDK_GIT", url.as_ref())],
    );
    run.assert_code(0);
    assert!(run.stdout.contains("by git"), "{run:#?}");
    let manifest = manifest(&project);
    assert!(
        manifest.contains(&format!("warden-sdk = {{ git = \"{url}\" }}")),
        "{manifest}"
    );
    assert!(
        !project.join("wit").exists(),
        "a Rust project needs no wit/: the SDK carries the contract"
    );
    let lib = std::fs::read_to_string(project.join("src/lib.rs")).expect("src/lib.rs");
    assert!(
        !lib.contains("wit_bindgen"),
        "hand-written bindings:\n{lib}"
    );

    let component = build_rust_project(&project, "git-greeter");
    crate::new_project::assert_greets(&component, "git-greeter");
}

#[test]
fn a_project_made_inside_the_checkout_gets_the_sdk_by_path_and_its_tool_answers() {
    // target/ is inside the checkout (and ignored by git).
    let parent = repo_root().join("target/authors-projects");
    std::fs::create_dir_all(&parent).expect("create target/authors-projects");
    let tmp = tempfile::tempdir_in(&parent).expect("a temporary folder in the checkout");
    let project = tmp.path().join("path-greeter");
    let run = new_rust_project(&project, "path-greeter", &[], &[]);
    run.assert_code(0);
    let manifest = manifest(&project);
    assert!(
        manifest.contains("warden-sdk = { path = \"../../../../plugins/sdk\" }"),
        "{manifest}"
    );
    let readme = std::fs::read_to_string(project.join("README.md")).expect("the README");
    assert!(
        readme.contains("```sh\ncargo build --release\n```"),
        "{readme}"
    );
    assert!(readme.contains("by path"), "{readme}");

    let component = build_rust_project(&project, "path-greeter");
    crate::new_project::assert_greets(&component, "path-greeter");
}

#[test]
fn sdk_path_must_name_the_sdk() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let project = tmp.path().join("p");
    let not_sdk = repo_root().join("host");
    let run = new_rust_project(
        &project,
        "p",
        &["--sdk-path".as_ref(), not_sdk.as_os_str()],
        &[],
    );
    run.assert_fails_with(2, "not Warden's Rust SDK");
    assert!(!project.exists(), "a project was written");

    let sdk = repo_root().join("plugins/sdk");
    let run = new_rust_project(
        &project,
        "p",
        &["--sdk-path".as_ref(), sdk.as_os_str()],
        &[],
    );
    run.assert_code(0);
    let expected = format!("warden-sdk = {{ path = \"{}\" }}", sdk.display());
    assert!(
        manifest(&project).contains(&expected),
        "{}",
        manifest(&project)
    );
}

/// Lines of a Rust source file, blank ones and comments included.
fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .count()
}

#[test]
fn the_template_tool_and_lookup_customer_take_at_most_25_lines() {
    for file in [
        "host/templates/rust/src/lib.rs.tmpl",
        "plugins/examples/lookup-customer/src/lib.rs",
    ] {
        let count = lines(&repo_root().join(file));
        assert!(
            count <= MAX_EXAMPLE_LINES,
            "{file} takes {count} lines, more than {MAX_EXAMPLE_LINES}"
        );
    }
}

/// `plugins/examples/lookup-customer`, built from a copy beside a link to the working tree's
/// SDK (so its `../../sdk` resolves and no build writes into the repository).
fn lookup_customer() -> PathBuf {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let root = tmp.path();
    let project = root.join("examples/lookup-customer");
    crate::toolchains::copy_tree(
        &repo_root().join("plugins/examples/lookup-customer"),
        &project,
    )
    .expect("copy lookup-customer");
    // copy_tree lists files only; the hidden .cargo/config.toml is a file, so it is copied too.
    crate::toolchains::symlink_dir(&repo_root().join("plugins/sdk"), &root.join("sdk"));
    let component = build_rust_project(&project, "lookup-customer");
    // The temporary sources go; the component stays in the shared target dir.
    drop(tmp);
    component
}

/// A folder with `crm.db` (a `customers` table) and a `warden.toml` in which agent `support`
/// may call `lookup-customer/*` with `grants`.
fn crm_workspace(component: &Path, grants: &str) -> tempfile::TempDir {
    let ws = tempfile::tempdir().expect("a temporary folder");
    let db = Connection::open(ws.path().join("crm.db")).expect("create crm.db");
    db.execute_batch(
        "CREATE TABLE customers (
             id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, vip BOOLEAN NOT NULL
         );
         INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', 1), (2, 'Bob', NULL, 0);",
    )
    .expect("fill crm.db");
    let config = crate::workspace::crm_config("lookup-customer", component, grants);
    std::fs::write(ws.path().join("warden.toml"), config).expect("write warden.toml");
    ws
}

fn lookup(ws: &Path, id: i64) -> Run {
    let input = json!({ "id": id }).to_string();
    let mut cmd = warden_command(&[
        "call",
        "--config",
        "warden.toml",
        "--agent",
        "support",
        "lookup-customer",
        "lookup-customer",
        "--input",
        &input,
    ]);
    cmd.current_dir(ws).env_remove("WARDEN_CONFIG");
    run_command(cmd, None)
}

#[test]
fn lookup_customer_returns_the_record_an_unknown_id_error_and_needs_the_grant() {
    let component = lookup_customer();

    let granted = crm_workspace(&component, r#"["crm:ro"]"#);
    let run = lookup(granted.path(), 1);
    run.assert_code(0);
    assert_eq!(
        run.json(),
        json!({ "id": 1, "name": "Ada", "email": "ada@example.com", "vip": true })
    );
    let run = lookup(granted.path(), 2);
    run.assert_code(0);
    assert_eq!(
        run.json(),
        json!({ "id": 2, "name": "Bob", "email": null, "vip": false })
    );
    lookup(granted.path(), 99).assert_fails_with(2, "no customer with id 99");

    let ungranted = crm_workspace(&component, "[]");
    lookup(ungranted.path(), 1).assert_fails_with(3, "crm");
}
