//! The crypto backend, chosen in one place: aws-lc-rs with the native-only `aws-lc` feature
//! (`cfg(aws_lc)`, set by build.rs), rsa/p256/sha2 otherwise (always on wasm32). Nothing outside
//! this module names a backend.
//!
//! What a backend provides: SHA-256, and a second parse of a JWKS key that rsa/p256 accepted
//! (`NativeKey`), preferred for verification when it exists. rsa/p256 always parse and check
//! every key, so which keys a JWKS may hold never depends on the backend; a key the backend
//! cannot parse is verified by rsa/p256 (`jws::VerifyKey::verify`). The shell's own verifier
//! (the Worker's WebCrypto, a `VerifyBackend`) sits in front of both, per key.

#[cfg(aws_lc)]
mod aws_lc;
#[cfg(not(aws_lc))]
mod rust;

#[cfg(aws_lc)]
pub(crate) use aws_lc::NativeKey;
#[cfg(aws_lc)]
pub use aws_lc::{BACKEND, sha256};
#[cfg(not(aws_lc))]
pub(crate) use rust::NativeKey;
#[cfg(not(aws_lc))]
pub use rust::{BACKEND, sha256};
