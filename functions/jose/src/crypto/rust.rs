//! The pure-Rust backend: rsa 0.9 / p256 0.13 verify, sha2 hashes. The only one on wasm32 and
//! without `aws-lc`, and the fallback for a key another backend cannot import.

use std::sync::Arc;

use p256::ecdsa::signature::Verifier as _;

use super::{BackendKey, PublicKeyMaterial};
use crate::alg::Algorithm;

/// Largest RSA modulus accepted (`rsa`'s own `new` would cap it at 4096 bits).
pub(crate) const MAX_RSA_BITS: usize = 8192;

/// An RS256 key.
struct Rs256(rsa::pkcs1v15::VerifyingKey<sha2::Sha256>);

/// An ES256 key.
struct Es256(p256::ecdsa::VerifyingKey);

/// The key for `alg`, or `None` when the material is of another family or invalid.
pub(super) fn import(key: &PublicKeyMaterial, alg: Algorithm) -> Option<Arc<dyn BackendKey>> {
    match (key, alg) {
        (PublicKeyMaterial::Rsa { n, e }, Algorithm::RS256) => {
            let key = rsa_public_key(n, e)?;
            Some(Arc::new(Rs256(rsa::pkcs1v15::VerifyingKey::new(key))))
        }
        (PublicKeyMaterial::P256 { sec1 }, Algorithm::ES256) => Some(Arc::new(Es256(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()?,
        ))),
        _ => None,
    }
}

/// An RSA public key as rsa accepts it (exponent rules, modulus up to [`MAX_RSA_BITS`]).
pub(crate) fn rsa_public_key(n: &[u8], e: &[u8]) -> Option<rsa::RsaPublicKey> {
    let n = rsa::BigUint::from_bytes_be(n);
    let e = rsa::BigUint::from_bytes_be(e);
    rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS).ok()
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl BackendKey for Rs256 {
    async fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        rsa::pkcs1v15::Signature::try_from(signature)
            .is_ok_and(|sig| self.0.verify(input, &sig).is_ok())
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl BackendKey for Es256 {
    async fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|sig| self.0.verify(input, &sig).is_ok())
    }
}

/// SHA-256 of `bytes`.
#[cfg_attr(aws_lc, allow(dead_code))]
pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(bytes).into()
}
