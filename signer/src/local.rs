//! In-binary P-256 signing key (`TXBRIDGE_SIGNING_KEY`).

use std::fmt;

use crate::crypto::{self, Key};
use crate::{ES256, KeyError, PublicJwk, SignError, Signer};

/// Which library signs in this build: `"aws-lc-rs"` with the native-only `aws-lc` feature,
/// `"p256"` otherwise (always on wasm32). The key, its public JWK and kid are the same either way.
pub const SIGN_BACKEND: &str = crypto::BACKEND;

/// A P-256 private key held in memory (zeroized on drop), in the form the build's signing backend
/// holds it ([`crate::crypto`]).
pub struct LocalSigner {
    key: Key,
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

/// The JWK of an uncompressed SEC1 P-256 point (`04 || x || y`).
fn jwk_of_point(sec1: &[u8]) -> Result<PublicJwk, KeyError> {
    match sec1 {
        [4, xy @ ..] if xy.len() == 64 => PublicJwk::from_p256_coordinates(&xy[..32], &xy[32..]),
        _ => Err(KeyError::InvalidPrivateKey(
            "no uncompressed P-256 public key",
        )),
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
            const PKCS8: KeyError = KeyError::InvalidPrivateKey("not a P-256 PKCS#8 PEM key");
            let (label, doc) = p256::pkcs8::SecretDocument::from_pem(text).map_err(|_| PKCS8)?;
            if label != "PRIVATE KEY" {
                return Err(PKCS8);
            }
            return Self::from_pkcs8_der(doc.as_bytes()).map_err(|_| PKCS8);
        } else if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            p256::SecretKey::from_sec1_pem(text)
                .map_err(|_| KeyError::InvalidPrivateKey("not a P-256 SEC1 PEM key"))?
        } else {
            return Err(KeyError::InvalidPrivateKey(
                "expected a PKCS#8 PEM, SEC1 PEM or JWK private key",
            ));
        };
        Self::with_key(Key::from_secret(&secret))
    }

    /// Loads a key given as a DER PKCS#8 `PrivateKeyInfo` (what KMS
    /// `GenerateDataKeyPairWithoutPlaintext` wraps for `ECC_NIST_P256`). Errors never echo it.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = Key::from_pkcs8_der(der)
            .map_err(|()| KeyError::InvalidPrivateKey("not a P-256 PKCS#8 private key"))?;
        Self::with_key(key)
    }

    fn with_key(key: Key) -> Result<Self, KeyError> {
        let jwk = jwk_of_point(&key.public_point())?;
        Ok(LocalSigner { key, jwk })
    }

    /// Generates a fresh key (development and tests).
    pub fn generate() -> Self {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        Self::with_key(Key::from_secret(&secret)).unwrap_or_else(|_| unreachable_key())
    }

    /// The private key as PKCS#8 PEM, for emitting a development key. Handle as a secret.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        use p256::pkcs8::EncodePrivateKey as _;
        self.key
            .secret()?
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|_| KeyError::InvalidPrivateKey("cannot encode key"))
    }

    /// The private key as DER PKCS#8 (zeroized on drop), for importing it into another crypto
    /// backend (the Worker's WebCrypto). Handle as a secret.
    pub fn to_pkcs8_der(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        self.key.pkcs8_der()
    }
}

#[allow(clippy::panic)]
fn unreachable_key() -> LocalSigner {
    // Invariant: a freshly generated P-256 key always has an uncompressed public point.
    panic!("generated P-256 key not loadable")
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
        self.key.sign(signing_input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports the backend in the test output (`.ci/run` runs the signer's tests with and
    /// without it; the aws-lc-rs/p256 cross-check is in `crypto::aws_lc`).
    #[cfg(aws_lc)]
    #[test]
    fn sign_backend_is_aws_lc_rs() {
        assert_eq!(SIGN_BACKEND, "aws-lc-rs");
    }

    #[cfg(not(aws_lc))]
    #[test]
    fn sign_backend_is_p256() {
        assert_eq!(SIGN_BACKEND, "p256");
    }
}
