//! txbridge-core: the exchange engine of txbridge.
//!
//! A Kubernetes ServiceAccount token comes in through an RFC 8693 token exchange, is validated
//! offline against its cluster's published keys, checked against the trust policy, and a
//! Transaction Token (draft-ietf-oauth-transaction-tokens) signed through the [`Signer`] port
//! goes out. Runtime-agnostic: the shells supply an [`HttpClient`], a [`Clock`], an
//! [`AsyncRuntime`] and the signer, and call [`TxBridge::handle`] with `http` types.
//!
//! The public API is what this file re-exports; every module is private. The modules form
//! layers, each using only those below it (README.md draws them; `tests/layers.rs` checks it):
//!
//! ```text
//! handler                          routes, the exchange, responses
//! replace                          TxToken replacement
//! form  mint                       request parsing; minting
//! error                            the one error type and its wire mapping
//! subject  txtoken                 SA-token validation; TxToken verification
//! config                           the TOML config compiler
//! workload                         workload ids and header rules
//! policy                           trust policy
//! keys                             the issuer-key cache
//! claims                           registered-claims checks (iss, aud, exp, iat, nbf)
//! jose                             algorithms, JWS parsing, JWKS keys, VerifyBackend
//! crypto  ports  urls  identity    backend choice; shell traits; URL rules; the verified subject
//! ```

#![forbid(unsafe_code)]

mod crypto;
mod identity;
mod ports;
mod urls;

mod jose;

mod claims;

mod keys;

mod policy;
mod workload;

mod config;

mod subject;
mod txtoken;

mod error;

mod form;
mod mint;
mod replace;

mod handler;

// The service: what a shell builds once and calls per request.
pub use error::{Error, ErrorCode};
pub use form::MAX_BODY as MAX_REQUEST_BODY;
pub use handler::{ClientIp, TxBridge, WORKLOAD_HEADERS, error_response, unavailable_response};
pub use subject::SubjectTokenError;

// Configuration.
pub use config::{Cluster, Config, ConfigError, SignerConfig, SignerKind};
pub use keys::KeyCacheConfig;

// Ports the shells implement, and the signing port (txbridge-signer).
pub use jose::{Algorithm, BackendKey, PublicKeyMaterial, VerifyBackend};
#[cfg(not(target_arch = "wasm32"))]
pub use ports::SystemClock;
pub use ports::{AsyncRuntime, Clock, HttpClient, HttpError, MAX_UPSTREAM_BODY, Task};
pub use txbridge_signer::{KeySet, PublicJwk, Signer};

// TxToken verification, shared by the exchange (replacement) and the consumer-side verifier
// (txbridge-verifier): the token, its service's keys, the key cache and the URL rules.
pub use jose::{MAX_TOKEN_LEN, VerifyKey};
pub use keys::{FetchError, KeyCache, KeySnapshot, KeySource, Unavailable};
pub use txtoken::{
    Expectations, TXN_TOKEN_TYP, TxTokenClaims, TxTokenError, UnverifiedTxToken,
    parse_keys as parse_txtoken_keys,
};
pub use urls::{check_url, parse_url_ascii};

/// Not API: internals the fuzz targets and benchmarks drive directly. No stability, no docs.
#[doc(hidden)]
pub mod __internal {
    pub use crate::error::WireError;
    pub use crate::form::{is_form_content_type, parse as parse_form};
    pub use crate::jose::{JwsError, UnverifiedJws, VERIFY_BACKEND, parse_compact, parse_jwks};
    pub use crate::keys::parse_discovery;
}
