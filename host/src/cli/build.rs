//! `warden plugin build [DIR]` and `warden plugin test [DIR] TOOL`: build a plugin project with
//! its own language's toolchain, then (for `test`) call one of its tools as `warden call` does.
//!
//! The language is told by the files a project cannot build without: `Cargo.toml` (Rust),
//! `package.json` (JavaScript), `app.py` with a `wit/` folder (Python, as componentize-py
//! needs). Nothing else of a project's layout is assumed, so a project `warden plugin new` did
//! not write builds too.
//!
//! What it runs goes to stderr as `running …` lines, and the toolchain's own output is streamed
//! to stderr as it comes; stdout gets one line (or `--json`) naming the built component. Exit
//! codes: 2 when DIR is not a project that can be built (nothing recognised, no `build` script,
//! no cdylib, no world), 6 when the plugin could not be built (a toolchain is missing or failed
//! to install, or the build failed), 1 when Warden itself failed (an I/O error).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use clap::Args;

use super::call::{self, CallOptions, Target};
use super::new::COMPONENTIZE_PY_VERSION;
use super::{human_size, print_stdout};
use crate::error::{CallError, ErrorKind};

/// The target every plugin is built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// How many of a failed tool's last output lines its error repeats.
const TAIL_LINES: usize = 15;

/// The longest output line kept for an error message, in bytes.
const MAX_LINE: usize = 400;

/// Arguments of `warden plugin build`.
#[derive(Debug, Args)]
pub(super) struct BuildArgs {
    /// The plugin project's folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Print the result as JSON: `{"language", "path", "bytes"}`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `warden plugin test`.
#[derive(Debug, Args)]
#[command(override_usage = "warden plugin test [DIR] TOOL [OPTIONS]")]
pub(super) struct TestArgs {
    /// `[DIR] TOOL`: the project's folder (default `.`) and the tool to call.
    #[arg(required = true, num_args = 1..=2, value_names = ["DIR", "TOOL"])]
    dir_and_tool: Vec<String>,
    #[command(flatten)]
    call: CallOptions,
}

/// A project's language, told by its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Language {
    /// `Cargo.toml`: cargo, for wasm32-wasip2.
    Rust,
    /// `app.py` and `wit/`: componentize-py.
    Python,
    /// `package.json`: npm and the project's `build` script.
    Js,
}

impl Language {
    fn label(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
        }
    }
}

/// A component a build wrote.
#[derive(Debug)]
pub(super) struct Built {
    /// The project's language.
    pub language: Language,
    /// The component, as an absolute path.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

pub(super) fn run(args: BuildArgs) -> Result<(), CallError> {
    let built = build_project(&args.dir)?;
    if args.json {
        let report = serde_json::json!({
            "language": built.language.label(),
            "path": built.path,
            "bytes": built.bytes,
        });
        print_stdout(&report.to_string())
    } else {
        print_stdout(&format!(
            "built {}: {} ({})",
            built
                .path
                .file_name()
                .map(|name| name.to_string_lossy())
                .unwrap_or_default(),
            built.path.display(),
            human_size(built.bytes)
        ))
    }
}

pub(super) async fn test(args: TestArgs) -> Result<(), CallError> {
    let (dir, tool) = match args.dir_and_tool.as_slice() {
        [tool] => (".".to_string(), tool.clone()),
        [dir, tool] => (dir.clone(), tool.clone()),
        _ => {
            return Err(CallError::invalid_input(
                "give the project's folder (optional, default `.`) and the tool: \
                 `warden plugin test [DIR] TOOL`",
            ));
        }
    };
    let built = build_project(Path::new(&dir))?;
    eprintln!(
        "built {} ({}); calling `{tool}`",
        built.path.display(),
        human_size(built.bytes)
    );
    call::call(Target::File(built.path), tool, args.call).await
}

/// Builds the project in `dir` with its language's toolchain and returns the component.
pub(super) fn build_project(dir: &Path) -> Result<Built, CallError> {
    let (language, dir) = detect(dir)?;
    let started = std::time::SystemTime::now();
    let path = match language {
        Language::Rust => build_rust(&dir)?,
        Language::Python => build_python(&dir)?,
        Language::Js => build_js(&dir)?,
    };
    let meta = std::fs::metadata(&path).map_err(|_| {
        CallError::unusable(format!(
            "the build ended without error but wrote no {}; check the project's build \
             settings",
            path.display()
        ))
    })?;
    // cargo leaves an up-to-date component alone; the other builds write theirs every time,
    // so an old file means this build did not write it.
    let stale = language != Language::Rust
        && meta
            .modified()
            .is_ok_and(|modified| modified + std::time::Duration::from_secs(2) < started);
    if stale {
        return Err(CallError::unusable(format!(
            "the build ended without error but did not write {} (the file there is older \
             than the build); check where the build script writes the component",
            path.display()
        )));
    }
    Ok(Built {
        language,
        path,
        bytes: meta.len(),
    })
}

/// The project's language and its folder as an absolute path.
fn detect(dir: &Path) -> Result<(Language, PathBuf), CallError> {
    let abs = match std::fs::canonicalize(dir) {
        Ok(abs) => abs,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CallError::invalid_input(format!(
                "`{}` does not exist; give the folder of a plugin project (`warden plugin new \
                 NAME --lang rust|python|js` creates one)",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(CallError::new(
                ErrorKind::Internal,
                format!("cannot read `{}`: {e}", dir.display()),
            ));
        }
    };
    if !abs.is_dir() {
        return Err(CallError::invalid_input(format!(
            "`{}` is a file, not a plugin project's folder; a built component is called with \
             `warden call FILE TOOL`",
            dir.display()
        )));
    }
    if abs.join("Cargo.toml").is_file() {
        return Ok((Language::Rust, abs));
    }
    if abs.join("package.json").is_file() {
        return Ok((Language::Js, abs));
    }
    let has_app = abs.join("app.py").is_file();
    let has_wit = abs.join("wit").is_dir();
    if has_app && has_wit {
        return Ok((Language::Python, abs));
    }
    if has_app {
        return Err(CallError::invalid_input(format!(
            "`{}` has app.py but no wit/ folder: componentize-py builds a Python plugin from \
             app.py and the world in wit/ (`warden plugin new NAME --lang python` writes both)",
            dir.display()
        )));
    }
    Err(CallError::invalid_input(format!(
        "`{}` is not a plugin project: it has none of Cargo.toml (Rust), package.json \
         (JavaScript), or app.py with a wit/ folder (Python); `warden plugin new NAME --lang \
         rust|python|js` creates one",
        dir.display()
    )))
}

// ---------------------------------------------------------------------------------------------
// Rust

const INSTALL_RUST: &str = "install Rust with rustup (https://rustup.rs), then run `rustup \
                            target add wasm32-wasip2`";

fn build_rust(dir: &Path) -> Result<PathBuf, CallError> {
    let component = cargo_component_path(dir)?;
    add_wasm_target(dir)?;
    let mut cargo = Command::new("cargo");
    cargo
        .args(["build", "--release", "--target", WASM_TARGET])
        .current_dir(dir);
    run_streamed(cargo, "cargo", INSTALL_RUST)?;
    Ok(component)
}

/// Where `cargo build --release --target wasm32-wasip2` puts the project's component, as cargo
/// itself says: the target dir may be the workspace's, a `CARGO_TARGET_DIR`, or a config's.
fn cargo_component_path(dir: &Path) -> Result<PathBuf, CallError> {
    let mut cargo = Command::new("cargo");
    cargo
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir);
    let stdout = run_captured(cargo, "cargo", INSTALL_RUST)?;
    let metadata: serde_json::Value = serde_json::from_slice(&stdout).map_err(|e| {
        CallError::new(
            ErrorKind::Internal,
            format!("`cargo metadata` printed something that is not its JSON: {e}"),
        )
    })?;
    let target_dir = metadata["target_directory"].as_str().ok_or_else(|| {
        CallError::new(
            ErrorKind::Internal,
            "`cargo metadata` named no target_directory",
        )
    })?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let cdylib = |package: &serde_json::Value| -> Option<String> {
        package["targets"].as_array()?.iter().find_map(|target| {
            let kinds = target["crate_types"].as_array()?;
            kinds
                .iter()
                .any(|kind| kind == "cdylib")
                .then(|| target["name"].as_str().map(str::to_string))?
        })
    };
    let manifest = dir.join("Cargo.toml");
    let manifest = std::fs::canonicalize(&manifest).unwrap_or(manifest);
    let own = packages.iter().find(|package| {
        package["manifest_path"]
            .as_str()
            .and_then(|path| std::fs::canonicalize(path).ok())
            .is_some_and(|path| path == manifest)
    });
    let lib = match own {
        Some(package) => cdylib(package).ok_or_else(|| {
            CallError::invalid_input(format!(
                "{} builds no cdylib, and a plugin is one: add `[lib]` with `crate-type = \
                 [\"cdylib\"]`",
                manifest.display()
            ))
        })?,
        // A workspace's root manifest: its one plugin member, if it has exactly one.
        None => {
            let members: Vec<(String, String)> = packages
                .iter()
                .filter_map(|package| {
                    Some((package["name"].as_str()?.to_string(), cdylib(package)?))
                })
                .collect();
            match members.as_slice() {
                [(_, lib)] => lib.clone(),
                [] => {
                    return Err(CallError::invalid_input(format!(
                        "no package of {} builds a cdylib, and a plugin is one: add `[lib]` \
                         with `crate-type = [\"cdylib\"]`",
                        manifest.display()
                    )));
                }
                several => {
                    let names: Vec<&str> = several.iter().map(|(name, _)| name.as_str()).collect();
                    return Err(CallError::invalid_input(format!(
                        "the workspace at {} has several plugins ({}); build one of them with \
                         `warden plugin build MEMBER_DIR`",
                        dir.display(),
                        names.join(", ")
                    )));
                }
            }
        }
    };
    Ok(Path::new(target_dir)
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", lib.replace('-', "_"))))
}

/// Adds the wasm32-wasip2 target to the project's toolchain when rustup manages it and the
/// target is missing. Without rustup the build says itself whether the target is there.
fn add_wasm_target(dir: &Path) -> Result<(), CallError> {
    let mut list = Command::new("rustup");
    list.args(["target", "list", "--installed"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let Ok(out) = list.output() else {
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]).current_dir(dir);
    run_streamed(add, "rustup", INSTALL_RUST)
}

// ---------------------------------------------------------------------------------------------
// Python

fn build_python(dir: &Path) -> Result<PathBuf, CallError> {
    let world = world_name(dir)?;
    let componentize_py = componentize_py()?;
    let output = format!("{world}.wasm");
    let mut build = Command::new(&componentize_py);
    build
        .args([
            "-d",
            "wit",
            "-w",
            &world,
            "componentize",
            "app",
            "-o",
            &output,
        ])
        .current_dir(dir);
    run_streamed(build, "componentize-py", &install_python())?;
    Ok(dir.join(output))
}

fn install_python() -> String {
    format!(
        "install Python 3 with its venv module (e.g. `apt install python3 python3-venv`), or put \
         componentize-py {COMPONENTIZE_PY_VERSION} on PATH (`pip install \
         componentize-py=={COMPONENTIZE_PY_VERSION}`)"
    )
}

/// The world the project's `wit/` defines (the one named after the folder when there are
/// several), else the folder's name.
fn world_name(dir: &Path) -> Result<String, CallError> {
    let folder = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("wit"))
        .map(|entries| {
            entries
                .filter_map(|entry| Some(entry.ok()?.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "wit"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut worlds = Vec::new();
    for file in &files {
        // A file too big to be a world is not read whole.
        let mut text = String::new();
        if let Ok(f) = std::fs::File::open(file) {
            let _ = f.take(1 << 20).read_to_string(&mut text);
        }
        worlds.extend(worlds_in(&text));
    }
    let world = match worlds.as_slice() {
        [] => folder,
        [one] => one.clone(),
        several if several.contains(&folder) => folder,
        several => {
            return Err(CallError::invalid_input(format!(
                "the wit/ folder of {} defines several worlds ({}), and none is named after the \
                 folder; keep the plugin's world alone in wit/, with other packages in wit/deps/",
                dir.display(),
                several.join(", ")
            )));
        }
    };
    let usable = !world.is_empty() && world.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !usable {
        return Err(CallError::invalid_input(format!(
            "`{world}` cannot name the plugin's world and component; name the world (in \
             wit/world.wit) with letters, digits and `-`"
        )));
    }
    Ok(world)
}

/// The names of the worlds a WIT file declares, in order.
fn worlds_in(text: &str) -> Vec<String> {
    let mut worlds = Vec::new();
    let mut in_block_comment = false;
    for line in text.lines() {
        let mut line = line;
        if in_block_comment {
            match line.find("*/") {
                Some(end) => {
                    in_block_comment = false;
                    line = &line[end + 2..];
                }
                None => continue,
            }
        }
        if let Some(start) = line.find("/*")
            && !line[start..].contains("*/")
        {
            in_block_comment = true;
            line = &line[..start];
        }
        let line = line.split("//").next().unwrap_or_default().trim();
        if let Some(rest) = line.strip_prefix("world")
            && rest.starts_with(char::is_whitespace)
        {
            let name: String = rest
                .trim_start()
                .trim_start_matches('%')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                worlds.push(name);
            }
        }
    }
    worlds
}

/// The componentize-py to build with: the one on PATH when it is the pinned release, else one
/// installed (once) into a virtualenv under the user's toolchains folder.
fn componentize_py() -> Result<PathBuf, CallError> {
    let on_path = PathBuf::from("componentize-py");
    if reports_version(&on_path, COMPONENTIZE_PY_VERSION) {
        return Ok(on_path);
    }
    let root = toolchains_dir().ok_or_else(|| {
        CallError::unusable(format!(
            "componentize-py {COMPONENTIZE_PY_VERSION} is not on PATH, and there is no folder \
             to install it into (set WARDEN_TOOLCHAINS_DIR, or HOME); {}",
            install_python()
        ))
    })?;
    let venv = root.join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
    let bin = if cfg!(windows) {
        venv.join("Scripts")
    } else {
        venv.join("bin")
    };
    let exe = bin.join("componentize-py");
    let stamp = venv.join(".warden-installed");
    let io_error = |what: &str, path: &Path, e: std::io::Error| {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot {what} {}: {e}", path.display()),
        )
    };
    std::fs::create_dir_all(&root).map_err(|e| io_error("create", &root, e))?;
    // Two builds at once install once: the second waits for the first, then finds it done.
    let lock_path = root.join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}.lock"));
    let lock = std::fs::File::create(&lock_path).map_err(|e| io_error("open", &lock_path, e))?;
    lock.lock().map_err(|e| io_error("lock", &lock_path, e))?;
    let want = format!("componentize-py=={COMPONENTIZE_PY_VERSION}");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str())
        && reports_version(&exe, COMPONENTIZE_PY_VERSION)
    {
        return Ok(exe);
    }
    eprintln!(
        "installing componentize-py {COMPONENTIZE_PY_VERSION} into {} (once; later builds \
         reuse it)",
        venv.display()
    );
    // A half-done install (an interrupted run) has no stamp and is redone from scratch.
    if venv.exists() {
        std::fs::remove_dir_all(&venv).map_err(|e| io_error("remove", &venv, e))?;
    }
    let mut make_venv = Command::new("python3");
    make_venv.args(["-m", "venv"]).arg(&venv);
    run_streamed(make_venv, "python3", &install_python())?;
    let mut pip = Command::new(bin.join("python"));
    pip.args(["-m", "pip", "install", "--disable-pip-version-check"])
        .arg(&want);
    run_streamed(
        pip,
        "pip",
        "check that PyPI (https://pypi.org) can be reached, or install componentize-py yourself",
    )?;
    if !reports_version(&exe, COMPONENTIZE_PY_VERSION) {
        return Err(CallError::unusable(format!(
            "pip installed {want}, but {} does not report that version; remove {} and try \
             again",
            exe.display(),
            venv.display()
        )));
    }
    std::fs::write(&stamp, &want).map_err(|e| io_error("write", &stamp, e))?;
    Ok(exe)
}

/// `$WARDEN_TOOLCHAINS_DIR`, else `$XDG_CACHE_HOME/warden/toolchains`, else
/// `~/.cache/warden/toolchains`.
fn toolchains_dir() -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = set("WARDEN_TOOLCHAINS_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = set("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("warden/toolchains"));
    }
    set("HOME").map(|home| PathBuf::from(home).join(".cache/warden/toolchains"))
}

/// Whether `exe --version` runs and names `version`.
fn reports_version(exe: &Path, version: &str) -> bool {
    let Ok(out) = Command::new(exe)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    out.status.success()
        && String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|word| word.trim_start_matches('v') == version)
}

// ---------------------------------------------------------------------------------------------
// JavaScript

const INSTALL_NODE: &str = "install Node.js 20 or later with npm (https://nodejs.org)";

fn build_js(dir: &Path) -> Result<PathBuf, CallError> {
    let manifest_path = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot read {}: {e}", manifest_path.display()),
        )
    })?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        CallError::invalid_input(format!("{} is not JSON: {e}", manifest_path.display()))
    })?;
    let Some(script) = manifest["scripts"]["build"].as_str() else {
        return Err(CallError::invalid_input(format!(
            "{} has no `build` script; add one that writes the component, e.g. \
             `\"build\": \"componentize-js app.js --wit wit --world-name NAME --out NAME.wasm\"`",
            manifest_path.display()
        )));
    };
    let output = match script_output(script) {
        Some(output) => output,
        None => {
            let name = manifest["name"].as_str().unwrap_or_default();
            let name = name.rsplit('/').next().unwrap_or_default();
            if name.is_empty() {
                return Err(CallError::invalid_input(format!(
                    "cannot tell where the build writes the component: the `build` script of \
                     {} has no `--out FILE`, and the package has no name",
                    manifest_path.display()
                )));
            }
            format!("{name}.wasm")
        }
    };
    if needs_install(dir, &manifest) {
        let mut install = Command::new("npm");
        install
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(dir);
        run_streamed(install, "npm", INSTALL_NODE)?;
    }
    let mut build = Command::new("npm");
    build.args(["run", "build"]).current_dir(dir);
    run_streamed(build, "npm", INSTALL_NODE)?;
    Ok(dir.join(output))
}

/// The file a build script names with `--out FILE`, `--out=FILE` or `-o FILE`.
fn script_output(script: &str) -> Option<String> {
    let words: Vec<&str> = script.split_whitespace().collect();
    words.iter().enumerate().find_map(|(i, word)| {
        let value = match *word {
            "--out" | "-o" => *words.get(i + 1)?,
            word => word.strip_prefix("--out=")?,
        };
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        value.ends_with(".wasm").then(|| value.to_string())
    })
}

/// Whether `npm install` has yet to run: no node_modules, or a declared dependency missing
/// from it (componentize-js, most often).
fn needs_install(dir: &Path, manifest: &serde_json::Value) -> bool {
    let modules = dir.join("node_modules");
    if !modules.is_dir() {
        return true;
    }
    ["dependencies", "devDependencies"].iter().any(|section| {
        manifest[section].as_object().is_some_and(|deps| {
            deps.keys()
                .any(|name| !name.contains("..") && !modules.join(name).exists())
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Running the toolchains

/// How a command is shown in a `running …` line.
fn shown(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let _ = write!(text, " {}", arg.to_string_lossy());
    }
    text
}

fn spawn_error(
    program: &std::ffi::OsStr,
    tool: &str,
    install: &str,
    e: std::io::Error,
) -> CallError {
    if e.kind() == std::io::ErrorKind::NotFound {
        CallError::unusable(format!(
            "`{tool}` was not found (tried to run {}); {install}",
            program.to_string_lossy()
        ))
    } else {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot run {}: {e}", program.to_string_lossy()),
        )
    }
}

/// Runs `cmd`, streaming its stdout and stderr to stderr, and fails with its exit status and
/// last lines if it fails. `install` says how to get `tool` when it is missing.
fn run_streamed(mut cmd: Command, tool: &str, install: &str) -> Result<(), CallError> {
    let dir = cmd
        .get_current_dir()
        .map(|dir| format!(" in {}", dir.display()))
        .unwrap_or_default();
    let display = shown(&cmd);
    eprintln!("running {display}{dir}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = cmd.get_program().to_os_string();
    let mut child = cmd
        .spawn()
        .map_err(|e| spawn_error(&program, tool, install, e))?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|out| Box::new(out) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|err| Box::new(err) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tail = tail.clone();
        std::thread::spawn(move || pump(stream, &tail))
    })
    .collect();
    let status = child.wait();
    for pump in pumps {
        let _ = pump.join();
    }
    let status = status.map_err(|e| {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot wait for {display}: {e}"),
        )
    })?;
    if status.success() {
        return Ok(());
    }
    let how = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => status.to_string(),
    };
    let tail = tail.lock().map(|tail| tail.clone()).unwrap_or_default();
    let mut message = format!("the build failed: `{display}` ended with {how}");
    if tail.is_empty() {
        message.push_str(" and printed nothing");
    } else {
        message.push_str("; its last lines:");
        for line in &tail {
            let _ = write!(message, "\n  {line}");
        }
    }
    message.push_str("\n(the whole output is above; fix what it reports and build again)");
    Err(CallError::unusable(message))
}

/// Copies `stream` to stderr line by line, keeping its last [`TAIL_LINES`] lines.
fn pump(stream: Box<dyn Read + Send>, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&line);
            if !line.ends_with(b"\n") {
                let _ = err.write_all(b"\n");
            }
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.trim().is_empty() {
            continue;
        }
        let mut kept = text.to_string();
        if kept.len() > MAX_LINE {
            kept.truncate(kept.floor_char_boundary(MAX_LINE));
            kept.push('…');
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(kept);
        }
    }
}

/// Runs `cmd` for its stdout; its stderr is shown only when it fails.
fn run_captured(mut cmd: Command, tool: &str, install: &str) -> Result<Vec<u8>, CallError> {
    let display = shown(&cmd);
    let program = cmd.get_program().to_os_string();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(&program, tool, install, e))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(TAIL_LINES);
    lines.drain(..skip);
    Err(CallError::unusable(format!(
        "`{display}` failed ({}):\n  {}",
        out.status,
        lines.join("\n  ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_world_past_comments() {
        let text = "package local:x;\n\n/// The world of the `x` plugin.\n// world not-this {\n\
                    /* world nor-this\n world nor-that */\nworld ticket-tools {\n  export x;\n}\n";
        assert_eq!(worlds_in(text), ["ticket-tools"]);
        assert_eq!(worlds_in("world %async {}"), ["async"]);
        assert!(worlds_in("interface worldly { }").is_empty());
    }

    #[test]
    fn reads_the_output_of_a_build_script() {
        let script = "componentize-js app.js --wit wit --world-name x --out x.wasm";
        assert_eq!(script_output(script).as_deref(), Some("x.wasm"));
        assert_eq!(
            script_output("jco componentize app.js -o 'dist/y.wasm'").as_deref(),
            Some("dist/y.wasm")
        );
        assert_eq!(
            script_output("x --out=z.wasm && echo").as_deref(),
            Some("z.wasm")
        );
        assert_eq!(script_output("tsc && node build.mjs"), None);
    }
}
