//! Test support for txbridge, shared by the tests, benches and fuzz targets of the workspace
//! (not published; rustls' `rustls-test` is the model):
//!
//! - [`FixedClock`]: the one settable [`Clock`](txbridge_jose::Clock) of the tests;
//! - [`FnHttp`]: the one [`HttpClient`](txbridge_jose::HttpClient) double, a closure that
//!   counts requests per URL, with [`Routes`] as the usual closure (URL -> canned [`Upstream`]);
//! - [`TestRuntime`]: the [`AsyncRuntime`](txbridge_jose::AsyncRuntime) of the tests, whose
//!   timers follow the fixed clock or complete at once, and whose background tasks wait in a
//!   queue until the test runs them;
//! - [`World`]: the multi-cluster test world (clusters `alpha`, `beta`, and `gamma` for the
//!   fuzz target), its config, keys ([`TestKey`]) and token crafting ([`craft`], [`sa_claims`]);
//! - `localstack` (feature `localstack`): LocalStack's KMS started on a free loopback port.
//!
//! Only the crate-root APIs of `txbridge-core` and `txbridge-jose` are used, so that the tests see them as their
//! shells do.
// Test support: a failed set-up is a failed test, and panicking says where.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod clock;
mod http;
mod keys;
#[cfg(feature = "localstack")]
pub mod localstack;
mod runtime;
mod world;

pub use clock::FixedClock;
pub use http::{FnHttp, Routes, Upstream};
pub use keys::{TestKey, claims_of, craft, craft_with, ec_key, rsa_key, sa_claims, seeded_signer};
pub use runtime::TestRuntime;
pub use world::{
    ALPHA_DISCOVERY, ALPHA_ISS, ALPHA_JWKS, BETA_DISCOVERY, BETA_ISS, BETA_JWKS, GAMMA_ISS,
    GAMMA_JWKS, NOW, Pace, TD, World, config_toml, form, pairs, verify_txtoken,
};
