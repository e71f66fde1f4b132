//! txbridge as a Cloudflare Worker.
//!
//! A thin shell around [`txbridge_core::TxBridge`]: the `fetch` event converts the Workers request
//! into an `http::Request<Vec<u8>>`, the core answers, the answer goes back as a Workers response.
//! Everything is built once per isolate (config from the `TXBRIDGE_CONFIG` var, the signing key
//! from the `TXBRIDGE_SIGNING_KEY` secret), so the core's key cache is shared by the requests an
//! isolate serves. Outbound HTTP (discovery, JWKS) goes through the Workers Fetch API.
//!
//! The runtime glue (`runtime`) only exists on wasm32. The rules it applies (what is built at
//! start-up, body limits, the client address) live in target-independent modules that are
//! unit-tested natively.

mod init;
mod limits;
#[cfg(target_arch = "wasm32")]
mod runtime;

pub use init::{CONFIG_VAR, InitError, SIGNING_KEY_SECRET, build};
pub use limits::{
    BodyBuffer, CONNECTING_IP_HEADER, MAX_REQUEST_BODY, UPSTREAM_TIMEOUT, client_ip,
    declared_length_exceeds,
};
