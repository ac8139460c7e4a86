//! The cost of Warden's public call path against the bare-wasmtime floor, measured in one run.
//!
//! - floor: `InstancePre::instantiate` plus one typed call of `call` on `text-tools`, in a store
//!   with the minimal WASI context the component needs, on the same pooled engine;
//! - plugin path: `Plugin::call("echo", ...)`: input size check, JSON parse and schema
//!   validation, a fresh store with limits and captured stdio, async instantiation, the call,
//!   output checks;
//! - full path: the same through the host service, `WardenHost::call(CallRequest)`, as every
//!   front end calls it (the generation, the tool permission, the limits, then the plugin path);
//! - for comparison only, a configured and audited call: the same plus the agent's rights and
//!   one durable audit commit per call, which costs what the state store's commit costs;
//! - throughput of the full path on one thread and on two.
//!
//! Run with `cargo bench -p warden --bench call_path`. The last line is `ratio <full / floor>`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use warden::engine::{EngineOptions, WardenEngine};
use warden::host::{CallId, CallRequest, HostOptions, WardenHost};
use warden::plugins::Plugin;
use warden::sandbox::{CallIdentity, CallLimits};

mod floor_bindings {
    wasmtime::component::bindgen!({ path: "../wit", world: "warden:plugin/tool-plugin" });
}
use floor_bindings::ToolPluginPre;
use floor_bindings::exports::warden::plugin::tool::CallContext;

const INPUT: &str = r#"{"text":"hello from the benchmark"}"#;
const BATCHES: usize = 9;

struct FloorState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for FloorState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Median time per iteration over several batches, after a warm-up.
fn measure(name: &str, iterations: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations / 4 {
        f();
    }
    let mut per_iter: Vec<Duration> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations as u32
        })
        .collect();
    per_iter.sort();
    let median = per_iter[BATCHES / 2];
    println!(
        "{name:<34} median {:>8.2} µs/call  (min {:.2}, max {:.2}; {BATCHES} batches of {iterations})",
        micros(median),
        micros(per_iter[0]),
        micros(per_iter[BATCHES - 1])
    );
    median
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Calls per second on `threads` threads; `make_call` gives each thread its own call loop body.
fn throughput<F>(threads: usize, run_for: Duration, make_call: impl Fn() -> F) -> f64
where
    F: FnMut() + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, calls, mut call) = (stop.clone(), calls.clone(), make_call());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    call();
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(run_for);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    calls.load(Ordering::Relaxed) as f64 / run_for.as_secs_f64()
}

/// One full-path call per invocation, on a runtime of the calling thread's own.
fn full_path_loop(plugin: &Plugin) -> impl FnMut() + Send + 'static {
    let plugin = plugin.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (identity, limits) = (CallIdentity::default(), CallLimits::default());
    move || {
        rt.block_on(plugin.call("echo", INPUT, &identity, &limits))
            .expect("echo");
    }
}

/// One call through the host service per invocation, on a runtime of the calling thread's own.
fn host_loop(host: &Arc<WardenHost>, plugin: &str, agent: &str) -> impl FnMut() + Send + 'static {
    let (host, plugin, agent) = (host.clone(), plugin.to_string(), agent.to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    move || {
        let request = CallRequest {
            tenant: "local".into(),
            agent: agent.clone(),
            session: "bench".into(),
            call_id: CallId::new(),
            plugin: plugin.clone(),
            tool: "echo".into(),
            input: INPUT.into(),
        };
        rt.block_on(host.call(request)).expect("echo");
    }
}

/// A host serving text-tools from a config, with an agent that may call it and a state store
/// (so every call is audited) in `dir`.
fn configured_host(
    rt: &tokio::runtime::Runtime,
    engine: &WardenEngine,
    dir: &std::path::Path,
    path: &std::path::Path,
) -> Arc<WardenHost> {
    let config_path = dir.join("warden.toml");
    std::fs::write(
        &config_path,
        format!(
            "[state]\nurl = \"sqlite://state.db\"\n[plugins.text-tools]\npath = \"{}\"\n\
             [agents.bench]\ntools = [\"text-tools/*\"]\n",
            path.display()
        ),
    )
    .unwrap();
    let config = warden::config::WardenConfig::load(&config_path).expect("the bench config");
    let host = rt
        .block_on(WardenHost::start(
            engine.clone(),
            Arc::new(config),
            &config_path,
            HostOptions::default(),
        ))
        .expect("start the host");
    Arc::new(host)
}

/// One bare-wasmtime call per invocation.
fn floor_loop(
    engine: &wasmtime::Engine,
    pre: &ToolPluginPre<FloorState>,
) -> impl FnMut() + Send + 'static {
    let (engine, pre) = (engine.clone(), pre.clone());
    let ctx = CallContext {
        tenant: "t".into(),
        agent: "a".into(),
        session: "s".into(),
        call_id: "c".into(),
    };
    let (tool, input) = ("echo".to_string(), INPUT.to_string());
    move || {
        let state = FloorState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&engine, state);
        store.set_epoch_deadline(1_000_000);
        let instance = pre.instantiate(&mut store).unwrap();
        let out = instance
            .warden_plugin_tool()
            .call_call(&mut store, &ctx, &tool, &input)
            .unwrap();
        assert!(out.is_ok());
    }
}

fn main() {
    let path = PathBuf::from(env!("WARDEN_BUILT_PLUGINS")).join("text-tools.wasm");
    let cache = tempfile_dir();
    let engine = WardenEngine::new(&EngineOptions {
        cache_dir: Some(cache.clone()),
        ..EngineOptions::default()
    })
    .expect("engine");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plugin = rt
        .block_on(Plugin::load(&engine, &path))
        .expect("load text-tools");

    // The floor: the same component and engine, nothing but wasmtime.
    let bytes = std::fs::read(&path).unwrap();
    let component = wasmtime::component::Component::new(engine.engine(), &bytes).unwrap();
    let mut linker: Linker<FloorState> = Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let pre = ToolPluginPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let floor_call = floor_loop(engine.engine(), &pre);
    let plugin_call = full_path_loop(&plugin);
    let (file_host, name) = rt
        .block_on(WardenHost::for_file(
            engine.clone(),
            &path,
            HostOptions::default(),
        ))
        .expect("a host for text-tools");
    let file_host = Arc::new(file_host);
    let full_call = host_loop(&file_host, &name, "cli");
    let work = cache.with_extension("work");
    std::fs::create_dir_all(&work).unwrap();
    let configured = configured_host(&rt, &engine, &work, &path);

    println!(
        "call_path: text-tools/echo, {} bytes of component",
        bytes.len()
    );
    let iterations = 2000;
    let floor = measure("bare wasmtime floor", iterations, floor_call);
    let plugin_path = measure("plugin call path", iterations, plugin_call);
    let full = measure("host service call path", iterations, full_call);
    let audited = measure(
        "configured, audited (comparison)",
        iterations / 10,
        host_loop(&configured, "text-tools", "bench"),
    );
    println!(
        "plugin path / floor {:.3}; audited / floor {:.1} (one durable audit commit a call)",
        plugin_path.as_secs_f64() / floor.as_secs_f64(),
        audited.as_secs_f64() / floor.as_secs_f64()
    );

    // The floor's own scaling, in the same run, shows what this machine and wasmtime allow.
    let run_for = Duration::from_secs(3);
    let floor_one = throughput(1, run_for, || floor_loop(engine.engine(), &pre));
    let floor_two = throughput(2, run_for, || floor_loop(engine.engine(), &pre));
    let one = throughput(1, run_for, || host_loop(&file_host, &name, "cli"));
    let two = throughput(2, run_for, || host_loop(&file_host, &name, "cli"));
    println!("floor throughput 1 thread   {floor_one:>10.0} calls/s");
    println!(
        "floor throughput 2 threads  {floor_two:>10.0} calls/s  (scaling {:.2}x)",
        floor_two / floor_one
    );
    println!("throughput 1 thread         {one:>10.0} calls/s");
    println!(
        "throughput 2 threads        {two:>10.0} calls/s  (scaling {:.2}x)",
        two / one
    );
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::remove_dir_all(&work);
    println!("ratio {:.3}", full.as_secs_f64() / floor.as_secs_f64());
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
