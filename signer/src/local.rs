//! In-binary P-256 signing key (`TXBRIDGE_SIGNING_KEY`).

use std::fmt;

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;

use crate::{ES256, KeyError, PublicJwk, SignError, Signer};

/// A P-256 private key held in memory (zeroized on drop by `p256`).
pub struct LocalSigner {
    key: SigningKey,
    jwk: PublicJwk,
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSigner")
            .field("kid", &self.jwk.kid())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl LocalSigner {
    /// Loads a key given as PKCS#8 PEM (`BEGIN PRIVATE KEY`), SEC1 PEM (`BEGIN EC PRIVATE KEY`)
    /// or a private JWK (`{"kty":"EC","crv":"P-256","d":...}`). Errors never echo the input.
    pub fn from_encoded(encoded: &str) -> Result<Self, KeyError> {
        let text = encoded.trim();
        if text.is_empty() {
            return Err(KeyError::Missing);
        }
        let secret = if text.starts_with('{') {
            p256::SecretKey::from_jwk_str(text)
                .map_err(|_| KeyError::InvalidPrivateKey("not a P-256 private JWK"))?
        } else if text.contains("-----BEGIN PRIVATE KEY-----") {
            p256::SecretKey::from_pkcs8_pem(text)
                .map_err(|_| KeyError::InvalidPrivateKey("not a P-256 PKCS#8 PEM key"))?
        } else if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            p256::SecretKey::from_sec1_pem(text)
                .map_err(|_| KeyError::InvalidPrivateKey("not a P-256 SEC1 PEM key"))?
        } else {
            return Err(KeyError::InvalidPrivateKey(
                "expected a PKCS#8 PEM, SEC1 PEM or JWK private key",
            ));
        };
        Ok(Self::from_secret(secret))
    }

    /// Generates a fresh key (development and tests).
    pub fn generate() -> Self {
        Self::from_secret(p256::SecretKey::random(
            &mut p256::elliptic_curve::rand_core::OsRng,
        ))
    }

    /// The private key as PKCS#8 PEM, for emitting a development key. Handle as a secret.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        use p256::pkcs8::EncodePrivateKey as _;
        p256::SecretKey::from(&self.key)
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|_| KeyError::InvalidPrivateKey("cannot encode key"))
    }

    fn from_secret(secret: p256::SecretKey) -> Self {
        let key = SigningKey::from(&secret);
        let point = key.verifying_key().to_encoded_point(false);
        let (x, y) = (point.x().map(|c| c.to_vec()), point.y().map(|c| c.to_vec()));
        // An uncompressed encoding of a valid public key always carries both coordinates.
        let jwk = PublicJwk::from_p256_coordinates(
            x.as_deref().unwrap_or_default(),
            y.as_deref().unwrap_or_default(),
        )
        .unwrap_or_else(|_| unreachable_jwk());
        LocalSigner { key, jwk }
    }
}

#[allow(clippy::panic)]
fn unreachable_jwk() -> PublicJwk {
    // Invariant: a P-256 verifying key always encodes to 32-byte affine coordinates.
    panic!("P-256 public key without affine coordinates")
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Signer for LocalSigner {
    fn alg(&self) -> &'static str {
        ES256
    }

    fn key_id(&self) -> &str {
        self.jwk.kid()
    }

    fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let sig: Signature = self.key.sign(signing_input);
        let sig = sig.normalize_s().unwrap_or(sig);
        Ok(sig.to_bytes().to_vec())
    }
}
