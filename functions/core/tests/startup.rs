//! `Startup`: a failed start is tried again on a request only after the restart interval; a
//! built engine is kept and never built again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::executor::block_on;
use txbridge_core::{RESTART_INTERVAL, Startup, TxBridge};
use txbridge_jose::Clock;
use txbridge_test_support::World;

/// A clock with millisecond steps (the test-support clock moves in seconds).
struct MillisClock(AtomicU64);

impl Clock for MillisClock {
    fn now(&self) -> u64 {
        self.now_millis() / 1000
    }

    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

static CLOCK: MillisClock = MillisClock(AtomicU64::new(1_700_000_000_000));

fn advance(ms: u64) {
    CLOCK.0.fetch_add(ms, Ordering::SeqCst);
}

#[test]
fn a_failed_start_is_retried_after_the_interval_and_a_built_engine_stays() {
    let startup = Startup::new(&CLOCK);
    let attempts = Cell::new(0);
    let fail = || {
        attempts.set(attempts.get() + 1);
        async { Err::<TxBridge, _>("KMS unreachable") }
    };
    assert!(block_on(startup.engine(fail)).is_none());
    assert_eq!(attempts.get(), 1);

    // Within the interval: the 503 without a new attempt.
    let interval = RESTART_INTERVAL.as_millis() as u64;
    advance(interval - 1);
    assert!(block_on(startup.engine(fail)).is_none());
    assert_eq!(attempts.get(), 1);

    // After it: one attempt, which fails again and starts a new interval.
    advance(1);
    assert!(block_on(startup.engine(fail)).is_none());
    assert_eq!(attempts.get(), 2);
    advance(interval / 2);
    assert!(block_on(startup.engine(fail)).is_none());
    assert_eq!(attempts.get(), 2);

    advance(interval);
    let engine = block_on(startup.engine(|| async { Ok::<_, String>(World::new().bridge) }));
    let engine = engine.expect("built") as *const TxBridge;
    // Built: kept, and never built again.
    let again = block_on(
        startup
            .engine(|| -> std::future::Ready<Result<TxBridge, String>> { panic!("built twice") }),
    );
    assert_eq!(again.map(|e| e as *const TxBridge), Some(engine));
}
