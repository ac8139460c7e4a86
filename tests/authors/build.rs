//! `warden plugin build` and `warden plugin test`: a project of each language made by `warden
//! plugin new`, built by the binary with the real toolchain and called; a change to its source
//! picked up by the next `test`; the refusals (not a project, a compile error); componentize-py
//! installed into an empty toolchains folder; and the notice a slow compile prints on a stderr
//! that is not a terminal.
//!
//! Only the files a build needs (`Cargo.toml`, `app.py` with `wit/`, `package.json`) and the
//! example's greeting are assumed of the templates.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::common::{Run, run_command_within, warden, warden_command};
use crate::toolchains::{self, authors_dir, path_with, without_host_build_env};

/// Builds can be slow on a busy machine: the first Rust build compiles wit-bindgen.
const BUILD_DEADLINE: Duration = Duration::from_secs(900);

const ADA: &str = r#"{"name":"Ada"}"#;

/// A `warden` run with `env` on top of the test's own, without the host build's cargo settings.
fn warden_with(args: &[&OsStr], env: &[(&str, &OsStr)]) -> Run {
    let mut cmd = warden_command(args);
    without_host_build_env(&mut cmd);
    for (key, value) in env {
        cmd.env(key, value);
    }
    run_command_within(cmd, None, BUILD_DEADLINE)
}

/// `warden plugin new NAME --lang LANG --dir <tmp>/NAME`; a Rust project outside the checkout
/// gets this checkout's SDK by path (`--sdk-path`), which is what these tests build against.
fn new_project(tmp: &Path, name: &str, lang: &str) -> PathBuf {
    let dir = tmp.join(name);
    let sdk = crate::toolchains::repo_root().join("plugins/sdk");
    let mut args = vec![
        OsStr::new("plugin"),
        OsStr::new("new"),
        OsStr::new(name),
        OsStr::new("--lang"),
        OsStr::new(lang),
        OsStr::new("--dir"),
        dir.as_os_str(),
    ];
    if lang == "rust" {
        args.extend([OsStr::new("--sdk-path"), sdk.as_os_str()]);
    }
    warden(&args).assert_code(0);
    dir
}

fn build(project: &Path, env: &[(&str, &OsStr)]) -> Run {
    warden_with(
        &[
            OsStr::new("plugin"),
            OsStr::new("build"),
            project.as_os_str(),
        ],
        env,
    )
}

fn test_greet(project: &Path, env: &[(&str, &OsStr)]) -> Run {
    warden_with(
        &[
            OsStr::new("plugin"),
            OsStr::new("test"),
            project.as_os_str(),
            OsStr::new("greet"),
            OsStr::new("--input"),
            OsStr::new(ADA),
        ],
        env,
    )
}

/// The size as `warden plugin build` prints it.
fn human_size(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.1} KB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// Asserts a build that printed `built FILE: /abs/path (SIZE)` for an existing file of that
/// size, and returns the path.
fn assert_built(run: &Run, file: &str) -> PathBuf {
    run.assert_code(0);
    let line = run.stdout.trim_end();
    assert_eq!(line.lines().count(), 1, "one line on stdout: {run:#?}");
    let rest = line
        .strip_prefix(&format!("built {file}: "))
        .unwrap_or_else(|| panic!("stdout should start `built {file}: `: {run:#?}"));
    let (path, size) = rest
        .rsplit_once(" (")
        .unwrap_or_else(|| panic!("no size on stdout: {run:#?}"));
    let path = PathBuf::from(path);
    assert!(path.is_absolute(), "{run:#?}");
    let bytes = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{} was not written ({e}): {run:#?}", path.display()))
        .len();
    assert_eq!(size, format!("{})", human_size(bytes)), "{run:#?}");
    assert!(
        run.stderr.contains("running "),
        "no progress lines: {run:#?}"
    );
    path
}

fn assert_greets(run: &Run, greeting: &str) {
    run.assert_code(0);
    assert_eq!(run.json(), json!({ "greeting": greeting }), "{run:#?}");
}

/// Changes the example's greeting from `Hello` to `Howdy` in whichever source file holds it.
fn edit_greeting(project: &Path) {
    fn visit(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read the project") {
            let path = entry.expect("an entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                if !["node_modules", "target", "wit", "__pycache__"].contains(&name.as_ref()) {
                    visit(&path, found);
                }
            } else if [".rs", ".py", ".js"].iter().any(|ext| name.ends_with(ext)) {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.contains("Hello, ") {
                    std::fs::write(&path, text.replace("Hello, ", "Howdy, ")).expect("edit");
                    found.push(path);
                }
            }
        }
    }
    let mut found = Vec::new();
    visit(project, &mut found);
    assert!(
        !found.is_empty(),
        "no source file of {} holds the greeting",
        project.display()
    );
}

/// The environment of a Rust build: a target dir shared across runs (so the dependencies build
/// once), which also checks that the component is found through `CARGO_TARGET_DIR`.
fn rust_env() -> Vec<(&'static str, std::ffi::OsString)> {
    vec![(
        "CARGO_TARGET_DIR",
        authors_dir().join("rust-projects").into_os_string(),
    )]
}

fn borrowed<'a>(env: &'a [(&'static str, std::ffi::OsString)]) -> Vec<(&'static str, &'a OsStr)> {
    env.iter().map(|(k, v)| (*k, v.as_os_str())).collect()
}

#[test]
fn a_rust_project_builds_answers_and_picks_up_an_edit() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let project = new_project(tmp.path(), "rust-built", "rust");
    let env = rust_env();
    let env = borrowed(&env);

    let run = build(&project, &env);
    let path = assert_built(&run, "rust_built.wasm");
    assert!(
        path.starts_with(authors_dir().join("rust-projects")),
        "the component was not found in CARGO_TARGET_DIR: {run:#?}"
    );
    assert!(
        run.stderr
            .contains("cargo build --release --target wasm32-wasip2"),
        "{run:#?}"
    );

    let json = warden_with(
        &[
            OsStr::new("plugin"),
            OsStr::new("build"),
            project.as_os_str(),
            OsStr::new("--json"),
        ],
        &env,
    );
    json.assert_code(0);
    let report = json.json();
    assert_eq!(report["language"], "rust", "{json:#?}");
    assert_eq!(report["path"], json!(path), "{json:#?}");
    assert_eq!(
        report["bytes"],
        json!(std::fs::metadata(&path).expect("the component").len())
    );

    assert_greets(&test_greet(&project, &env), "Hello, Ada!");
    edit_greeting(&project);
    assert_greets(&test_greet(&project, &env), "Howdy, Ada!");
}

#[test]
fn a_rust_project_that_does_not_compile_fails_with_the_compilers_message() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let project = new_project(tmp.path(), "rust-broken", "rust");
    let lib = project.join("src/lib.rs");
    let mut text = std::fs::read_to_string(&lib).expect("src/lib.rs");
    text.push_str("\ncompile_error!(\"this plugin is broken on purpose\");\n");
    std::fs::write(&lib, text).expect("break src/lib.rs");
    let env = rust_env();

    let run = build(&project, &borrowed(&env));
    assert_build_failed(&run);
    assert!(
        run.stderr.contains("this plugin is broken on purpose"),
        "the compiler's message is not shown: {run:#?}"
    );
    assert!(
        run.stderr.contains("exit code 101"),
        "cargo's exit code is not named: {run:#?}"
    );

    // `test` stops at the failed build and calls nothing.
    assert_build_failed(&test_greet(&project, &borrowed(&env)));
}

/// Asserts exit 6 with Warden's `error:` line about the failed build. The compiler's own
/// `error:` lines come before it, so the line is looked for, not taken first.
fn assert_build_failed(run: &Run) {
    run.assert_code(6);
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(
        run.stderr
            .lines()
            .any(|line| line.starts_with("error: plugin unusable: the build failed: `cargo build")),
        "no error line about the failed build: {run:#?}"
    );
}

#[test]
fn a_python_project_builds_answers_picks_up_an_edit_and_notes_a_slow_compile() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let project = new_project(tmp.path(), "py-built", "python");
    // componentize-py from PATH: the toolchains folder stays empty.
    let toolchains = tmp.path().join("toolchains");
    let cache = tmp.path().join("cache");
    let path = path_with(&toolchains::componentize_py_bin());
    let env = [
        ("PATH", path.as_os_str()),
        ("WARDEN_TOOLCHAINS_DIR", toolchains.as_os_str()),
        ("WARDEN_CACHE_DIR", cache.as_os_str()),
    ];

    let run = build(&project, &env);
    let component = assert_built(&run, "py-built.wasm");
    assert_eq!(
        component,
        project.canonicalize().unwrap().join("py-built.wasm")
    );
    assert!(
        !run.stderr.contains("installing componentize-py") && !toolchains.exists(),
        "componentize-py on PATH was not used: {run:#?}"
    );

    // A cold cache: the big component takes seconds to compile, and stderr (a pipe) says so.
    let run = test_greet(&project, &env);
    assert_greets(&run, "Hello, Ada!");
    assert!(
        run.stderr.contains("compiling plugin `py-built` (")
            && run.stderr.contains("this happens once"),
        "no compile notice on a cold cache: {run:#?}"
    );
    // A warm one: nothing.
    let run = warden_with(
        &[
            OsStr::new("call"),
            component.as_os_str(),
            OsStr::new("greet"),
            OsStr::new("--input"),
            OsStr::new(ADA),
        ],
        &env,
    );
    assert_greets(&run, "Hello, Ada!");
    assert!(
        !run.stderr.contains("compiling plugin"),
        "a compile notice on a warm cache: {run:#?}"
    );

    edit_greeting(&project);
    assert_greets(&test_greet(&project, &env), "Howdy, Ada!");
}

#[test]
fn componentize_py_is_installed_into_an_empty_toolchains_folder() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let project = new_project(tmp.path(), "py-installed", "python");
    let toolchains = tmp.path().join("toolchains");
    let env = [("WARDEN_TOOLCHAINS_DIR", toolchains.as_os_str())];

    let run = build(&project, &env);
    assert_built(&run, "py-installed.wasm");
    assert!(
        run.stderr.contains(&format!(
            "installing componentize-py {}",
            warden::cli::new::COMPONENTIZE_PY_VERSION
        )),
        "no install was announced: {run:#?}"
    );
    let venv = toolchains.join(format!(
        "componentize-py-{}",
        warden::cli::new::COMPONENTIZE_PY_VERSION
    ));
    assert!(venv.join("bin/componentize-py").is_file(), "{run:#?}");

    // Installed once: the next build reuses it.
    let run = build(&project, &env);
    assert_built(&run, "py-installed.wasm");
    assert!(
        !run.stderr.contains("installing componentize-py"),
        "installed again: {run:#?}"
    );
}

#[test]
fn a_js_project_builds_and_answers_through_test_and_through_call_on_its_folder() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let project = new_project(tmp.path(), "js-built", "js");
    // `npm install` would download componentize-js again for each run; the shared install
    // stands in for it, so `warden plugin build` finds the dependencies there and only builds.
    let modules = toolchains::componentize_js_bin()
        .parent()
        .expect("node_modules/.bin sits in node_modules")
        .to_path_buf();
    toolchains::symlink_dir(&modules, &project.join("node_modules"));

    let run = build(&project, &[]);
    assert_built(&run, "js-built.wasm");
    assert!(
        run.stderr.contains("npm run build") && !run.stderr.contains("npm install"),
        "{run:#?}"
    );
    assert_greets(&test_greet(&project, &[]), "Hello, Ada!");

    edit_greeting(&project);
    let run = warden_with(
        &[
            OsStr::new("call"),
            project.as_os_str(),
            OsStr::new("greet"),
            OsStr::new("--input"),
            OsStr::new(ADA),
        ],
        &[],
    );
    assert_greets(&run, "Howdy, Ada!");
}

#[test]
fn a_folder_that_is_not_a_project_is_refused_naming_what_was_looked_for() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(tmp.path().join("notes.txt"), "not a plugin").expect("write a file");
    for run in [build(tmp.path(), &[]), test_greet(tmp.path(), &[])] {
        run.assert_fails_with(2, "is not a plugin project");
        for looked_for in ["Cargo.toml", "package.json", "app.py", "wit/"] {
            assert!(run.error_line().contains(looked_for), "{run:#?}");
        }
    }

    let missing = tmp.path().join("nowhere");
    build(&missing, &[]).assert_fails_with(2, "does not exist");

    // app.py alone cannot be built: componentize-py needs the world in wit/.
    std::fs::write(tmp.path().join("app.py"), "").expect("write app.py");
    build(tmp.path(), &[]).assert_fails_with(2, "no wit/ folder");
}

#[test]
fn a_js_project_without_a_build_script_is_refused() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(
        tmp.path().join("package.json"),
        r#"{"name":"x","scripts":{"test":"true"}}"#,
    )
    .expect("write package.json");
    build(tmp.path(), &[]).assert_fails_with(2, "has no `build` script");
}
