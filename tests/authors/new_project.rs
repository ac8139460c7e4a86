//! `warden plugin new`: a project in each language, built with the command its README gives,
//! then called through `warden call`. The Rust project is created outside the repository and
//! gets the SDK by git.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::common::{Run, warden};
use crate::toolchains::{self, path_with, repo_root};

/// Creates a project with `warden plugin new NAME --lang LANG --dir <tmp>/NAME`.
fn new_project(tmp: &Path, name: &str, lang: &str) -> PathBuf {
    let dir = tmp.join(name);
    let run = warden(&[
        "plugin".as_ref(),
        "new".as_ref(),
        name.as_ref(),
        "--lang".as_ref(),
        lang.as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
    ]);
    run.assert_code(0);
    assert!(run.stdout.contains("build it:"), "{run:#?}");
    dir
}

/// Asserts that the README gives `command` as the build command, in a `sh` block.
fn assert_readme_builds_with(project: &Path, command: &str) {
    let readme = std::fs::read_to_string(project.join("README.md")).expect("the README");
    assert!(
        readme.contains(&format!("```sh\n{command}\n```")),
        "the README does not give `{command}` as the build command:\n{readme}"
    );
}

/// Asserts that the project ships the helper module `helper` and that `app` imports it.
fn assert_uses_the_helper(project: &Path, app: &str, helper: &str, import: &str) {
    let helper_text = std::fs::read_to_string(project.join(helper))
        .unwrap_or_else(|e| panic!("the helper {helper}: {e}"));
    assert!(
        helper_text.contains("this plugin offers"),
        "{helper} does not answer unknown tools"
    );
    let app_text = std::fs::read_to_string(project.join(app)).expect("the app");
    assert!(
        app_text.contains(import),
        "{app} does not use {helper}:\n{app_text}"
    );
}

fn greet(component: &Path) -> Run {
    warden(&[
        "call".as_ref(),
        component.as_os_str(),
        "greet".as_ref(),
        "--input".as_ref(),
        r#"{"name":"Ada"}"#.as_ref(),
    ])
}

/// Calls `greet` and checks the answer and the log line the template's tool writes.
pub(crate) fn assert_greets(component: &Path, plugin: &str) {
    let run = greet(component);
    run.assert_code(0);
    assert_eq!(run.json(), json!({ "greeting": "Hello, Ada!" }));
    assert!(
        run.stderr.contains("greeting Ada") && run.stderr.contains(&format!("plugin={plugin}")),
        "the tool's log line is missing: {run:#?}"
    );
}

#[test]
fn a_new_rust_project_builds_outside_the_repository_and_its_tool_answers() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    // Outside a checkout the project gets the SDK by git: here a repository of the working
    // tree's SDK, so that the SDK under test is the one built.
    let url = toolchains::sdk_git_repo(&tmp.path().join("sdk-repo"));
    let dir = tmp.path().join("rust-greeter");
    let run = warden(&[
        "plugin".as_ref(),
        "new".as_ref(),
        "rust-greeter".as_ref(),
        "--lang".as_ref(),
        "rust".as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
        "--sdk-git".as_ref(),
        url.as_ref(),
    ]);
    run.assert_code(0);
    assert!(run.stdout.contains("build it:"), "{run:#?}");
    assert_readme_builds_with(&dir, "cargo build --release");

    // The README's command. The shared target dir keeps the dependencies built across runs.
    let component = toolchains::build_rust_project(&dir, "rust-greeter");
    assert_greets(&component, "rust-greeter");
}

#[test]
fn a_new_python_project_builds_and_its_tool_answers() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let project = new_project(tmp.path(), "py-greeter", "python");
    let command = "componentize-py -d wit -w py-greeter componentize app -o py-greeter.wasm";
    assert_readme_builds_with(&project, command);
    assert_uses_the_helper(
        &project,
        "app.py",
        "warden_tools.py",
        "from warden_tools import",
    );

    let mut build = Command::new("sh");
    build
        .args(["-c", command])
        .current_dir(&project)
        .env("PATH", path_with(&toolchains::componentize_py_bin()));
    toolchains::run(build, "building the new Python project");

    assert_greets(&project.join("py-greeter.wasm"), "py-greeter");
}

#[test]
fn a_new_js_project_builds_and_its_tool_answers() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let project = new_project(tmp.path(), "js-greeter", "js");
    assert_readme_builds_with(&project, "npm install && npm run build");
    assert_uses_the_helper(
        &project,
        "app.js",
        "warden-tools.js",
        "from \"./warden-tools.js\"",
    );

    // `npm install` would download componentize-js (hundreds of MB) again for each run; the
    // shared install stands in for it, and `npm run build` runs the project's own script.
    let modules = toolchains::componentize_js_bin()
        .parent()
        .expect("node_modules/.bin sits in node_modules")
        .to_path_buf();
    toolchains::symlink_dir(&modules, &project.join("node_modules"));
    let mut build = Command::new("npm");
    build
        .args(["run", "build", "--silent"])
        .current_dir(&project);
    toolchains::run(build, "building the new JS project");

    assert_greets(&project.join("js-greeter.wasm"), "js-greeter");
}

#[test]
fn every_new_project_carries_the_contract_this_host_serves() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    // Not Rust: its project has no wit/, the SDK carries the contract (tests/authors/rust_sdk.rs).
    for lang in ["python", "js"] {
        let project = new_project(tmp.path(), &format!("{lang}-tools"), lang);
        let world = std::fs::read_to_string(project.join("wit/world.wit")).expect("wit/world.wit");
        assert!(
            world.contains("export warden:plugin/tool@0.1.0;"),
            "{world}"
        );
        for entry in std::fs::read_dir(repo_root().join("wit")).expect("the contract") {
            let path = entry.expect("a contract file").path();
            let copied = project
                .join("wit/deps/warden-plugin")
                .join(path.file_name().expect("a file name"));
            assert_eq!(
                std::fs::read_to_string(&copied).ok(),
                std::fs::read_to_string(&path).ok(),
                "{lang}: {} is not the contract's",
                copied.display()
            );
        }
    }
}

#[test]
fn new_refuses_a_name_that_wit_cannot_use() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    for name in ["My_Tools", "2fast", "world"] {
        let dir = tmp.path().join("p");
        let run = warden(&[
            "plugin".as_ref(),
            "new".as_ref(),
            name.as_ref(),
            "--lang".as_ref(),
            "python".as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
        ]);
        run.assert_fails_with(2, name);
        assert!(!dir.exists(), "`{name}`: a project was written");
    }
}

#[test]
fn new_refuses_a_folder_that_is_not_empty() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(tmp.path().join("keep.txt"), "mine").expect("write a file");
    let run = warden(&[
        "plugin".as_ref(),
        "new".as_ref(),
        "greeter".as_ref(),
        "--lang".as_ref(),
        "js".as_ref(),
        "--dir".as_ref(),
        tmp.path().as_os_str(),
    ]);
    run.assert_fails_with(2, "not empty");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("the folder").collect();
    assert_eq!(
        left.len(),
        1,
        "files were written into a folder that was not empty"
    );
}
