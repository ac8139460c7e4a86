//! Start-up of a big plugin: `plugins/examples/python-text`, an 18 MB componentize-py component
//! holding a pre-initialised CPython.
//!
//! - cold compile: wasmtime compiles the component, and the artifact is written to the cache;
//! - first call from the cache, in-process: a new engine (a host that just started), then the
//!   file read, its sha256, the artifact loaded from the cache, the plugin linked and asked for
//!   its tools, and the first `echo` call in a fresh instance (target: at most 30 ms);
//! - the same as a fresh `warden call` process, end to end, for comparison;
//! - a fresh-instance call once the plugin is loaded.
//!
//! Run with `cargo bench -p warden --bench plugin_startup`. The first run installs componentize-py
//! under `target/authors/` and builds the plugin (see `tests/authors/toolchains.rs`).

#[allow(dead_code)]
#[path = "../../tests/authors/toolchains.rs"]
mod toolchains;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warden::engine::{EngineOptions, WardenEngine};
use warden::plugins::{Plugin, sha256_hex};
use warden::sandbox::{CallIdentity, CallLimits};

const INPUT: &str = r#"{"text":"hello from the benchmark"}"#;
const COLD_STARTS: usize = 7;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn row(name: &str, samples: Vec<Duration>) -> Duration {
    let (min, max) = (
        *samples.iter().min().expect("samples"),
        *samples.iter().max().expect("samples"),
    );
    let n = samples.len();
    let mid = median(samples);
    println!(
        "{name:<44} median {:>8.2} ms  (min {:.2}, max {:.2}; {n} runs)",
        ms(mid),
        ms(min),
        ms(max)
    );
    mid
}

fn engine(cache: &Path) -> WardenEngine {
    WardenEngine::new(&EngineOptions {
        cache_dir: Some(cache.to_path_buf()),
        ..EngineOptions::default()
    })
    .expect("start the engine")
}

/// What one start of a host that has the plugin in its cache costs, step by step.
struct WarmStart {
    engine: Duration,
    read: Duration,
    load: Duration,
    first_call: Duration,
}

fn warm_start(rt: &tokio::runtime::Runtime, cache: &Path, path: &Path) -> WarmStart {
    let t0 = Instant::now();
    let engine = engine(cache);
    let t1 = Instant::now();
    let bytes = std::fs::read(path).expect("read the plugin");
    let t2 = Instant::now();
    let plugin = rt
        .block_on(Plugin::from_bytes(&engine, "python-text", &bytes, |_| {
            panic!("the plugin should come from the cache")
        }))
        .expect("load python-text");
    let t3 = Instant::now();
    let out = rt
        .block_on(plugin.call(
            "echo",
            INPUT,
            &CallIdentity::default(),
            &CallLimits::default(),
        ))
        .expect("echo");
    let t4 = Instant::now();
    assert_eq!(out.len(), INPUT.len());
    WarmStart {
        engine: t1 - t0,
        read: t2 - t1,
        load: t3 - t2,
        first_call: t4 - t3,
    }
}

fn process_call(cache: &Path, path: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["call"])
        .arg(path)
        .args(["echo", "--input", INPUT])
        .env("WARDEN_CACHE_DIR", cache)
        .env("WARDEN_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run warden call");
    assert!(status.success(), "warden call failed: {status}");
    start.elapsed()
}

fn main() {
    let path = toolchains::build(&toolchains::PYTHON_TEXT);
    let bytes = std::fs::read(&path).expect("read the plugin");
    let cache = toolchains::authors_dir().join(format!("bench-cache-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "plugin_startup: python-text, {:.1} MB of component ({})",
        bytes.len() as f64 / 1e6,
        path.display()
    );

    // Cold: nothing in the cache.
    let sha = sha256_hex(&bytes);
    let cold_engine = engine(&cache);
    let start = Instant::now();
    cold_engine
        .compile(&bytes, &sha, || {})
        .expect("compile python-text");
    let cold = start.elapsed();
    println!(
        "{:<44} {:>15.0} ms  (wasmtime compile and the cache write, once)",
        "cold compile",
        ms(cold)
    );
    drop(cold_engine);

    // Warm: each start is a new engine over the same cache, as a restarted host would be.
    let starts: Vec<WarmStart> = (0..COLD_STARTS)
        .map(|_| warm_start(&rt, &cache, &path))
        .collect();
    row(
        "  new engine (pool reservation; per host)",
        starts.iter().map(|s| s.engine).collect(),
    );
    row("  read the file", starts.iter().map(|s| s.read).collect());
    row(
        "  load: sha256, cache, link, list-tools",
        starts.iter().map(|s| s.load).collect(),
    );
    row(
        "  first call (fresh instance)",
        starts.iter().map(|s| s.first_call).collect(),
    );
    let first = row(
        "first call from the cache (read+load+call)",
        starts
            .iter()
            .map(|s| s.read + s.load + s.first_call)
            .collect(),
    );
    row(
        "  of which sha256 of the file",
        (0..COLD_STARTS)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(sha256_hex(&bytes));
                start.elapsed()
            })
            .collect(),
    );

    // The same, as a whole process: spawn, engine, load, call, exit.
    let process = row(
        "fresh `warden call` process, end to end",
        (0..COLD_STARTS)
            .map(|_| process_call(&cache, &path))
            .collect(),
    );

    // A loaded plugin: every call is a fresh instance of the pre-initialised interpreter.
    let engine = engine(&cache);
    let plugin = rt
        .block_on(Plugin::from_bytes(&engine, "python-text", &bytes, |_| {}))
        .expect("load python-text");
    let (identity, limits) = (CallIdentity::default(), CallLimits::default());
    let fresh_instance = row(
        "fresh-instance call of a loaded plugin",
        (0..9)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..20 {
                    rt.block_on(plugin.call("echo", INPUT, &identity, &limits))
                        .expect("echo");
                }
                start.elapsed() / 20
            })
            .collect(),
    );
    let _ = std::fs::remove_dir_all(&cache);
    println!(
        "summary cold {:.0} ms, first call from cache {:.1} ms (target <= 30), process {:.1} ms, \
         fresh-instance call {:.2} ms",
        ms(cold),
        ms(first),
        ms(process),
        ms(fresh_instance)
    );
}
