//! txbridge-jose: the verification kernel of txbridge, shared by the exchange (txbridge-core,
//! which verifies subject tokens and the TxTokens it replaces) and the consumer side
//! (txbridge-verifier, which verifies TxTokens). It holds no policy and no config language: a
//! consumer that verifies TxTokens does not build the exchange's TOML compiler.
//!
//! Modules, each using only those above it in this list:
//!
//! ```text
//! crypto  ports  urls   backend choice (aws-lc-rs or rsa/p256/sha2); HttpClient, Clock,
//!                       AsyncRuntime; URL rules
//! jws                   Algorithm, strict compact-JWS parsing, JWKS keys, VerifyBackend
//! claims                the one registered-claims check (iss, aud, exp, iat, nbf)
//! keys                  the issuer-key cache (KeySource, KeyCache)
//! txtoken               TxToken verification (typ, ES256 with a kid, txn, sub)
//! reqwest               (feature `reqwest`, native) the ports' adapters on reqwest and tokio
//! ```

#![forbid(unsafe_code)]

pub mod crypto;
pub mod glob;
pub mod ports;
pub mod urls;

pub mod jws;

pub mod claims;

pub mod keys;

pub mod txtoken;

#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
mod reqwest;

#[cfg(not(target_arch = "wasm32"))]
pub use ports::SystemClock;
pub use ports::{AsyncRuntime, Clock, HttpClient, HttpError, MAX_UPSTREAM_BODY, Task};

pub use jws::{
    Algorithm, BackendKey, JwsError, MAX_TOKEN_LEN, PublicKeyMaterial, VerifyBackend, VerifyKey,
};
pub use keys::{FetchError, KeyCache, KeyCacheConfig, KeySnapshot, KeySource, Unavailable};
pub use txtoken::{
    Expectations, TXN_TOKEN_TYP, TxTokenClaims, TxTokenError, UnverifiedTxToken,
    parse_keys as parse_txtoken_keys,
};
pub use urls::{check_url, parse_url_ascii};

#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
pub use reqwest::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, ReqwestClient, TokioRuntime};
