//! Memory held per idle session: the peak resident set size (the kernel's `ru_maxrss`, which is
//! `VmHWM`) of real `warden` processes working against two SQLite stores, one holding only the
//! session they show and one holding that session and 10,000 idle ones, each with a finished
//! task in its journal and an entry in its memory. Idle sessions live in the store, not in RAM,
//! so the two figures should be about the same (DESIGN.md: "memory held per idle session is near
//! zero").
//!
//! Measured, each a few times (the median is reported):
//! - `warden session list --limit 10`, and `warden session list` of every session (printed a
//!   page at a time, so it too should not grow with the store);
//! - `warden session show ID` of the one session both stores hold;
//! - `warden plugin list`, which starts the host service on the store with a plugin loaded.
//!
//! `cargo bench --bench idle_sessions`; `IDLE_SESSIONS` sets how many idle sessions (10,000).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;
use warden::state::agents::AgentStore;
use warden::state::journal::{NewStep, StepKind};
use warden::state::memory::{MemoryLimits, Namespace, Writer};
use warden::state::sessions::SessionId;
use warden::state::{StateStore, StateUrl};

/// Runs of each command per store; the median is reported.
const RUNS: usize = 5;

/// Sessions written at once while filling the store, so the SQLite writer commits in groups.
const WRITERS: usize = 64;

const TENANT: &str = "local";
const AGENT: &str = "support";

/// The journal of one finished task, as the agent loop writes it: the input, a model turn with a
/// tool call, the call and its result, the last turn and the answer.
fn task_steps() -> Vec<NewStep> {
    let task = Uuid::now_v7();
    let call = Uuid::now_v7().to_string();
    let step = |kind, call_id: Option<&str>, payload| NewStep {
        task,
        kind,
        call_id: call_id.map(String::from),
        payload,
    };
    vec![
        step(
            StepKind::TaskStarted,
            None,
            json!({"input": "What does the handbook say about refunds?"}),
        ),
        step(
            StepKind::ModelResponse,
            None,
            json!({"text": "Let me read it.",
                   "tool_calls": [{"id": "call_1", "name": "files_read",
                                   "arguments": {"path": "refunds.md"}}],
                   "usage": {"input_tokens": 310, "output_tokens": 22},
                   "served_by": "local", "model": "gpt-test", "finish_reason": "tool_calls",
                   "model_step": 0}),
        ),
        step(
            StepKind::ToolCall,
            Some(&call),
            json!({"index": 0, "model_call_id": "call_1", "name": "files_read",
                   "plugin": "files", "tool": "read", "arguments": {"path": "refunds.md"}}),
        ),
        step(
            StepKind::ToolResult,
            Some(&call),
            json!({"index": 0, "model_call_id": "call_1", "ok": true,
                   "output": {"text": "Refunds within 30 days, with the receipt."},
                   "error": null, "elapsed_ms": 4}),
        ),
        step(
            StepKind::ModelResponse,
            None,
            json!({"text": "Refunds are given within 30 days, with the receipt.",
                   "tool_calls": [], "usage": {"input_tokens": 380, "output_tokens": 14},
                   "served_by": "local", "model": "gpt-test", "finish_reason": "stop",
                   "model_step": 1}),
        ),
        step(
            StepKind::FinalAnswer,
            None,
            json!({"text": "Refunds are given within 30 days, with the receipt."}),
        ),
    ]
}

/// One idle session with a finished task and a memory entry; returns its id.
async fn idle_session(store: &Arc<dyn AgentStore>, holder: &str) -> SessionId {
    let session = store.create_session(TENANT, AGENT).await.expect("session");
    let lease = store
        .acquire_lease(TENANT, session.id, holder, Duration::from_secs(60))
        .await
        .expect("lease");
    store
        .append_steps(TENANT, session.id, 0, lease.token, &task_steps())
        .await
        .expect("journal");
    store.release_lease(TENANT, &lease).await.expect("release");
    store
        .put_memory(
            TENANT,
            &Namespace::Session(session.id),
            "customer",
            r#"{"name":"Ada","tier":"gold","last_order":"A-1042"}"#,
            None,
            &Writer {
                agent: AGENT,
                tool: "notes/remember",
            },
            &MemoryLimits::STORE_BOUNDS,
        )
        .await
        .expect("memory");
    session.id
}

/// A store in `dir` with the shown session and `idle` more, and a config naming it and the
/// `files` plugin; returns the shown session's id.
async fn build_store(dir: &Path, idle: usize) -> SessionId {
    std::fs::create_dir_all(dir.join("handbook")).expect("handbook dir");
    std::fs::write(dir.join("handbook/refunds.md"), "Refunds within 30 days.").expect("doc");
    let plugins = env!("WARDEN_BUILT_PLUGINS");
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            r#"[state]
url = "sqlite://state.db"

[plugins.files]
path = "{plugins}/files.wasm"
max = ["dir:*:ro"]

[sources.handbook]
kind = "dir"
path = "handbook"

[agents.{AGENT}]
tools = ["files/*"]
grants = ["handbook:ro"]
"#
        ),
    )
    .expect("config");
    let store = StateStore::open(&StateUrl::Sqlite(dir.join("state.db")))
        .await
        .expect("open the store")
        .agent_state();
    let shown = idle_session(&store, "bench/shown").await;
    let mut workers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let count = idle / WRITERS + usize::from(w < idle % WRITERS);
        workers.push(tokio::spawn(async move {
            for i in 0..count {
                idle_session(&store, &format!("bench/{w}/{i}")).await;
            }
        }));
    }
    for w in workers {
        w.await.expect("a writer panicked");
    }
    shown
}

/// The peak RSS of one `warden ARGS` run, in KiB, from `wait4`'s resource usage of that child
/// alone. Its output goes to files, so a long one cannot block the child on a full pipe.
// The child is reaped by `wait4` itself, which `Child::wait` cannot do: it drops the resource
// usage that is the point of the measurement.
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(dir: &Path, args: &[&str]) -> u64 {
    let out_path = dir.join("bench-stdout");
    let err_path = dir.join("bench-stderr");
    let stdout = std::fs::File::create(&out_path).expect("stdout file");
    let stderr = std::fs::File::create(&err_path).expect("stderr file");
    let child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_LOG")
        .env("WARDEN_CACHE_DIR", dir.join("cache"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn warden");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our unreaped child; `status` and `usage` are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(
        reaped,
        pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "warden {args:?} failed in {}: {stderr}",
        dir.display()
    );
    let printed = std::fs::metadata(&out_path).map(|m| m.len()).unwrap_or(0);
    assert!(printed > 0, "warden {args:?} printed nothing");
    usage.ru_maxrss as u64
}

fn median(mut samples: Vec<u64>) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Bytes of the store's files (the database, and its WAL if one is left).
fn store_bytes(dir: &Path) -> (u64, u64) {
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    (size("state.db"), size("state.db-wal"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; this binary takes no options of its own.
    let idle: usize = std::env::var("IDLE_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let root = tempfile::tempdir().expect("temp dir");
    let base_dir: PathBuf = root.path().join("none");
    let idle_dir: PathBuf = root.path().join("idle");

    let started = Instant::now();
    let base_shown = build_store(&base_dir, 0).await;
    let idle_shown = build_store(&idle_dir, idle).await;
    println!(
        "filled the stores in {:.1} s ({idle} idle sessions, each with {} journal entries and one \
         memory entry)",
        started.elapsed().as_secs_f64(),
        task_steps().len()
    );
    for (name, dir) in [
        ("no idle sessions", &base_dir),
        ("idle sessions", &idle_dir),
    ] {
        let (db, wal) = store_bytes(dir);
        println!(
            "store with {name:<17} {:>9.2} MiB database + {:>7.2} MiB WAL",
            db as f64 / 1048576.0,
            wal as f64 / 1048576.0
        );
    }

    // One plugin list first on each store, so the plugin's compiled form is cached and every
    // measured run starts the same way.
    for dir in [&base_dir, &idle_dir] {
        peak_rss_kib(dir, &["plugin", "list", "--config", "warden.toml"]);
    }

    let base_id = base_shown.to_string();
    let idle_id = idle_shown.to_string();
    let commands: [(&str, Vec<&str>, Vec<&str>); 4] = [
        (
            "session list --limit 10",
            vec![
                "session",
                "list",
                "--limit",
                "10",
                "--config",
                "warden.toml",
            ],
            vec![
                "session",
                "list",
                "--limit",
                "10",
                "--config",
                "warden.toml",
            ],
        ),
        (
            // Every session, printed a page at a time: memory stays at one page's worth.
            "session list (all of them)",
            vec!["session", "list", "--config", "warden.toml"],
            vec!["session", "list", "--config", "warden.toml"],
        ),
        (
            "session show ID",
            vec!["session", "show", &base_id, "--config", "warden.toml"],
            vec!["session", "show", &idle_id, "--config", "warden.toml"],
        ),
        (
            "plugin list (host service started)",
            vec!["plugin", "list", "--config", "warden.toml"],
            vec!["plugin", "list", "--config", "warden.toml"],
        ),
    ];
    println!(
        "\npeak RSS (VmHWM) of a warden process, median of {RUNS} runs; {idle} idle sessions \
         against none:"
    );
    println!(
        "{:<36} {:>12} {:>14} {:>8}",
        "command", "none (MiB)", "idle (MiB)", "ratio"
    );
    for (name, base_args, idle_args) in &commands {
        // Interleaved, so a change in the machine's load hits both sides alike.
        let mut base = Vec::new();
        let mut with_idle = Vec::new();
        for _ in 0..RUNS {
            base.push(peak_rss_kib(&base_dir, base_args));
            with_idle.push(peak_rss_kib(&idle_dir, idle_args));
        }
        let (b, i) = (median(base), median(with_idle));
        println!(
            "{name:<36} {:>12.2} {:>14.2} {:>8.3}",
            mib(b),
            mib(i),
            i as f64 / b as f64
        );
    }
}
