//! The pure-Rust backend: p256 0.13 holds the key and signs.

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};

use crate::{KeyError, SignError};

/// Which library signs in this build.
pub const BACKEND: &str = "p256";

/// A P-256 private key as p256 holds it (zeroized on drop).
pub(crate) struct Key(SigningKey);

impl Key {
    /// Loads a DER PKCS#8 `PrivateKeyInfo`.
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Result<Self, ()> {
        let secret = p256::SecretKey::from_pkcs8_der(der).map_err(|_| ())?;
        Ok(Self::from_secret(&secret))
    }

    pub(crate) fn from_secret(secret: &p256::SecretKey) -> Self {
        Key(SigningKey::from(secret))
    }

    /// The public key, an uncompressed SEC1 point (`04 || x || y`).
    pub(crate) fn public_point(&self) -> Vec<u8> {
        self.0
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// The key as p256 holds it.
    pub(crate) fn secret(&self) -> Result<p256::SecretKey, KeyError> {
        Ok(p256::SecretKey::from(&self.0))
    }

    /// DER PKCS#8 (zeroized on drop).
    pub(crate) fn pkcs8_der(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        self.secret()?
            .to_pkcs8_der()
            .map(|doc| zeroize::Zeroizing::new(doc.as_bytes().to_vec()))
            .map_err(|_| KeyError::InvalidPrivateKey("cannot encode key"))
    }

    /// ES256, raw low-S `r || s`.
    pub(crate) fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(super::sign_p256(&self.0, signing_input))
    }
}
