//! Signature verification and hashing, behind one port. A [`VerifyBackend`] imports an accepted
//! public key ([`PublicKeyMaterial`]) for one algorithm and gives a [`BackendKey`] that verifies;
//! every verification goes through one (one path, async, whatever the backend).
//!
//! The build's own backend ([`NativeBackend`]) is chosen in one place: aws-lc-rs with the
//! native-only `aws-lc` feature (`cfg(aws_lc)`, set by build.rs), rsa/p256 otherwise (always on
//! wasm32). A shell may bring its own (the Worker: WebCrypto, which workerd runs natively); a key
//! a backend cannot import is verified by the native one, so which keys are usable and every
//! verdict never depend on the backend. Nothing outside this module names a library.

use std::sync::Arc;

use crate::alg::Algorithm;

#[cfg(aws_lc)]
mod aws_lc;
mod rust;

pub(crate) use rust::{MAX_RSA_BITS, rsa_public_key};

/// The public half of an accepted key, in the form a backend imports: RSA modulus and exponent
/// (big-endian), or an uncompressed SEC1 P-256 point (65 bytes). Validated already: the modulus
/// is 2048-8192 bits and rsa accepts it, the point is on the curve.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKeyMaterial {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { sec1: Vec<u8> },
}

/// Imports keys for verification (the port; [`NativeBackend`] and the Worker's WebCrypto).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait VerifyBackend: Send + Sync {
    /// A short name for logs and benchmarks.
    fn name(&self) -> &'static str;
    /// Imports one accepted key for `alg`, once per JWKS fetch; `None` when it cannot.
    async fn import(&self, key: &PublicKeyMaterial, alg: Algorithm) -> Option<Arc<dyn BackendKey>>;
}

/// A key imported by a [`VerifyBackend`], bound to one algorithm (RS256: RSASSA-PKCS1-v1_5 with
/// SHA-256; ES256: ECDSA P-256 with SHA-256 over a raw `r || s` signature).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait BackendKey: Send + Sync {
    /// Does `signature` verify over `input`? Any error is `false`.
    async fn verify(&self, input: &[u8], signature: &[u8]) -> bool;
}

/// Which library this build verifies with natively: `"aws-lc-rs"` with the `aws-lc` feature
/// (native targets), `"rsa+p256"` otherwise.
#[cfg(aws_lc)]
pub const BACKEND: &str = "aws-lc-rs";
/// Which library this build verifies with natively.
#[cfg(not(aws_lc))]
pub const BACKEND: &str = "rsa+p256";

/// The build's own backend (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeBackend;

impl NativeBackend {
    /// [`VerifyBackend::import`], without waiting: the native libraries parse at once.
    pub fn import_now(
        &self,
        key: &PublicKeyMaterial,
        alg: Algorithm,
    ) -> Option<Arc<dyn BackendKey>> {
        #[cfg(aws_lc)]
        if let Some(key) = aws_lc::import(key, alg) {
            return Some(key);
        }
        rust::import(key, alg)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl VerifyBackend for NativeBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn import(&self, key: &PublicKeyMaterial, alg: Algorithm) -> Option<Arc<dyn BackendKey>> {
        self.import_now(key, alg)
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    #[cfg(aws_lc)]
    {
        aws_lc::sha256(bytes)
    }
    #[cfg(not(aws_lc))]
    {
        rust::sha256(bytes)
    }
}

#[cfg(test)]
mod tests;
