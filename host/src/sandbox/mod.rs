//! The sandbox one call runs in: its limits, and the state of its store. A call's store is built
//! fresh, with no ambient authority: no environment, no arguments, no preopened directories, no
//! network, and the guest's stdout and stderr captured for the log.

mod identity;
mod limiter;
mod output;
mod state;

pub use identity::{CallId, MAX_CALL_ID_BYTES};
pub use limiter::CallLimiter;
pub use output::CapturedOutput;
pub use state::{CallIdentity, CallState, MAX_RESOURCES, new_call_id};

/// Default wall-clock limit for one call.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default linear-memory limit for one call, across all of the component's memories.
pub const DEFAULT_MEMORY_MB: u64 = 64;
/// Default limit on a tool's output.
pub const DEFAULT_MAX_OUTPUT_KB: u64 = 1024;
/// The largest output limit, and so the largest output a call can ever return: 128 MiB. The
/// output must fit in the guest's memory as well (`--memory-mb`).
pub const MAX_OUTPUT_KB: u64 = 128 * 1024;
/// The hostcall fuel a call gets at least: how many bytes the plugin may hand the host in one
/// go (one import call's arguments, or its result), when its output limit is lower.
pub const MIN_HOSTCALL_FUEL_BYTES: usize = 16 << 20;
/// Default limit on a tool's input.
pub const DEFAULT_MAX_INPUT_KB: u64 = 1024;
/// How much of a call's stdout and stderr is kept for the log; the rest is counted and dropped.
pub const CAPTURED_OUTPUT_BYTES: usize = 64 * 1024;

/// The limits of one call. The wasm stack limit is engine-wide: see
/// [`EngineOptions::stack_kb`](crate::engine::EngineOptions::stack_kb).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Wall-clock time, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory, in MiB.
    pub memory_mb: u64,
    /// The tool's output, in KiB.
    pub max_output_kb: u64,
    /// The tool's input, in KiB.
    pub max_input_kb: u64,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            memory_mb: DEFAULT_MEMORY_MB,
            max_output_kb: DEFAULT_MAX_OUTPUT_KB,
            max_input_kb: DEFAULT_MAX_INPUT_KB,
        }
    }
}

impl CallLimits {
    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// The output limit in bytes.
    pub fn output_bytes(&self) -> usize {
        usize::try_from(self.max_output_kb.saturating_mul(1024)).unwrap_or(usize::MAX)
    }

    /// The hostcall fuel of a call: the most bytes wasmtime copies out of the guest in one go.
    /// It is the output limit (capped at [`MAX_OUTPUT_KB`]), but at least
    /// [`MIN_HOSTCALL_FUEL_BYTES`] so that imports are not starved by a small output limit, and a
    /// little more for the result's other fields. An output over it is refused before it is
    /// copied; one between the output limit and it is copied, then refused.
    pub fn hostcall_fuel(&self) -> usize {
        const SLACK: usize = 64 * 1024;
        let cap = usize::try_from(MAX_OUTPUT_KB * 1024).unwrap_or(usize::MAX);
        self.output_bytes()
            .min(cap)
            .max(MIN_HOSTCALL_FUEL_BYTES)
            .saturating_add(SLACK)
    }

    /// The input limit in bytes.
    pub fn input_bytes(&self) -> usize {
        usize::try_from(self.max_input_kb.saturating_mul(1024)).unwrap_or(usize::MAX)
    }
}
