//! The small traits a shell implements: outbound HTTP and the clock.

/// Largest upstream (discovery, JWKS) body the core accepts. Shells cap their reads at this.
pub const MAX_UPSTREAM_BODY: usize = 256 * 1024;

/// How long one upstream request (a discovery document or a JWKS), body included, may take in
/// every [`HttpClient`] adapter; a key fetch (both) is bounded at 6 s as a whole.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// Why an outbound request failed. Shells map their client's errors onto these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream connection failed")]
    Connect,
    #[error("upstream body too large")]
    BodyTooLarge,
    #[error("upstream request failed: {0}")]
    Other(String),
}

/// Outbound HTTP: `http::Request<Vec<u8>>` in, `http::Response<Vec<u8>>` out. Implementations
/// never follow redirects, enforce connect/total timeouts and cap the body at
/// [`MAX_UPSTREAM_BODY`] (the core checks the size again).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait HttpClient: Send + Sync {
    async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError>;
}

/// The current time. Injected so tests can fix it.
pub trait Clock: Send + Sync {
    /// Unix time in seconds.
    fn now(&self) -> u64;
    /// Unix time in milliseconds (latency in logs); defaults to second precision.
    fn now_millis(&self) -> u64 {
        self.now().saturating_mul(1000)
    }
}

/// The system clock (native targets; the Worker supplies its own from `Date.now()`).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[cfg(not(target_arch = "wasm32"))]
impl Clock for SystemClock {
    fn now(&self) -> u64 {
        self.now_millis() / 1000
    }

    fn now_millis(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A background task handed to the shell's runtime: `Send` natively, not on wasm32 (where the
/// Workers runtime is single-threaded and JS values are not `Send`).
#[cfg(not(target_arch = "wasm32"))]
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;
/// A background task handed to the shell's runtime (wasm32: no `Send` bound).
#[cfg(target_arch = "wasm32")]
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'static>>;

/// What the core needs of the shell's async runtime: timers and background tasks.
///
/// Both exist so that no request ever waits on a future, waker or I/O object that another
/// request created (the Workers runtime forbids it, and cancels such requests as hung): a request
/// that waits for another's key fetch sleeps on its *own* timer and re-reads shared state, and a
/// refresh of stale keys runs as a background task rather than inside someone's request.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait AsyncRuntime: Send + Sync {
    /// Completes after `duration` (Lambda: a tokio timer; Worker: `setTimeout`).
    async fn sleep(&self, duration: std::time::Duration);
    /// Runs `task` in the background, past the end of the current request (Lambda: a tokio task,
    /// which resumes in later invocations of a frozen environment; Worker: `waitUntil`).
    fn spawn(&self, task: Task);
}

/// `work`, or `None` when `deadline` (a timer of the shell's runtime) completes first. Dropping
/// `work` then cancels it; a key-cache claim it held is released on drop.
pub async fn with_deadline<T>(
    deadline: impl std::future::Future<Output = ()>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut deadline = std::pin::pin!(deadline);
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = work.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(v));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        std::task::Poll::Pending
    })
    .await
}
