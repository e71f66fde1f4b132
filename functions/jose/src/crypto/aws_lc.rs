//! The aws-lc-rs backend (feature `aws-lc`, native only): several times faster than rsa/p256
//! (BENCHMARKS.md section 2). It imports the material rsa/p256 already accepted; a key it
//! refuses (e.g. an even RSA exponent) is left to rsa/p256.

use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

use super::{BackendKey, PublicKeyMaterial};
use crate::alg::Algorithm;

struct AwsLcKey(ParsedPublicKey);

/// The key for `alg`, or `None` when aws-lc-rs does not take it.
pub(super) fn import(key: &PublicKeyMaterial, alg: Algorithm) -> Option<Arc<dyn BackendKey>> {
    let parsed = match (key, alg) {
        (PublicKeyMaterial::Rsa { n, e }, Algorithm::RS256) => {
            use rsa::pkcs1::EncodeRsaPublicKey as _;
            // The modulus bounds of the caller lie within 2048..=8192 bits, these parameters'.
            let der = super::rust::rsa_public_key(n, e)?.to_pkcs1_der().ok()?;
            ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_bytes()).ok()?
        }
        (PublicKeyMaterial::P256 { sec1 }, Algorithm::ES256) => {
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, sec1).ok()?
        }
        _ => return None,
    };
    Some(Arc::new(AwsLcKey(parsed)))
}

#[async_trait::async_trait]
impl BackendKey for AwsLcKey {
    async fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        self.0.verify_sig(input, signature).is_ok()
    }
}

/// SHA-256 of `bytes`.
pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
