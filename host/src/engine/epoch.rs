//! A thread that advances the engine's epoch at a fixed period, so that a store's epoch
//! deadline turns into a wall-clock limit. It holds only a weak handle and stops with the engine.
//!
//! Ticks follow an absolute schedule: a late wake-up catches up instead of adding its delay to
//! every later tick, so a deadline of N ticks means N periods of real time on a loaded machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use wasmtime::EngineWeak;

/// Stops its thread when dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: EngineWeak, period_ms: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let period = Duration::from_millis(period_ms);
        thread::Builder::new()
            .name("warden-epoch".into())
            .spawn(move || {
                let mut next = Instant::now() + period;
                while !flag.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now < next {
                        thread::sleep(next - now);
                    }
                    let Some(engine) = engine.upgrade() else {
                        break;
                    };
                    while next <= Instant::now() {
                        engine.increment_epoch();
                        next += period;
                    }
                }
            })
            .expect("spawn the epoch ticker thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
