//! The pure-Rust backend: sha2 hashes; rsa/p256 (in `jose`) verify every key.

/// Which library verifies subject-token signatures in this build.
pub const BACKEND: &str = "rsa+p256";

/// No second form of a key: rsa/p256 verify it.
#[derive(Clone, Default)]
pub(crate) struct NativeKey;

impl std::fmt::Debug for NativeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rsa+p256")
    }
}

impl NativeKey {
    pub(crate) fn rsa(_key: &rsa::RsaPublicKey) -> Self {
        NativeKey
    }

    pub(crate) fn ec(_sec1_uncompressed: &[u8]) -> Self {
        NativeKey
    }

    /// `None`: this backend leaves the verification to rsa/p256.
    #[inline]
    pub(crate) fn verify(&self, _input: &[u8], _signature: &[u8]) -> Option<bool> {
        None
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> impl AsRef<[u8]> {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(bytes)
}
