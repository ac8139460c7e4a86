//! The toolchains plugin authors use, installed on demand under `target/authors/`, and the
//! plugins built with them. Shared by the `authors` tests and the `plugin_startup` benchmark.
//!
//! - componentize-py goes into a virtualenv at `target/authors/python`, and componentize-js
//!   into `target/authors/node`; each is installed once, at the version `warden plugin new`
//!   writes into new projects.
//! - A plugin is built from a copy of its sources (so no build writes into the repository) to
//!   `target/authors/built/NAME.wasm`, and built again only when its sources, the contract or
//!   the toolchain change.
//!
//! Tests run in parallel threads and `cargo test` and `cargo bench` may run at once, so every
//! install and build holds an exclusive file lock (`target/authors/locks/`) while it works.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use warden::cli::new::{COMPONENTIZE_JS_VERSION, COMPONENTIZE_PY_VERSION};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the repository root")
        .to_path_buf()
}

/// `target/authors`: everything the authors' tests install and build.
pub fn authors_dir() -> PathBuf {
    // WARDEN_BUILT_PLUGINS is `<target dir>/plugins`, wherever the target dir is.
    Path::new(env!("WARDEN_BUILT_PLUGINS"))
        .parent()
        .expect("the built plugins sit in the target dir")
        .join("authors")
}

/// An exclusive lock on `target/authors/locks/NAME.lock`, held until dropped. Separate opens of
/// the file exclude each other, so it serialises threads of one process as well as processes.
pub struct Lock(File);

impl Lock {
    /// Waits for the lock called `name`.
    pub fn acquire(name: &str) -> Lock {
        let dir = authors_dir().join("locks");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.lock"));
        let file = File::create(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
        Lock(file)
    }
}

/// Runs `cmd` and panics with its output if it fails.
pub fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `install` into a fresh `dir` unless `dir` already holds a finished install stamped
/// `stamp`. A half-done install (an interrupted run) has no stamp and is redone.
fn install_once(name: &str, stamp: &str, install: impl FnOnce(&Path)) -> PathBuf {
    let dir = authors_dir().join(name);
    let stamp_file = dir.join(".warden-installed");
    let _lock = Lock::acquire(name);
    if fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp) {
        return dir;
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    install(&dir);
    fs::write(&stamp_file, stamp).expect("stamp the install");
    dir
}

/// The folder holding the `componentize-py` executable, installing it on first use.
pub fn componentize_py_bin() -> PathBuf {
    let stamp = format!("componentize-py=={COMPONENTIZE_PY_VERSION}");
    let venv = install_once("python", &stamp, |dir| {
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(dir);
        run(
            venv,
            "creating a Python virtualenv (needs python3 with venv)",
        );
        let mut pip = Command::new(dir.join("bin/python"));
        pip.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(&stamp);
        run(pip, "installing componentize-py from PyPI");
    });
    venv.join("bin")
}

/// The folder holding the `componentize-js` executable, installing it on first use.
pub fn componentize_js_bin() -> PathBuf {
    let stamp = format!("@bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION}");
    let node = install_once("node", &stamp, |dir| {
        let manifest = serde_json::json!({
            "private": true,
            "dependencies": { "@bytecodealliance/componentize-js": COMPONENTIZE_JS_VERSION },
        });
        fs::write(dir.join("package.json"), manifest.to_string()).expect("write package.json");
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir);
        run(
            npm,
            "installing componentize-js from npm (needs node and npm)",
        );
    });
    node.join("node_modules/.bin")
}

/// A `cargo` command that does not inherit the settings `cargo test` or `cargo bench` passes to
/// its children (flags, wrappers, the target dir, the package's variables): they describe the
/// host's build, not another project's.
pub fn cargo_for_another_project() -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let inherited = key.ends_with("RUSTFLAGS")
            || key.starts_with("RUSTC_")
            || key == "CARGO_TARGET_DIR"
            || key == "CARGO_MANIFEST_DIR"
            || key == "CARGO_MANIFEST_PATH"
            || key == "CARGO_PRIMARY_PACKAGE"
            || key == "CARGO_CRATE_NAME"
            || key == "CARGO_TARGET_TMPDIR"
            || [
                "CARGO_BUILD_",
                "CARGO_PROFILE_",
                "CARGO_CFG_",
                "CARGO_FEATURE_",
                "CARGO_PKG_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|prefix| key.starts_with(prefix));
        if inherited {
            cargo.env_remove(key.as_ref());
        }
    }
    cargo
}

/// `PATH` with `dir` in front.
pub fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("a PATH entry holds no separator")
}

/// A plugin's sources: a folder with its code and `wit/` (whose `deps/warden-plugin` may be a
/// symlink to the repository's contract).
pub struct Sources {
    /// The name of its world and of the component it builds, `NAME.wasm`.
    pub name: &'static str,
    /// The folder, relative to the repository root.
    pub dir: &'static str,
    /// The language, which picks the toolchain and the build command.
    pub lang: Lang,
}

/// The language of a plugin's sources, and how they build.
#[derive(Clone, Copy, Debug)]
pub enum Lang {
    /// `app.py`: `componentize-py -d wit -w NAME componentize app -o NAME.wasm`.
    Python,
    /// `app.js` and a `package.json` whose `build` script writes `NAME.wasm`.
    Js,
}

/// The example written in Python.
pub const PYTHON_TEXT: Sources = Sources {
    name: "python-text",
    dir: "plugins/examples/python-text",
    lang: Lang::Python,
};

/// The example written in JavaScript.
pub const JS_TEXT: Sources = Sources {
    name: "js-text",
    dir: "plugins/examples/js-text",
    lang: Lang::Js,
};

/// Builds `sources` (unless the build is up to date) and returns the component's path.
pub fn build(sources: &Sources) -> PathBuf {
    let src = repo_root().join(sources.dir);
    let built = authors_dir().join("built");
    let out = built.join(format!("{}.wasm", sources.name));
    let stamp_file = built.join(format!("{}.inputs", sources.name));
    let (tool_bin, tool) = match sources.lang {
        Lang::Python => (
            componentize_py_bin(),
            format!("componentize-py {COMPONENTIZE_PY_VERSION}"),
        ),
        Lang::Js => (
            componentize_js_bin(),
            format!("componentize-js {COMPONENTIZE_JS_VERSION}"),
        ),
    };
    let _lock = Lock::acquire(&format!("build-{}", sources.name));
    let stamp = format!(
        "{tool} {}",
        fingerprint(&src).expect("read the plugin's sources")
    );
    if out.is_file() && fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return out;
    }

    // Build from a copy: componentize-py writes __pycache__ next to the sources.
    let work = authors_dir().join("work").join(sources.name);
    if work.exists() {
        fs::remove_dir_all(&work).unwrap_or_else(|e| panic!("remove {}: {e}", work.display()));
    }
    copy_tree(&src, &work).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    let component = format!("{}.wasm", sources.name);
    let mut cmd = match sources.lang {
        Lang::Python => {
            let mut cmd = Command::new(tool_bin.join("componentize-py"));
            cmd.args(["-d", "wit", "-w", sources.name, "componentize", "app", "-o"])
                .arg(&component);
            cmd
        }
        Lang::Js => {
            // The project's own build script, with the shared install as its node_modules.
            let modules = tool_bin
                .parent()
                .expect("node_modules/.bin is in node_modules");
            symlink_dir(modules, &work.join("node_modules"));
            let mut cmd = Command::new("npm");
            cmd.args(["run", "build", "--silent"]);
            cmd
        }
    };
    cmd.current_dir(&work);
    run(cmd, &format!("building {}", sources.name));
    fs::create_dir_all(&built).expect("create target/authors/built");
    fs::rename(work.join(&component), &out).expect("move the built component into place");
    fs::write(&stamp_file, stamp).expect("stamp the build");
    out
}

/// Links `link` to the folder `target`.
pub fn symlink_dir(target: &Path, link: &Path) {
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(target, link);
    #[cfg(windows)]
    let linked = std::os::windows::fs::symlink_dir(target, link);
    linked.unwrap_or_else(|e| panic!("link {} to {}: {e}", link.display(), target.display()));
}

/// A digest of every file under `dir` (following symlinks), by relative path and content.
pub fn fingerprint(dir: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    list_files(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut hash = Sha256::new();
    for relative in files {
        hash.update(relative.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(fs::read(dir.join(&relative))?);
        hash.update([0]);
    }
    Ok(hex::encode(hash.finalize()))
}

fn list_files(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "__pycache__" || name == "node_modules" {
            continue;
        }
        let path = relative.join(&name);
        // `metadata` follows symlinks, so a linked `wit/deps/warden-plugin` counts as a folder.
        if fs::metadata(entry.path())?.is_dir() {
            list_files(root, &path, out)?;
        } else if !name.to_string_lossy().ends_with(".wasm") {
            out.push(path);
        }
    }
    Ok(())
}

/// Copies `from` to `to`, following symlinks, leaving out build outputs.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut files = Vec::new();
    list_files(from, Path::new(""), &mut files)?;
    for relative in files {
        let dest = to.join(&relative);
        fs::create_dir_all(dest.parent().expect("a file has a parent"))?;
        fs::copy(from.join(&relative), dest)?;
    }
    Ok(())
}

/// Makes a git repository at `dir` holding the working tree's SDK (`plugins/sdk`) and contract
/// (`wit/`), committed, and returns its `file://` URL for `warden plugin new --sdk-git`: a
/// project built from it gets the SDK as it is now, uncommitted changes included.
pub fn sdk_git_repo(dir: &Path) -> String {
    let root = repo_root();
    for part in ["plugins/sdk", "wit"] {
        copy_tree(&root.join(part), &dir.join(part))
            .unwrap_or_else(|e| panic!("copy {part} into {}: {e}", dir.display()));
    }
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.args(["-c", "user.name=t", "-c", "user.email=t"])
            .args(args)
            .current_dir(dir);
        run(cmd, &format!("git {}", args.join(" ")));
    };
    git(&["init", "--quiet"]);
    git(&["add", "--all"]);
    git(&["commit", "--quiet", "--message", "the SDK under test"]);
    let dir = dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("resolve {}: {e}", dir.display()));
    format!("file://{}", dir.display())
}

/// Builds the Rust plugin project at `project` with the command its README gives
/// (`cargo build --release`), into a target dir shared by every such project so that the
/// dependencies build once, and returns the path of the component `NAME.wasm`.
pub fn build_rust_project(project: &Path, crate_name: &str) -> PathBuf {
    let target = authors_dir().join("rust-projects");
    let mut cargo = cargo_for_another_project();
    cargo
        .args(["build", "--release"])
        .current_dir(project)
        .env("CARGO_TARGET_DIR", &target);
    run(
        cargo,
        &format!("building the Rust project {}", project.display()),
    );
    target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// Builds the Rust workspace at `dir` (relative to the repository root; components written with
/// wit-bindgen directly, each member a cdylib) for wasm32-wasip2, unless the build is up to date,
/// and returns the component of its member crate `package` (`typed-calc` is
/// `target/authors/built/typed_calc.wasm`). The build runs on a copy, so no `Cargo.lock` is
/// written into the repository, in a target dir kept across runs.
pub fn build_rust_workspace(dir: &str, package: &str) -> PathBuf {
    let src = repo_root().join(dir);
    let built = authors_dir().join("built");
    let key = dir.replace(['/', '\\'], "-");
    let stamp_file = built.join(format!("{key}.inputs"));
    let out = built.join(format!("{}.wasm", package.replace('-', "_")));
    let _lock = Lock::acquire(&format!("build-{key}"));
    let stamp = fingerprint(&src).expect("read the workspace's sources");
    if out.is_file() && fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return out;
    }
    let work = authors_dir().join("work").join(&key);
    if work.exists() {
        fs::remove_dir_all(&work).unwrap_or_else(|e| panic!("remove {}: {e}", work.display()));
    }
    copy_tree(&src, &work).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    let target = authors_dir().join("rust-components");
    let mut cargo = cargo_for_another_project();
    cargo
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&work)
        .env("CARGO_TARGET_DIR", &target);
    run(cargo, &format!("building the Rust workspace {dir}"));
    fs::create_dir_all(&built).expect("create target/authors/built");
    let release = target.join("wasm32-wasip2/release");
    for entry in fs::read_dir(&release).expect("read the release folder") {
        let path = entry.expect("a release entry").path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let name = path.file_name().expect("a file name");
            fs::copy(&path, built.join(name)).expect("copy a built component");
        }
    }
    assert!(out.is_file(), "{} was not built", out.display());
    fs::write(&stamp_file, stamp).expect("stamp the build");
    out
}

/// Removes from `cmd` the settings `cargo test` passes to its children that describe the host's
/// build, as [`cargo_for_another_project`] does, for a `warden` that runs cargo on another
/// project (`warden plugin build`).
pub fn without_host_build_env(cmd: &mut Command) {
    for (key, value) in cargo_for_another_project().get_envs() {
        if value.is_none() {
            cmd.env_remove(key);
        }
    }
}
