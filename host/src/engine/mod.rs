//! The one wasmtime engine a host runs: configuration, the epoch ticker that enforces wall-time
//! limits, the linker every plugin is instantiated against, and the on-disk compile cache.

mod cache;
mod epoch;

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use cache::CompileCache;
use epoch::EpochTicker;

use crate::capabilities;
use crate::error::CallError;
use crate::sandbox::CallState;

/// How long a compile runs before the engine's `on_compile` is told it is a slow one.
pub const SLOW_COMPILE: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the epoch advances. A call's wall-time limit is enforced to within this period.
pub const EPOCH_TICK_MS: u64 = 5;

/// Default wasm stack limit. Engine-wide: wasmtime sets it per engine, not per store.
pub const DEFAULT_STACK_KB: usize = 512;

/// Component instances the pool holds at once: the most concurrent calls one host runs.
pub const POOL_COMPONENT_INSTANCES: u32 = 512;

/// Core instances per component: componentize-py and componentize-js need up to 64.
pub const POOL_CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// Linear memories per component: componentize-py and componentize-js need up to 16.
pub const POOL_MEMORIES_PER_COMPONENT: u32 = 16;

/// Elements per table: interpreters compiled to wasm need about 100k.
pub const POOL_TABLE_ELEMENTS: usize = 100_000;

/// The largest linear memory any call may be given; per-call limits sit below it.
pub const POOL_MAX_MEMORY_BYTES: usize = 4 << 30;

/// Bytes of each returned memory and table slot kept resident and reset in place.
pub const POOL_KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// Slots whose memory is given back to the kernel together, in one batch.
pub const POOL_DECOMMIT_BATCH: usize = 16;

/// Settings fixed for the life of an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The wasm stack limit, in KiB.
    pub stack_kb: usize,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            stack_kb: DEFAULT_STACK_KB,
            cache_dir: CompileCache::default_dir(),
        }
    }
}

/// The engine, its linker and its compile cache. Cheap to clone; shared by every call.
#[derive(Clone)]
pub struct WardenEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Option<CompileCache>,
    stack_kb: usize,
    _ticker: EpochTicker,
}

impl WardenEngine {
    /// Builds the engine: pooling allocator, epoch interruption, and every capability linked.
    pub fn new(options: &EngineOptions) -> Result<Self, CallError> {
        let engine = Engine::new(&engine_config(options)).map_err(|e| {
            CallError::new(
                crate::error::ErrorKind::Internal,
                format!("cannot start the wasm engine: {e:#}"),
            )
        })?;
        let linker = capabilities::linker(&engine).map_err(|e| {
            CallError::new(
                crate::error::ErrorKind::Internal,
                format!("cannot link host interfaces: {e:#}"),
            )
        })?;
        let cache = options
            .cache_dir
            .clone()
            .map(|dir| CompileCache::new(dir, &engine));
        let ticker = EpochTicker::start(engine.weak(), EPOCH_TICK_MS);
        let stack_kb = options.stack_kb;
        Ok(WardenEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                cache,
                stack_kb,
                _ticker: ticker,
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The wasm stack limit of every call on this engine, in KiB.
    pub fn stack_kb(&self) -> usize {
        self.inner.stack_kb
    }

    /// The linker with every host interface this engine provides.
    pub(crate) fn linker(&self) -> &Linker<CallState> {
        &self.inner.linker
    }

    /// Compiles `bytes`, or loads the compiled form from the cache. `on_compile` runs when a
    /// compile that the cache could not spare is still running after [`SLOW_COMPILE`], so a
    /// caller can say that this takes a while; a fast or cached compile never calls it.
    pub fn compile(
        &self,
        bytes: &[u8],
        sha256: &str,
        on_compile: impl FnOnce(),
    ) -> Result<Component, CallError> {
        match &self.inner.cache {
            Some(cache) => cache.get_or_compile(&self.inner.engine, bytes, sha256, on_compile),
            None => noting_slow(
                || Component::new(&self.inner.engine, bytes).map_err(|e| cache::compile_error(&e)),
                on_compile,
            ),
        }
    }
}

/// Runs `work` on a thread of its own and calls `on_slow` on this one if `work` has not ended
/// after [`SLOW_COMPILE`]. `on_slow` stays on the caller's thread because it borrows the
/// caller's state; the notice comes while the compile runs, not after it.
pub(crate) fn noting_slow<T: Send>(work: impl FnOnce() -> T + Send, on_slow: impl FnOnce()) -> T {
    std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        let worker = scope.spawn(move || {
            let result = work();
            let _ = done.send(());
            result
        });
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(SLOW_COMPILE)
        {
            on_slow();
        }
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Explains a component that the instance pool cannot hold, or returns `None` for any other
/// error. wasmtime checks a component against the pool's limits when it is compiled or loaded,
/// and says which limit in words of its own; this names the limit as an author would look for it.
pub(crate) fn pool_limit_problem(e: &wasmtime::Error) -> Option<String> {
    const LIMITS: &[(&str, &str)] = &[
        ("core module instances", "core instances per component"),
        ("Wasm linear memories", "linear memories per component"),
        ("defined memories count", "linear memories per module"),
        ("tables, which exceeds", "tables per component"),
        ("defined tables count", "tables per module"),
        ("minimum element size", "elements per table"),
        ("memory has a minimum byte size", "linear memory size"),
        (
            "allocation for this module",
            "instance state per core module",
        ),
        (
            "allocation for this component",
            "instance state per component",
        ),
    ];
    let text = format!("{e:#}");
    let (_, limit) = LIMITS.iter().find(|(phrase, _)| text.contains(phrase))?;
    let cause = e
        .chain()
        .map(|cause| cause.to_string())
        .find(|cause| LIMITS.iter().any(|(phrase, _)| cause.contains(phrase)))
        .unwrap_or(text);
    let cause = cause
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    Some(format!(
        "the component exceeds this host's instance pool limit on {limit} ({cause}). Each \
         instance must fit the pool: at most {POOL_CORE_INSTANCES_PER_COMPONENT} core instances, \
         {POOL_MEMORIES_PER_COMPONENT} linear memories and {} tables of {POOL_TABLE_ELEMENTS} \
         elements per component, and {} MiB of memory; componentize-py and componentize-js \
         components fit. Make the component smaller, or raise the limit in \
         host/src/engine/mod.rs",
        POOL_MEMORIES_PER_COMPONENT * 2,
        POOL_MAX_MEMORY_BYTES >> 20,
    ))
}

fn engine_config(options: &EngineOptions) -> Config {
    let stack_bytes = options.stack_kb.saturating_mul(1024);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_COMPONENT_INSTANCES)
        .total_core_instances(POOL_COMPONENT_INSTANCES * 4)
        .total_memories(POOL_COMPONENT_INSTANCES * 2)
        .total_tables(POOL_COMPONENT_INSTANCES * 4)
        .total_stacks(POOL_COMPONENT_INSTANCES)
        .max_core_instances_per_component(POOL_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(POOL_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(POOL_MEMORIES_PER_COMPONENT * 2)
        .table_elements(POOL_TABLE_ELEMENTS)
        .max_memory_size(POOL_MAX_MEMORY_BYTES)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        // Reset a returned slot by rewriting its resident pages instead of unmapping them: an
        // madvise per call means a TLB shootdown on every other core, which made two threads
        // slower than one. PAGEMAP_SCAN (Linux 6.7+) finds which pages to rewrite.
        .linear_memory_keep_resident(POOL_KEEP_RESIDENT_BYTES)
        .table_keep_resident(POOL_KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Auto)
        .decommit_batch_size(POOL_DECOMMIT_BATCH);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(stack_bytes)
        // The fiber a call runs on must hold the wasm stack plus the host frames below it.
        .async_stack_size(stack_bytes + (1 << 20))
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}
