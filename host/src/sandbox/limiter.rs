//! Caps a call's linear memory across all of its memories, and remembers that it did, so that
//! the trap a guest raises when its allocator fails is reported as the memory limit.

use wasmtime::ResourceLimiter;

/// Tables may not grow past this many elements (interpreters need about 100k).
const MAX_TABLE_ELEMENTS: usize = 200_000;

/// The memory limiter of one call's store.
#[derive(Debug)]
pub struct CallLimiter {
    max_bytes: usize,
    in_use: usize,
    refused: bool,
}

impl CallLimiter {
    /// A limiter that allows `max_bytes` of linear memory in total.
    pub fn new(max_bytes: usize) -> Self {
        CallLimiter {
            max_bytes,
            in_use: 0,
            refused: false,
        }
    }

    /// Whether a memory growth was refused during the call.
    pub fn memory_refused(&self) -> bool {
        self.refused
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
        if after > self.max_bytes {
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
    fn growth_within_budget_is_allowed() {
        let mut limiter = CallLimiter::new(100);
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(limiter.memory_growing(40, 100, None).unwrap());
        assert!(!limiter.memory_refused());
    }
}
