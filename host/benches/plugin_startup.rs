//! Start-up of a big plugin: `plugins/examples/python-text`, an 18 MB componentize-py component
//! holding a pre-initialised CPython.
//!
//! - cold compile: wasmtime compiles the component, and the artifact is written to the cache;
//! - first call from the cache, in-process: a new engine (a host that just started), then the
//!   file read, its sha256, the artifact loaded from the cache, the plugin linked and asked for
//!   its tools, and the first `echo` call in a fresh instance (target: at most 30 ms);
//! - the same as a fresh `warden call` process, end to end, for comparison;
//! - a fresh-instance call once the plugin is loaded;
//! - start-up of the host service with 20 cached plugins (target: at most 100 ms): a new engine
//!   and `WardenHost::start` in-process, and a fresh `warden plugin list` process end to end
//!   (spawn, config, engine, every plugin loaded, the listing, exit).
//!
//! Run with `cargo bench -p warden --bench plugin_startup`. The first run installs componentize-py
//! under `target/authors/` and builds the plugin (see `tests/authors/toolchains.rs`).

#[allow(dead_code)]
#[path = "../../tests/authors/toolchains.rs"]
mod toolchains;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::engine::{EngineOptions, WardenEngine};
use warden::host::{HostOptions, PluginStatus, WardenHost};
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

/// Twenty distinct plugins built from `plugins/`, each of whose `list-tools` is well-behaved.
const TWENTY: [&str; 20] = [
    "text-tools",
    "files",
    "http-get",
    "sql",
    "summarize",
    "spin-forever",
    "alloc-forever",
    "recurse-forever",
    "panics",
    "bad-json",
    "huge-output",
    "snoop",
    "model-probe",
    "shadow-overflow",
    "deep-json",
    "sql-script",
    "header-echo",
    "fields-hog",
    "planter",
    "odd-names",
];

/// Writes a config serving [`TWENTY`] to `dir`, and returns its path.
fn twenty_plugin_config(dir: &Path) -> PathBuf {
    let built = Path::new(env!("WARDEN_BUILT_PLUGINS"));
    let mut text = String::from("[state]\nurl = \"sqlite://state.db\"\n");
    for name in TWENTY {
        text.push_str(&format!(
            "[plugins.{name}]\npath = \"{}\"\n",
            built.join(format!("{name}.wasm")).display()
        ));
    }
    let tools: Vec<String> = TWENTY.iter().map(|n| format!("\"{n}/*\"")).collect();
    text.push_str(&format!("[agents.all]\ntools = [{}]\n", tools.join(", ")));
    let path = dir.join("warden.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// A new engine and the host service started on `config`, ready to serve: a restarted host.
fn host_start(rt: &tokio::runtime::Runtime, cache: &Path, config_path: &Path) -> Duration {
    let start = Instant::now();
    let engine = engine(cache);
    let config = warden::config::WardenConfig::load(config_path).expect("the config");
    let host = rt
        .block_on(WardenHost::start(
            engine,
            Arc::new(config),
            config_path,
            HostOptions::default(),
        ))
        .expect("start the host");
    let elapsed = start.elapsed();
    for status in host.plugins() {
        if let PluginStatus::Failed { name, error } = status {
            panic!("plugin {name} did not load: {error}");
        }
    }
    elapsed
}

fn process_list(cache: &Path, config_path: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["plugin", "list", "--config"])
        .arg(config_path)
        .env("WARDEN_CACHE_DIR", cache)
        .env("WARDEN_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run warden plugin list");
    assert!(status.success(), "warden plugin list failed: {status}");
    start.elapsed()
}

/// Start-up with 20 cached plugins; returns the in-process and the process medians.
fn twenty_plugins(rt: &tokio::runtime::Runtime, cache: &Path) -> (Duration, Duration) {
    let dir = cache.with_extension("twenty");
    std::fs::create_dir_all(&dir).expect("a folder for the config");
    let config_path = twenty_plugin_config(&dir);
    // Fills the cache: a host that starts after this finds every plugin compiled.
    host_start(rt, cache, &config_path);
    let in_process = row(
        "host ready, 20 cached plugins (in-process)",
        (0..COLD_STARTS)
            .map(|_| host_start(rt, cache, &config_path))
            .collect(),
    );
    let process = row(
        "fresh `warden plugin list`, 20 plugins",
        (0..COLD_STARTS)
            .map(|_| process_list(cache, &config_path))
            .collect(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    (in_process, process)
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
    let (twenty_in_process, twenty_process) = twenty_plugins(&rt, &cache);
    let _ = std::fs::remove_dir_all(&cache);
    println!(
        "summary 20 cached plugins: host ready in {:.1} ms in-process, {:.1} ms as a fresh process \
         (target <= 100)",
        ms(twenty_in_process),
        ms(twenty_process)
    );
    println!(
        "summary cold {:.0} ms, first call from cache {:.1} ms (target <= 30), process {:.1} ms, \
         fresh-instance call {:.2} ms",
        ms(cold),
        ms(first),
        ms(process),
        ms(fresh_instance)
    );
}
