use std::sync::atomic::{AtomicU64, Ordering};

use txbridge_jose::Clock;

/// A fixed clock the test sets (Unix seconds; `Default` is 0).
#[derive(Debug, Default)]
pub struct FixedClock(AtomicU64);

impl FixedClock {
    /// A clock standing at `now`.
    pub fn at(now: u64) -> FixedClock {
        FixedClock(AtomicU64::new(now))
    }

    /// Moves the clock to `now` (forwards or back).
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
