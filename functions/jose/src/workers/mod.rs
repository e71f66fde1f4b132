//! The ports' adapters for the Cloudflare Workers runtime (feature `workers`, wasm32): outbound
//! HTTP over the Fetch API, timers and background tasks, the clock. The native adapters are
//! `ReqwestClient` and `TokioRuntime` (feature `reqwest`).
//!
//! Background tasks (key refreshes of stale keys) wait in a queue of the isolate until the
//! request that spawned them hands them to `waitUntil` ([`take_background`]).

mod limits;

pub use limits::{BodyBuffer, declared_length_exceeds};

#[cfg(target_arch = "wasm32")]
pub use runtime::{DateClock, FetchClient, WorkerRuntime, take_background};

#[cfg(target_arch = "wasm32")]
mod runtime {
    use std::cell::RefCell;
    use std::time::Duration;

    use futures_util::future::{Either, select};

    use super::limits::{self, BodyBuffer};
    use crate::ports::{
        AsyncRuntime, Clock, HttpClient, HttpError, MAX_UPSTREAM_BODY, REQUEST_TIMEOUT, Task,
    };

    thread_local! {
        // Background tasks spawned (key refreshes), waiting for a request's `waitUntil`.
        static BACKGROUND: RefCell<Vec<Task>> = const { RefCell::new(Vec::new()) };
    }

    /// The background tasks spawned so far, for the current request to hand to `waitUntil`.
    pub fn take_background() -> Vec<Task> {
        BACKGROUND.with(|queue| std::mem::take(&mut *queue.borrow_mut()))
    }

    /// Outbound HTTP over the Workers Fetch API: redirects are returned, never followed; the whole
    /// exchange is bounded by [`REQUEST_TIMEOUT`]; the body is capped at [`MAX_UPSTREAM_BODY`].
    #[derive(Debug, Clone, Copy, Default)]
    pub struct FetchClient;

    #[async_trait::async_trait(?Send)]
    impl HttpClient for FetchClient {
        async fn execute(
            &self,
            request: http::Request<Vec<u8>>,
        ) -> Result<http::Response<Vec<u8>>, HttpError> {
            let controller = worker::AbortController::default();
            let exchange = std::pin::pin!(fetch_capped(request, controller.signal()));
            let timeout = std::pin::pin!(worker::Delay::from(REQUEST_TIMEOUT));
            match select(exchange, timeout).await {
                Either::Left((result, _)) => result,
                Either::Right(_) => {
                    // Cancels the fetch (or the body read) still in flight.
                    controller.abort();
                    Err(HttpError::Timeout)
                }
            }
        }
    }

    async fn fetch_capped(
        request: http::Request<Vec<u8>>,
        signal: worker::AbortSignal,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let (parts, body) = request.into_parts();
        let headers = worker::Headers::new();
        for (name, value) in &parts.headers {
            let value = value
                .to_str()
                .map_err(|_| HttpError::Other("request header is not ASCII".into()))?;
            headers
                .append(name.as_str(), value)
                .map_err(|e| HttpError::Other(e.to_string()))?;
        }
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::from(parts.method.as_str().to_owned()))
            .with_headers(headers)
            .with_redirect(worker::RequestRedirect::Manual);
        if !body.is_empty() {
            init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
        }
        let request = worker::Request::new_with_init(&parts.uri.to_string(), &init)
            .map_err(|e| HttpError::Other(e.to_string()))?;
        let mut response = worker::Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|_| HttpError::Connect)?;

        let mut builder = http::Response::builder().status(response.status_code());
        for (name, value) in response.headers() {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                builder = builder.header(name, value);
            }
        }
        if builder
            .headers_ref()
            .is_some_and(|h| limits::declared_length_exceeds(h, MAX_UPSTREAM_BODY))
        {
            return Err(HttpError::BodyTooLarge);
        }
        let mut buffer = BodyBuffer::new(MAX_UPSTREAM_BODY);
        if matches!(response.body(), worker::ResponseBody::Stream(_)) {
            let stream = response
                .stream()
                .map_err(|e| HttpError::Other(e.to_string()))?;
            buffer = BodyBuffer::read(stream, MAX_UPSTREAM_BODY)
                .await
                .map_err(|e| HttpError::Other(e.to_string()))?;
            if buffer.is_over() {
                return Err(HttpError::BodyTooLarge);
            }
        }
        builder
            .body(buffer.into_bytes())
            .map_err(|e| HttpError::Other(e.to_string()))
    }

    /// Timers and background tasks in the Workers runtime. A request that waits for another's key
    /// fetch sleeps on a timer of its own (`setTimeout`, created in its own request context) and
    /// then re-reads the cache's plain state: it never awaits a promise or I/O object of another
    /// request, which the runtime forbids (it cancels such a request as hung). Background tasks are
    /// handed to `waitUntil` by the request that spawned them, once its response is ready.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct WorkerRuntime;

    #[async_trait::async_trait(?Send)]
    impl AsyncRuntime for WorkerRuntime {
        async fn sleep(&self, duration: Duration) {
            worker::Delay::from(duration).await;
        }

        fn spawn(&self, task: Task) {
            BACKGROUND.with(|queue| queue.borrow_mut().push(task));
        }
    }

    /// The isolate's clock. Workers advance `Date.now()` only on I/O, which is precise enough for
    /// token lifetimes.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct DateClock;

    impl Clock for DateClock {
        fn now(&self) -> u64 {
            self.now_millis() / 1000
        }

        fn now_millis(&self) -> u64 {
            js_sys::Date::now().max(0.0) as u64
        }
    }
}
