//! Caps a call's memory: its linear memory across all of its memories, plus what its resources
//! hold on the host (header fields, unsent bodies; see `sandbox::state`), in one budget. It
//! remembers that it refused, so that the trap that follows is reported as the memory limit.

use wasmtime::ResourceLimiter;

/// Tables may not grow past this many elements (interpreters need about 100k).
const MAX_TABLE_ELEMENTS: usize = 200_000;

/// The memory limiter of one call's store.
#[derive(Debug)]
pub struct CallLimiter {
    max_bytes: usize,
    /// Linear memory.
    in_use: usize,
    /// What the call's resources hold on the host, as last charged.
    host_bytes: usize,
    refused: bool,
    /// The refusal came from the host's side (resources), not from a growth the guest asked
    /// for and may have survived.
    host_refused: bool,
}

impl CallLimiter {
    /// A limiter that allows `max_bytes` of linear memory in total.
    pub fn new(max_bytes: usize) -> Self {
        CallLimiter {
            max_bytes,
            in_use: 0,
            host_bytes: 0,
            refused: false,
            host_refused: false,
        }
    }

    /// Whether a memory growth was refused during the call.
    pub fn memory_refused(&self) -> bool {
        self.refused
    }

    /// Charges `bytes` held on the host for the call's resources, replacing the last charge;
    /// `false` (and nothing charged) when that and the linear memory pass the limit.
    pub fn charge_host(&mut self, bytes: usize) -> bool {
        if self.in_use.saturating_add(bytes) > self.max_bytes {
            return false;
        }
        self.host_bytes = bytes;
        true
    }

    /// Marks the call as over its memory limit: it ends as `limit exceeded: memory`.
    pub fn refuse(&mut self) {
        self.refused = true;
        self.host_refused = true;
    }

    /// Whether what the call made the host hold went over the limit. Such a call fails even if
    /// the guest returns: a guest may survive a refused `memory.grow`, not this.
    pub fn host_refused(&self) -> bool {
        self.host_refused
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.in_use.saturating_sub(current).saturating_add(desired);
        if after.saturating_add(self.host_bytes) > self.max_bytes {
            self.refused = true;
            return Ok(false);
        }
        self.in_use = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_memory_against_one_budget() {
        let mut limiter = CallLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(
            !limiter.memory_growing(0, 60, None).unwrap(),
            "a second memory shares the budget"
        );
        assert!(limiter.memory_refused());
    }

    #[test]
    fn host_bytes_share_the_budget_with_linear_memory() {
        let mut limiter = CallLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(limiter.charge_host(40));
        assert!(!limiter.charge_host(41), "60 + 41 is past 100");
        assert!(
            !limiter.memory_growing(60, 61, None).unwrap(),
            "the host's 40 bytes count against growth"
        );
        assert!(limiter.charge_host(10), "a lower charge replaces the last");
        assert!(limiter.memory_growing(60, 90, None).unwrap());
    }

    #[test]
    fn growth_within_budget_is_allowed() {
        let mut limiter = CallLimiter::new(100);
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(limiter.memory_growing(40, 100, None).unwrap());
        assert!(!limiter.memory_refused());
    }
}
