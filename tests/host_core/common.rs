//! What every test module needs: the plugin files, the shared compile cache, a way to run the
//! real `warden` binary and read what it did, and an engine for in-process tests.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use warden::engine::{DEFAULT_STACK_KB, EngineOptions, WardenEngine};
use warden::plugins::Plugin;

/// The `warden` binary under test.
pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// The compile cache every test shares, so a plugin compiles once per suite, not per test.
pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-cache"))
}

/// A plugin built by `host/build.rs`, by its name (`text-tools`).
pub fn plugin_path(name: &str) -> PathBuf {
    let path = Path::new(env!("WARDEN_BUILT_PLUGINS")).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "plugin {} is missing; `cargo build --release` builds it",
        path.display()
    );
    path
}

/// What one run of `warden` did.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Run {
    fn from_output(args: &[OsString], output: Output) -> Run {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let code = output.status.code().unwrap_or_else(|| {
            panic!(
                "warden {args:?} was killed by a signal ({:?})\nstderr:\n{stderr}",
                output.status
            )
        });
        Run {
            code,
            stdout,
            stderr,
        }
    }

    /// Asserts the exit code, showing the whole run when it differs.
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "unexpected exit code; the run was {self:#?}"
        );
        self
    }

    /// Asserts a failed call: the exit code, nothing on stdout, and an `error:` line that
    /// contains `needle`.
    pub fn assert_fails_with(&self, code: i32, needle: &str) -> &Self {
        self.assert_code(code);
        assert!(
            self.stdout.is_empty(),
            "a failed call printed to stdout; the run was {self:#?}"
        );
        assert!(
            self.error_line().contains(needle),
            "the error line should contain {needle:?}; the run was {self:#?}"
        );
        self
    }

    /// Asserts that the host itself did not panic. Only for runs of plugins that never panic,
    /// since a guest's panic message is forwarded to the log.
    pub fn assert_no_panic(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked at"),
            "warden panicked; the run was {self:#?}"
        );
        self
    }

    /// The `error: ...` line of stderr.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_else(|| panic!("stderr has no `error: ` line; the run was {self:#?}"))
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); the run was {self:#?}"))
    }
}

/// A `warden` command with the shared compile cache and the default log filter.
pub fn warden_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(WARDEN);
    cmd.args(args)
        .env("WARDEN_CACHE_DIR", shared_cache_dir())
        .env_remove("WARDEN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// How long one `warden` run may take before the test fails. Every limit under test is far
/// shorter (a slow compile on a busy machine is the longest wait), so a run past this one is a
/// regression in a time limit: it fails the test instead of hanging the suite.
pub const RUN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// Kills `pid` if it is still running at `deadline`; dropping the guard calls that off.
struct Watchdog {
    done: std::sync::mpsc::Sender<()>,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    fn start(pid: u32, deadline: std::time::Duration) -> Watchdog {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = fired.clone();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(deadline)
            {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                // SIGKILL by pid: the child is still ours and not yet reaped, so the pid is its.
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        });
        Watchdog { done, fired }
    }

    fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}

/// Runs `cmd` to completion, writing `stdin` to it if given. A run that outlasts
/// [`RUN_DEADLINE`] is killed and fails the test.
pub fn run_command(cmd: Command, stdin: Option<&[u8]>) -> Run {
    run_command_within(cmd, stdin, RUN_DEADLINE)
}

/// [`run_command`] with another deadline.
pub fn run_command_within(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    deadline: std::time::Duration,
) -> Run {
    let args: Vec<OsString> = cmd.get_args().map(OsStr::to_os_string).collect();
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn the warden binary");
    let watchdog = Watchdog::start(child.id(), deadline);
    // Written from another thread while this one drains stdout and stderr, so that neither side
    // can block the other on a full pipe.
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            // warden may refuse the input and exit before reading it all: a broken pipe is fine.
            let _ = pipe.write_all(&bytes);
        })
    });
    let output = child.wait_with_output().expect("wait for warden");
    assert!(
        !watchdog.fired(),
        "warden {args:?} ran past {} ms and was killed: a time limit no longer holds\nstderr:\n{}",
        deadline.as_millis(),
        String::from_utf8_lossy(&output.stderr)
    );
    drop(watchdog);
    if let Some(writer) = writer {
        writer.join().expect("the stdin writer did not panic");
    }
    Run::from_output(&args, output)
}

/// Runs `warden ARGS...`.
pub fn warden<S: AsRef<OsStr>>(args: &[S]) -> Run {
    run_command(warden_command(args), None)
}

/// Runs `warden call PLUGIN TOOL --input INPUT EXTRA...` on a shipped plugin.
pub fn call(plugin: &str, tool: &str, input: &str, extra: &[&str]) -> Run {
    let path = plugin_path(plugin);
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("call"),
        path.as_os_str(),
        OsStr::new(tool),
        OsStr::new("--input"),
        OsStr::new(input),
    ];
    args.extend(extra.iter().map(OsStr::new));
    warden(&args)
}

/// An engine as the CLI builds it by default, on the shared compile cache.
pub fn engine() -> WardenEngine {
    WardenEngine::new(&EngineOptions {
        stack_kb: DEFAULT_STACK_KB,
        cache_dir: Some(shared_cache_dir()),
    })
    .expect("start the engine")
}

/// The value of one series (`name{labels}`, as rendered) in this process's metrics, or 0 when
/// it is absent.
pub fn metric(series: &str) -> f64 {
    warden::metrics::render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().expect("a number"))
}

/// Loads a shipped plugin on `engine`.
pub async fn load(engine: &WardenEngine, name: &str) -> Plugin {
    Plugin::load(engine, &plugin_path(name))
        .await
        .unwrap_or_else(|e| panic!("load {name}: {e}"))
}

#[test]
#[should_panic(expected = "was killed")]
fn a_run_that_hangs_fails_instead_of_hanging_the_suite() {
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30");
    run_command_within(sleeper, None, std::time::Duration::from_millis(200));
}

/// Runs `warden ARGS...` under `/usr/bin/time -v` and returns the run and the peak resident set
/// size of the `warden` process, in KiB, for tests about host memory.
pub fn warden_measured<S: AsRef<OsStr>>(args: &[S], stdin: Option<&[u8]>) -> (Run, u64) {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg(WARDEN)
        .args(args)
        .env("WARDEN_CACHE_DIR", shared_cache_dir())
        .env_remove("WARDEN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = run_command(cmd, stdin);
    let rss = run
        .stderr
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|kb| kb.trim().parse().ok())
        .unwrap_or_else(|| panic!("/usr/bin/time -v printed no peak RSS; the run was {run:#?}"));
    (run, rss)
}
