//! The Workers runtime glue (wasm32 only): the `fetch` event.

use std::sync::Arc;

use txbridge_core::{ClientIp, Error, MAX_REQUEST_BODY, Startup, TxBridge, error_response};
use txbridge_jose::{BodyBuffer, DateClock, FetchClient, WorkerRuntime, take_background};
use txbridge_signer::SIGNING_KEY_VAR;
use worker::{Context, Env, HttpRequest, event};

use crate::init::{self, CONFIG_VAR, CONNECTING_IP_HEADER};
use crate::log;
use crate::webcrypto::{WebCryptoSigner, WebCryptoVerifier};

// One engine per isolate, built on its first request (bindings are only available inside a
// request) and shared by all later ones; while building fails, tried again every 5 s.
static ENGINE: Startup = Startup::new(&DateClock);

async fn engine(env: &Env) -> Option<&'static TxBridge> {
    let var = |name| env.var(name).ok().map(|v| v.to_string());
    ENGINE
        .engine(|| async {
            log::init(env);
            let key = env.secret(SIGNING_KEY_VAR).ok().map(|v| v.to_string());
            let ports = (
                Arc::new(FetchClient) as _,
                Arc::new(DateClock) as _,
                Arc::new(WorkerRuntime) as _,
            );
            let signer = |key| Arc::new(WebCryptoSigner::new(key)) as _;
            let built =
                init::build(var(CONFIG_VAR).as_deref(), key.as_deref(), ports, signer).await;
            built.map(|engine| engine.with_verify_backend(Arc::new(WebCryptoVerifier)))
        })
        .await
}

#[event(fetch)]
async fn fetch(request: HttpRequest, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    let started = js_sys::Date::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    // Test builds only (feature `test-panic`): proves a panic becomes the contract's 503.
    #[cfg(feature = "test-panic")]
    #[allow(clippy::panic)]
    if path == "/__test/panic" {
        panic!("forced panic (test build)");
    }
    let response = match engine(&env).await {
        Some(engine) => match core_request(request).await {
            Ok(request) => engine.handle(request).await,
            Err(response) => response,
        },
        None => txbridge_core::unavailable_response(),
    };
    // Key refreshes the engine started run past the response, under this request's waitUntil.
    take_background()
        .into_iter()
        .for_each(|task| ctx.wait_until(task));
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
    let (parts, body) = request.into_parts();
    let Ok(body) = BodyBuffer::read(body, MAX_REQUEST_BODY).await else {
        return Err(error_response(&Error::MalformedBody));
    };
    let ip = ClientIp::from_header(&parts.headers, CONNECTING_IP_HEADER);
    Ok(ClientIp::request(parts, body.into_bytes(), ip))
}
