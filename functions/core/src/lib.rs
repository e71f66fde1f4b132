//! txbridge-core: the exchange engine of txbridge.
//!
//! A Kubernetes ServiceAccount token comes in through an RFC 8693 token exchange, is validated
//! offline against its cluster's published keys, checked against the trust policy, and a
//! Transaction Token (draft-ietf-oauth-transaction-tokens) signed through the [`Signer`] port
//! goes out. Runtime-agnostic: the shells supply an [`HttpClient`], a [`Clock`] and the
//! signer, and call [`TxBridge::handle`] with `http` types.
//!
//! [`Signer`]: txbridge_signer::Signer
#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod error;
pub mod form;
pub mod handler;
pub mod jose;
pub mod mint;
pub mod policy;
pub mod ports;
pub mod replace;
pub mod txtoken;
pub mod validate;
pub mod workload;

pub use config::{Algorithm, Cluster, Config, ConfigError, SignerConfig, SignerKind};
pub use error::{Error, ErrorCode, SubjectTokenError};
pub use handler::{ClientIp, TxBridge, error_response, unavailable_response};
#[cfg(not(target_arch = "wasm32"))]
pub use ports::SystemClock;
pub use ports::{
    AsyncRuntime, BackendKey, Clock, HttpClient, HttpError, MAX_UPSTREAM_BODY, Task, VerifyBackend,
};
pub use txbridge_signer::{KeySet, PublicJwk, Signer};
pub use txtoken::{TxTokenClaims, TxTokenError};
