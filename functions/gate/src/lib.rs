//! txbridge-gate: enforces Transaction Tokens in front of any HTTP service, asked by the proxy
//! the service already runs (ARCHITECTURE.md "Consumer gate"). Verification is txbridge-verifier's
//! (txbridge-jose's checks and key cache), so the library, the tower layer and the gate decide
//! alike; this crate adds the config and its routes, the endpoints (forward-auth, Envoy ext_authz
//! over HTTP and gRPC, health, metrics) and the logs.
#![forbid(unsafe_code)]

pub mod config;
pub mod gate;
pub mod grpc;
pub mod http;
pub mod log;
pub mod metrics;
pub mod route;

use std::sync::Arc;

pub use config::{Config, ConfigError};
pub use gate::{Answer, Gate, Presented, Query};

/// The verifier the config describes: keys from the issuer's discovery document (or
/// `jwks_url`) over HTTPS, cached by txbridge-jose's key cache, on tokio.
pub fn verifier(config: &Config) -> Result<txbridge_verifier::Verifier, txbridge_verifier::Error> {
    let mut b = txbridge_verifier::Verifier::builder(&config.issuer, &config.audience)
        .leeway(config.leeway)
        .insecure_allow_http_loopback(config.insecure_allow_http_loopback);
    if let Some(u) = &config.jwks_url {
        b = b.jwks_url(u.as_str());
    }
    let http = txbridge_verifier::ReqwestClient::with_user_agent(concat!(
        "txbridge-gate/",
        env!("CARGO_PKG_VERSION")
    ))
    .map_err(|_| txbridge_verifier::Error::Config("the HTTP client could not be built"))?;
    b.build(Arc::new(http))
}
