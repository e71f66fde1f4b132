//! txbridge-jose: the verification kernel of txbridge, shared by the exchange (txbridge-core,
//! which verifies subject tokens and the TxTokens it replaces) and the consumer side
//! (txbridge-verifier and txbridge-gate, which verify TxTokens). No policy and no config
//! language: a consumer that verifies TxTokens does not build the exchange's TOML compiler.
//!
//! The API is this file's `pub use` list; every module is private. Modules form layers, each
//! using only those below it (`functions/core/tests/layers.rs` checks it):
//!
//! ```text
//! reqwest  workers      the ports' adapters: reqwest and tokio (feature `reqwest`, native);
//!                       the Workers runtime (feature `workers`, wasm32)
//! txtoken               TxToken verification (typ, ES256 with a kid, txn, sub)
//! keys                  the issuer-key cache (KeySource, KeyCache)
//! claims                the one registered-claims check (iss, aud, exp, iat, nbf)
//! jwk                   JSON Web Keys: accepted keys, imported once into a backend (VerifyKey)
//! jws                   strict compact-JWS parsing
//! crypto                the verify port (VerifyBackend, BackendKey) and the build's backend
//! alg encoding error    Algorithm; base64url and complete JSON; TokenError
//! glob ports trace urls workload globs; HttpClient, Clock, AsyncRuntime; traceparent; URL rules
//! ```

#![forbid(unsafe_code)]

mod alg;
mod encoding;
mod error;
mod glob;
mod ports;
mod trace;
mod urls;

mod crypto;

mod jws;

mod jwk;

mod claims;

mod keys;

mod txtoken;

#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
mod reqwest;
#[cfg(feature = "workers")]
mod workers;

// Ports a runtime supplies, and the deadline helper built on them.
#[cfg(not(target_arch = "wasm32"))]
pub use ports::SystemClock;
pub use ports::{
    AsyncRuntime, Clock, HttpClient, HttpError, MAX_UPSTREAM_BODY, REQUEST_TIMEOUT, Task,
    with_deadline,
};

// JOSE: algorithms, encodings, compact JWS, keys and their verification.
pub use alg::Algorithm;
pub use crypto::{BackendKey, NativeBackend, PublicKeyMaterial, VerifyBackend, sha256};
pub use encoding::{b64_decode, b64_encode, b64_encode_into, strict_json};
pub use error::TokenError;
pub use jwk::{Jwk, VerifyKey, parse_jwks, parse_verify_keys};
pub use jws::{MAX_TOKEN_LEN, UnverifiedJws, parse_compact};

// The registered claims.
pub use claims::{Accept, Audience, Registered, Times, Validation, check_registered, numeric_date};

// The issuer-key cache.
pub use keys::{
    FETCH_DEADLINE, KEY_FETCH_TARGET, KeyCache, KeyCacheConfig, KeyFetchError, KeySnapshot,
    KeySource, KeysUnavailable,
};

// Transaction Tokens.
pub use txtoken::{
    Expectations, TXN_TOKEN_TYP, TxTokenClaims, UnverifiedTxToken, parse_txtoken_keys,
    verify_txtoken,
};

// Workload globs and URL rules.
pub use glob::{Glob, MAX_WORKLOAD_LEN, valid_workload_byte};
pub use urls::{UrlError, check_url, parse_url, parse_url_ascii};

// W3C Trace Context (`traceparent`), for log lines.
pub use trace::trace_id;

#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
pub use reqwest::{CONNECT_TIMEOUT, ReqwestClient, TokioRuntime};
#[cfg(feature = "workers")]
pub use workers::{BodyBuffer, declared_length_exceeds};
#[cfg(all(feature = "workers", target_arch = "wasm32"))]
pub use workers::{DateClock, FetchClient, WorkerRuntime, take_background};

/// Not API: internals the fuzz targets and benchmarks drive directly. No stability, no docs.
#[doc(hidden)]
pub mod __internal {
    pub use crate::crypto::BACKEND as VERIFY_BACKEND;
    pub use crate::keys::{discovery_request, jwks_request, parse_discovery, parse_jwks_response};
}
