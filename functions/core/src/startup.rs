//! A shell's engine, built once: on the first request (or at a cold start), and while building
//! fails, again on a request at most every [`RESTART_INTERVAL`].

use std::fmt::Display;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use txbridge_jose::Clock;

use crate::service::TxBridge;

/// How long after a failed start a shell tries again (on a request).
pub const RESTART_INTERVAL: Duration = Duration::from_secs(5);

/// The engine of a Lambda environment or a Worker isolate, or, while it cannot be built (KMS
/// unreachable or refusing the key, a bad config, a missing key), `None`: the shell answers the
/// contract's 503 with `Retry-After` (no token, nothing about the cause; the cause is logged once
/// per attempt). Requests that find no engine and no recent failure build one each, at once (a
/// Worker request may not await another's I/O); the first built stays.
pub struct Startup {
    engine: OnceLock<TxBridge>,
    /// Unix milliseconds before which no new attempt is made (after a failed one).
    retry_at: Mutex<u64>,
    clock: &'static dyn Clock,
}

impl std::fmt::Debug for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Startup")
            .field("engine", &self.engine.get())
            .field("retry_at", &self.retry_at)
            .finish_non_exhaustive()
    }
}

impl Startup {
    /// `clock` spaces the attempts (the shell's clock port).
    pub const fn new(clock: &'static dyn Clock) -> Startup {
        Startup {
            engine: OnceLock::new(),
            retry_at: Mutex::new(0),
            clock,
        }
    }

    /// The engine, built by `build` unless one is built or an attempt failed within the last
    /// [`RESTART_INTERVAL`].
    pub async fn engine<F, E>(&self, build: impl FnOnce() -> F) -> Option<&TxBridge>
    where
        F: Future<Output = Result<TxBridge, E>>,
        E: Display,
    {
        if let Some(engine) = self.engine.get() {
            return Some(engine);
        }
        if self.clock.now_millis() < *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) {
            return None;
        }
        match build().await {
            Ok(built) => {
                let stored = self.engine.set(built).is_ok();
                let engine = self.engine.get()?;
                if stored {
                    let config = engine.config();
                    tracing::info!(issuer = %config.issuer(), clusters = config.clusters().len(), "txbridge started");
                }
                Some(engine)
            }
            Err(e) => {
                // The interval runs from the end of the attempt: one that waited out a silent
                // KMS must not be followed at once by another.
                *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = self
                    .clock
                    .now_millis()
                    .saturating_add(RESTART_INTERVAL.as_millis() as u64);
                tracing::error!(error = %e, retry_in_s = RESTART_INTERVAL.as_secs(), "txbridge failed to start");
                None
            }
        }
    }
}
