//! The aws-lc-rs backend (feature `aws-lc`, native only).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

/// Which library verifies subject-token signatures in this build.
pub const BACKEND: &str = "aws-lc-rs";

/// The same public key parsed by aws-lc-rs, built from the components rsa/p256 already accepted.
/// `None` when aws-lc refuses a key rsa/p256 accepted (e.g. an even RSA exponent): that key is
/// then verified by rsa/p256.
#[derive(Clone, Default)]
pub(crate) struct NativeKey(Option<ParsedPublicKey>);

impl std::fmt::Debug for NativeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "aws-lc-rs"
        } else {
            "rsa+p256"
        })
    }
}

impl NativeKey {
    /// An RS256 key (RSASSA-PKCS1-v1_5 with SHA-256). The caller's modulus bounds lie within
    /// 2048..=8192 bits, the range of these parameters.
    pub(crate) fn rsa(key: &rsa::RsaPublicKey) -> Self {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        let parsed = key
            .to_pkcs1_der()
            .ok()
            .and_then(|der| ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_bytes()).ok());
        NativeKey(parsed)
    }

    /// An ES256 key (ECDSA P-256 with SHA-256 over a raw `r || s` signature).
    pub(crate) fn ec(sec1_uncompressed: &[u8]) -> Self {
        NativeKey(ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, sec1_uncompressed).ok())
    }

    /// The verdict of aws-lc-rs, or `None` when it did not parse the key. The parsed key is bound
    /// to its algorithm (the JOSE encoding of RS256 or ES256).
    #[inline]
    pub(crate) fn verify(&self, input: &[u8], signature: &[u8]) -> Option<bool> {
        self.0
            .as_ref()
            .map(|key| key.verify_sig(input, signature).is_ok())
    }

    /// Did aws-lc-rs parse the key? (Tests.)
    #[cfg(test)]
    pub(crate) fn is_parsed(&self) -> bool {
        self.0.is_some()
    }

    /// A key aws-lc-rs refused. (Tests.)
    #[cfg(test)]
    pub(crate) fn refused() -> Self {
        NativeKey(None)
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> impl AsRef<[u8]> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
}
