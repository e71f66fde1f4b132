//! txbridge-core: the exchange engine of txbridge.
//!
//! A Kubernetes ServiceAccount token comes in through an RFC 8693 token exchange, is validated
//! offline against its cluster's published keys, checked against the trust policy, and a
//! Transaction Token (draft-ietf-oauth-transaction-tokens) signed through the [`Signer`] port
//! goes out. Runtime-agnostic: the shells supply an [`HttpClient`], a [`Clock`], an
//! [`AsyncRuntime`] and the signer, and call [`TxBridge::handle`] with `http` types.
//!
//! The public API is what this file re-exports; every module is private. JOSE, the issuer-key
//! cache, the registered-claims check and TxToken verification are txbridge-jose, re-exported
//! here. The modules form layers, each using only those below it (README.md draws them;
//! `tests/layers.rs` checks it):
//!
//! ```text
//! handler  startup                 routes, the exchange, responses; the engine, built once
//! replace                          TxToken replacement
//! form  mint                       request parsing; minting
//! error                            the one error type and its wire mapping
//! subject                          SA-token validation (subject and actor tokens)
//! config                           the TOML config compiler
//! workload                         workload ids and header rules
//! policy                           trust policy
//! condition  subscriber            CEL conditions; the shells' log subscriber
//! identity                         the verified subject
//! ---------------------------------------------------------------------------------------------
//! txbridge-jose                    ports, crypto, JWS/JWKS, claims, key cache, TxTokens
//! ```

#![forbid(unsafe_code)]

mod identity;
mod logline;

mod subscriber;

mod condition;

mod policy;
mod workload;

mod config;

mod subject;

mod error;

mod form;

mod mint;
mod request;

mod explain;
mod replace;

mod service;

mod handler;
mod startup;

// The service: what a shell builds once and calls per request.
pub use error::{Error, ErrorCode};
pub use form::MAX_BODY as MAX_REQUEST_BODY;
pub use handler::{UPSTREAM_BUDGET, WORKLOAD_HEADERS, error_response, unavailable_response};
pub use logline::{AnalyticsPoint, EXCHANGE_TARGET, LogLine, METRICS_NAMESPACE, log_line};
pub use request::ClientIp;
pub use service::TxBridge;
pub use startup::{RESTART_INTERVAL, Startup};
pub use subject::SubjectTokenError;
pub use subscriber::{LineSubscriber, LogFilter};
pub use txbridge_jose::trace_id;

// Configuration.
pub use config::{Cluster, Config, ConfigError, ConfigProblem};
pub use explain::{Answer, ExplainRequest, ExplainSubject, Explanation, PolicyVerdict};

/// Not API: internals the fuzz targets and benchmarks drive directly. No stability, no docs.
#[doc(hidden)]
pub mod __internal {
    pub use crate::error::WireError;
    pub use crate::form::{is_form_content_type, parse as parse_form};
}
