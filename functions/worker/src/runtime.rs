//! The Workers runtime glue (wasm32 only): the `fetch` event, outbound HTTP over the Fetch API,
//! the clock from `Date.now()`, JSON log lines on the console.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::future::{Either, select};
use txbridge_core::{
    AsyncRuntime, ClientIp, Clock, HttpClient, HttpError, MAX_UPSTREAM_BODY, Task, TxBridge,
};
use worker::{Context, Env, HttpRequest, event};

use crate::init::{self, CONFIG_VAR, SIGNING_KEY_SECRET};
use crate::limits::{self, BodyBuffer, MAX_REQUEST_BODY, UPSTREAM_TIMEOUT};

mod log;
mod webcrypto;

/// The engine of this isolate, or why there is none (a message without secrets).
type Engine = Result<Rc<TxBridge>, Rc<str>>;

thread_local! {
    // A Worker isolate is single-threaded: this is one engine per isolate, built on its first
    // request (bindings are only available inside a request) and shared by all later ones.
    static ENGINE: OnceCell<Engine> = const { OnceCell::new() };
    // Background tasks the engine spawned (key refreshes), waiting for a request's `waitUntil`.
    static BACKGROUND: RefCell<Vec<Task>> = const { RefCell::new(Vec::new()) };
}

fn engine(env: &Env) -> Engine {
    ENGINE.with(|cell| {
        cell.get_or_init(|| {
            log::init(
                env.var(log::LEVEL_VAR)
                    .ok()
                    .map(|v| v.to_string())
                    .as_deref(),
            );
            let config = env.var(CONFIG_VAR).ok().map(|v| v.to_string());
            let key = env.secret(SIGNING_KEY_SECRET).ok().map(|v| v.to_string());
            init::build(
                config.as_deref(),
                key.as_deref(),
                Arc::new(FetchClient),
                Arc::new(DateClock),
                Arc::new(WorkerRuntime),
                |rust| Arc::new(webcrypto::WebCryptoSigner::new(rust)),
            )
            .map(|engine| engine.with_verify_backend(Arc::new(webcrypto::WebCryptoVerifier)))
            .map(Rc::new)
            .map_err(|err| Rc::from(err.to_string()))
        })
        .clone()
    })
}

#[event(fetch)]
async fn fetch(request: HttpRequest, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    let started = js_sys::Date::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    #[cfg(feature = "test-panic")]
    if path == "/__test/panic" {
        // Test builds only (feature `test-panic`): proves a panic becomes the contract's 503.
        #[allow(clippy::panic)]
        {
            panic!("forced panic (test build)");
        }
    }
    let response = match engine(&env) {
        Ok(engine) => match core_request(request).await {
            Ok(request) => engine.handle(request).await,
            Err(response) => response,
        },
        Err(reason) => {
            tracing::error!(reason = &*reason, "worker misconfigured");
            txbridge_core::unavailable_response()
        }
    };
    // Key refreshes the engine started run past the response, under this request's waitUntil.
    for task in BACKGROUND.with(|queue| std::mem::take(&mut *queue.borrow_mut())) {
        ctx.wait_until(task);
    }
    // Method, path and status only: the query string and the body may carry tokens.
    // `wasm_kib` (the isolate's linear memory, which never shrinks) and `js_refs` (the JS values
    // the Rust side holds, all requests in flight included) show a leak in our code where the
    // process's RSS cannot: that follows V8's heap sizing. The load test asserts both stay flat.
    tracing::info!(
        method = method.as_str(),
        path = path.as_str(),
        status = response.status().as_u16(),
        ms = (js_sys::Date::now() - started).max(0.0) as u64,
        wasm_kib = core::arch::wasm32::memory_size(0) as u64 * 64,
        js_refs = wasm_bindgen::externref_heap_live_count(),
        "request"
    );
    Ok(worker_response(response))
}

/// The Workers request as the core takes it: body read up to `MAX_REQUEST_BODY + 1` bytes, the
/// client address from `CF-Connecting-IP` as a [`ClientIp`] extension.
async fn core_request(
    request: HttpRequest,
) -> Result<http::Request<Vec<u8>>, http::Response<Vec<u8>>> {
    let (mut parts, mut body) = request.into_parts();
    let mut buffer = BodyBuffer::new(MAX_REQUEST_BODY);
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            tracing::info!("request body could not be read");
            return Err(txbridge_core::error_response(
                &txbridge_core::Error::MalformedBody,
            ));
        };
        if !buffer.push(&chunk) {
            break;
        }
    }
    // Drop the runtime's own extensions (abort signal, cf object): the core needs none of them.
    parts.extensions = http::Extensions::new();
    if let Some(ip) = limits::client_ip(&parts.headers) {
        parts.extensions.insert(ClientIp(ip));
    }
    Ok(http::Request::from_parts(parts, buffer.into_bytes()))
}

fn worker_response(response: http::Response<Vec<u8>>) -> worker::Response {
    let (parts, body) = response.into_parts();
    let headers = worker::Headers::new();
    for (name, value) in &parts.headers {
        // The core only sets ASCII header values; anything else is dropped rather than panic.
        if let Ok(value) = value.to_str() {
            let _ = headers.append(name.as_str(), value);
        }
    }
    worker::ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(headers)
        .fixed(body)
}

/// Outbound HTTP over the Workers Fetch API: redirects are returned, never followed; the whole
/// exchange is bounded by [`UPSTREAM_TIMEOUT`]; the body is capped at [`MAX_UPSTREAM_BODY`].
#[derive(Debug, Clone, Copy, Default)]
struct FetchClient;

#[async_trait::async_trait(?Send)]
impl HttpClient for FetchClient {
    async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let controller = worker::AbortController::default();
        let exchange = std::pin::pin!(fetch_capped(request, controller.signal()));
        let timeout = std::pin::pin!(worker::Delay::from(UPSTREAM_TIMEOUT));
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
        let mut stream = response
            .stream()
            .map_err(|e| HttpError::Other(e.to_string()))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| HttpError::Other(e.to_string()))?;
            if !buffer.push(&chunk) {
                return Err(HttpError::BodyTooLarge);
            }
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
struct WorkerRuntime;

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
struct DateClock;

impl Clock for DateClock {
    fn now(&self) -> u64 {
        self.now_millis() / 1000
    }

    fn now_millis(&self) -> u64 {
        js_sys::Date::now().max(0.0) as u64
    }
}
