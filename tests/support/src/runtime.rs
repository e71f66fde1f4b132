use std::sync::{Arc, Mutex};

use txbridge_jose::{AsyncRuntime, Clock as _, Task};

use crate::clock::FixedClock;
use crate::http::YieldOnce;

/// The async runtime of the tests. Background tasks wait in a queue until the test runs them
/// ([`TestRuntime::run_background`]) or, with timers that follow the clock, a request sleeps.
///
/// Timers either follow a [`FixedClock`] ([`TestRuntime::new`]): a short one (a waiter's poll
/// interval, under a second) runs the queued tasks and yields once; a long one (a fetch
/// deadline) completes only once the clock has passed it, which a test does by setting the
/// time. Or they complete at once ([`TestRuntime::immediate`]), for requests that run one after
/// the other and upstreams that answer at once.
pub struct TestRuntime {
    clock: Option<Arc<FixedClock>>,
    queued: Mutex<Vec<Task>>,
}

impl std::fmt::Debug for TestRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRuntime")
            .field("clock", &self.clock)
            .field("pending", &self.pending())
            .finish()
    }
}

impl TestRuntime {
    /// Timers follow `clock`.
    pub fn new(clock: Arc<FixedClock>) -> TestRuntime {
        TestRuntime {
            clock: Some(clock),
            queued: Mutex::default(),
        }
    }

    /// Timers complete at once.
    pub fn immediate() -> TestRuntime {
        TestRuntime {
            clock: None,
            queued: Mutex::default(),
        }
    }

    /// Runs the queued background tasks (and those they queue) to completion; returns how many.
    pub fn run_background(&self) -> usize {
        let mut n = 0;
        loop {
            let tasks: Vec<Task> = std::mem::take(&mut *self.queued.lock().unwrap());
            if tasks.is_empty() {
                return n;
            }
            n += tasks.len();
            for t in tasks {
                futures::executor::block_on(t);
            }
        }
    }

    /// Background tasks waiting in the queue.
    pub fn pending(&self) -> usize {
        self.queued.lock().unwrap().len()
    }
}

#[async_trait::async_trait]
impl AsyncRuntime for TestRuntime {
    async fn sleep(&self, duration: std::time::Duration) {
        let Some(clock) = &self.clock else {
            return;
        };
        if duration < std::time::Duration::from_secs(1) {
            // While a request waits, the background tasks make progress (as a runtime's would).
            let tasks: Vec<Task> = std::mem::take(&mut *self.queued.lock().unwrap());
            futures::future::join_all(tasks).await;
            return YieldOnce(false).await;
        }
        let until = clock.now_millis() + duration.as_millis() as u64;
        // Not woken by itself: it is polled again whenever its task is (by the work it bounds).
        std::future::poll_fn(|_| {
            if clock.now_millis() >= until {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    fn spawn(&self, task: Task) {
        self.queued.lock().unwrap().push(task);
    }
}
