//! The signing backend, chosen in one place: aws-lc-rs with the native-only `aws-lc` feature
//! (`cfg(aws_lc)`, set by build.rs), p256 otherwise (always on wasm32). Both hold one P-256
//! private key and sign ES256 as raw low-S `r || s`; everything outside this module is the same
//! for both.

#[cfg(aws_lc)]
mod aws_lc;
#[cfg(not(aws_lc))]
mod rust;

#[cfg(aws_lc)]
pub(crate) use aws_lc::{BACKEND, Key};
#[cfg(not(aws_lc))]
pub(crate) use rust::{BACKEND, Key};

#[cfg(any(not(aws_lc), test))]
use p256::ecdsa::signature::Signer as _;

/// p256's ES256 signature (RFC 6979 deterministic), low-S, raw `r || s`: the only signer on
/// wasm32 and without `aws-lc`, the backends' cross-check with it.
#[cfg(any(not(aws_lc), test))]
pub(crate) fn sign_p256(key: &p256::ecdsa::SigningKey, signing_input: &[u8]) -> Vec<u8> {
    let sig: p256::ecdsa::Signature = key.sign(signing_input);
    let sig = sig.normalize_s().unwrap_or(sig);
    sig.to_bytes().to_vec()
}
