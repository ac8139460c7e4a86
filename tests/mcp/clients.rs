//! The real MCP clients: the official Python SDK (`mcp` 2.x, in a venv) and the MCP Inspector
//! CLI, installed into `target/mcp-clients/` by `.ci/mcp-clients`. The first test that needs
//! them runs the installer when they are missing, once per run and under a file lock (test
//! binaries may run side by side); when it fails, every test that needs a client fails with its
//! output: a missing client is never a skipped test.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Run, run_command_within, shared_cache_dir};

/// The folder the clients live in.
pub fn clients_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/mcp-clients"
    ))
}

/// The workspace's root.
fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The venv's Python.
pub fn python() -> PathBuf {
    clients_dir().join("venv/bin/python")
}

/// The Inspector's launcher (`mcp-inspector`, run with `--cli`).
pub fn inspector() -> PathBuf {
    clients_dir().join("node_modules/.bin/mcp-inspector")
}

/// Whether the installer's stamp (written last, when both clients work) is there.
fn installed() -> bool {
    clients_dir().join("installed").is_file() && python().is_file() && inspector().exists()
}

/// Makes sure the clients are installed, installing them if not; fails the test with the
/// installer's output when that fails.
pub fn ensure() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = DONE.get_or_init(|| {
        if installed() {
            return Ok(());
        }
        std::fs::create_dir_all(clients_dir().parent().unwrap()).map_err(|e| e.to_string())?;
        let lock_path = root().join("target/mcp-clients.lock");
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| format!("create {}: {e}", lock_path.display()))?;
        // Another test binary may be installing: wait for it, then look again.
        // SAFETY: flock(2) on a file descriptor this function owns for the whole block.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        if rc != 0 {
            return Err(format!(
                "flock {}: {}",
                lock_path.display(),
                std::io::Error::last_os_error()
            ));
        }
        if installed() {
            return Ok(());
        }
        eprintln!("mcp tests: installing the MCP clients with .ci/mcp-clients (once)");
        let mut cmd = Command::new("bash");
        cmd.arg(root().join(".ci/mcp-clients"))
            .arg(clients_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let run = run_command_within(cmd, None, Duration::from_secs(900));
        drop(lock);
        if run.code == 0 && installed() {
            Ok(())
        } else {
            Err(format!(
                ".ci/mcp-clients failed (exit {}), so the MCP client tests cannot run.\n\
                 stdout:\n{}\nstderr:\n{}",
                run.code, run.stdout, run.stderr
            ))
        }
    });
    if let Err(output) = outcome {
        panic!("{output}");
    }
}

/// The Python driver of the SDK.
fn driver() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/mcp/py/warden_client.py"
    ))
}

/// Runs the Python driver's `scenario` with `args` (JSON) and returns what it observed (the
/// JSON object of its last stdout line). Fails with its output when it fails.
pub fn python_scenario(scenario: &str, args: &Value) -> Value {
    ensure();
    let mut cmd = Command::new(python());
    cmd.arg(driver())
        .arg(scenario)
        .arg(args.to_string())
        .env("WARDEN_CACHE_DIR", shared_cache_dir())
        .env_remove("WARDEN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = run_command_within(cmd, None, Duration::from_secs(150));
    assert_eq!(
        run.code, 0,
        "the Python SDK scenario {scenario} failed; args {args:#}\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    last_json_line(&run, scenario)
}

fn last_json_line(run: &Run, what: &str) -> Value {
    let line = run
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{what} printed nothing; stderr:\n{}", run.stderr));
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{what}'s last line is not JSON ({e}): {line:?}\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    })
}

/// Runs `mcp-inspector --cli ARGS` with its catalog in `home` (so it writes nothing outside the
/// test's folder) and returns the run.
pub fn inspector_run(home: &std::path::Path, args: &[String]) -> Run {
    ensure();
    let mut cmd = Command::new(inspector());
    cmd.arg("--cli")
        .args(args)
        .env("HOME", home)
        .env("MCP_CATALOG_PATH", home.join("mcp.json"))
        .env("WARDEN_CACHE_DIR", shared_cache_dir())
        .env_remove("WARDEN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_command_within(cmd, None, Duration::from_secs(150))
}

/// The JSON the Inspector printed (its whole stdout), failing with the run when it is not.
pub fn inspector_json(run: &Run, what: &str) -> Value {
    assert_eq!(run.code, 0, "the Inspector's {what} failed: {run:#?}");
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        // Some versions print a line of their own first: take the last JSON document.
        let start = run.stdout.find('{').unwrap_or(0);
        serde_json::from_str(&run.stdout[start..])
            .unwrap_or_else(|_| panic!("the Inspector's {what} printed no JSON ({e}): {run:#?}"))
    })
}
