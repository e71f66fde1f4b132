//! txbridge as a Cloudflare Worker: a thin shell around [`txbridge_core::TxBridge`].
//!
//! Everything is built once per isolate, on its first request ([`init::build`]: the config from
//! the `TXBRIDGE_CONFIG` var, the signing key from the `TXBRIDGE_SIGNING_KEY` secret), so the
//! key cache is shared by the requests an isolate serves. The ports' adapters for the Workers
//! runtime (Fetch API, timers and `waitUntil`, the clock) are txbridge-jose's (feature
//! `workers`); WebCrypto verifies and signs (`webcrypto`). The runtime glue only exists on
//! wasm32; natively this crate is [`init`], unit-tested there.

pub mod init;
#[cfg(target_arch = "wasm32")]
mod log;
#[cfg(target_arch = "wasm32")]
mod runtime;
#[cfg(target_arch = "wasm32")]
mod webcrypto;
