//! The Workers runtime glue (wasm32 only): the `fetch` event.

use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::StreamExt as _;
use txbridge_core::{ClientIp, Error, MAX_REQUEST_BODY, TxBridge, error_response};
use txbridge_jose::{BodyBuffer, DateClock, FetchClient, WorkerRuntime, take_background};
use txbridge_signer::SIGNING_KEY_VAR;
use worker::{Context, Env, HttpRequest, event};

use crate::init::{self, CONFIG_VAR};
use crate::log;
use crate::webcrypto::{WebCryptoSigner, WebCryptoVerifier};

/// The engine of this isolate, or why there is none (a message without secrets).
type Engine = Result<Rc<TxBridge>, Rc<str>>;

thread_local! {
    // A Worker isolate is single-threaded: one engine per isolate, built on its first request
    // (bindings are only available inside a request) and shared by all later ones.
    static ENGINE: OnceCell<Engine> = const { OnceCell::new() };
}

async fn engine(env: &Env) -> Engine {
    if let Some(engine) = ENGINE.with(|cell| cell.get().cloned()) {
        return engine;
    }
    let level = env.var(log::LEVEL_VAR).ok().map(|v| v.to_string());
    log::init(
        level.as_deref(),
        env.analytics_engine(log::METRICS_BINDING).ok(),
    );
    let config = env.var(CONFIG_VAR).ok().map(|v| v.to_string());
    let key = env.secret(SIGNING_KEY_VAR).ok().map(|v| v.to_string());
    let ports = (
        Arc::new(FetchClient) as _,
        Arc::new(DateClock) as _,
        Arc::new(WorkerRuntime) as _,
    );
    let built = init::build(config.as_deref(), key.as_deref(), ports, |key| {
        Arc::new(WebCryptoSigner::new(key))
    })
    .await
    .map(|engine| Rc::new(engine.with_verify_backend(Arc::new(WebCryptoVerifier))))
    .map_err(|err| Rc::from(err.to_string()));
    // Concurrent first requests may each build one; the first stored stays.
    ENGINE.with(|cell| cell.get_or_init(|| built).clone())
}

#[event(fetch)]
async fn fetch(request: HttpRequest, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    let started = js_sys::Date::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    #[cfg(feature = "test-panic")]
    if path == "/__test/panic" {
        // Test builds only (feature `test-panic`): proves a panic becomes the contract's 503.
        #[allow(clippy::panic)]
        {
            panic!("forced panic (test build)");
        }
    }
    let response = match engine(&env).await {
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
    for task in take_background() {
        ctx.wait_until(task);
    }
    // Method, path and status only: the query string and the body may carry tokens. `wasm_kib`
    // (the isolate's linear memory, which never shrinks) and `js_refs` (the JS values the Rust
    // side holds) show a leak in our code where the process's RSS cannot; the load test asserts
    // both stay flat.
    tracing::info!(
        method = method.as_str(),
        path = path.as_str(),
        status = response.status().as_u16(),
        ms = (js_sys::Date::now() - started).max(0.0) as u64,
        wasm_kib = core::arch::wasm32::memory_size(0) as u64 * 64,
        js_refs = wasm_bindgen::externref_heap_live_count(),
        "request"
    );
    let (parts, body) = response.into_parts();
    Ok(worker::ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers((&parts.headers).into())
        .fixed(body))
}

/// The Workers request as the core takes it: the body read up to `MAX_REQUEST_BODY + 1` bytes
/// (so an oversized one reaches the core as such: 413), the client address from
/// `CF-Connecting-IP` as a [`ClientIp`] extension.
async fn core_request(
    request: HttpRequest,
) -> Result<http::Request<Vec<u8>>, http::Response<Vec<u8>>> {
    let (mut parts, mut body) = request.into_parts();
    let mut buffer = BodyBuffer::new(MAX_REQUEST_BODY);
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return Err(error_response(&Error::MalformedBody));
        };
        if !buffer.push(&chunk) {
            break;
        }
    }
    // Drop the runtime's own extensions (abort signal, cf object): the core needs none of them.
    parts.extensions = http::Extensions::new();
    if let Some(ip) = init::client_ip(&parts.headers) {
        parts.extensions.insert(ClientIp(ip));
    }
    Ok(http::Request::from_parts(parts, buffer.into_bytes()))
}
