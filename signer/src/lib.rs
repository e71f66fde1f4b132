//! The `Signer` port of txbridge: what signs a TxToken, and the key set that is published.
//!
//! A signer produces raw JOSE ES256 signatures (`r || s`, 64 bytes, low-S) over a JWS signing
//! input, and exposes its algorithm, key id (RFC 7638 thumbprint) and public JWK. Implementations:
//! [`LocalSigner`] (feature `local`, an in-binary P-256 key), `KmsSigner` (feature `kms`, one KMS
//! `Sign` per token) and, with both features, a KMS-wrapped key (`unwrap_signing_key`: one KMS
//! `Decrypt` per cold start, then a `LocalSigner`).
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[cfg(feature = "local")]
mod crypto;
#[cfg(feature = "local")]
mod local;
#[cfg(feature = "local")]
pub use local::{LocalSigner, SIGN_BACKEND};
mod setup;
#[cfg(feature = "local")]
pub use setup::SetupError;
pub use setup::{SIGNING_KEY_VAR, SignerConfig, SignerKind};

#[cfg(all(feature = "kms", not(target_arch = "wasm32")))]
mod kms;
#[cfg(all(feature = "kms", not(target_arch = "wasm32")))]
pub use kms::{KmsSigner, KmsSignerOptions, WRAPPED_KEY_CONTEXT};
#[cfg(all(feature = "kms", feature = "local", not(target_arch = "wasm32")))]
pub use kms::{unwrap_signing_key, unwrap_signing_key_from, unwrap_signing_key_with};

/// The only algorithm txbridge signs with.
pub const ES256: &str = "ES256";

/// Why a signature could not be produced. Never carries key material or backend messages
/// beyond a short error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The backend is temporarily unreachable, throttled or timed out: retry later.
    #[error("signing backend unavailable ({code})")]
    Unavailable { code: String },
    /// The key cannot be used (disabled, access denied, pending deletion): a misconfiguration.
    #[error("signing key unusable ({code})")]
    KeyUnusable { code: String },
    /// The backend answered with something that is not a valid signature.
    #[error("signing backend returned a malformed signature")]
    Malformed,
}

/// Why a key could not be loaded. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("signing key is missing")]
    Missing,
    #[error("signing key is not a valid P-256 private key ({0})")]
    InvalidPrivateKey(&'static str),
    #[error("public key is not a valid P-256 JWK ({0})")]
    InvalidPublicJwk(&'static str),
    #[error("signing key is not usable: {0}")]
    Unsupported(String),
    #[error("signing backend unavailable ({0})")]
    Backend(String),
}

/// A P-256 public key as a JWK (RFC 7517/7518), as published in the JWKS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

impl PublicJwk {
    /// Builds the published JWK from the affine coordinates of a P-256 point; `kid` is the
    /// RFC 7638 thumbprint.
    pub fn from_p256_coordinates(x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        if x.len() != 32 || y.len() != 32 {
            return Err(KeyError::InvalidPublicJwk("coordinates must be 32 bytes"));
        }
        let mut jwk = PublicJwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: B64.encode(x),
            y: B64.encode(y),
            kid: None,
            use_: Some("sig".into()),
            alg: Some(ES256.into()),
        };
        jwk.kid = Some(jwk.thumbprint());
        Ok(jwk)
    }

    /// Checks a JWK given from outside (config: previous keys) and fills `kid`, `use`, `alg`.
    /// The point must be a valid P-256 point.
    pub fn normalized(mut self) -> Result<Self, KeyError> {
        if self.kty != "EC" || self.crv != "P-256" {
            return Err(KeyError::InvalidPublicJwk("kty must be EC and crv P-256"));
        }
        if self.alg.as_deref().is_some_and(|a| a != ES256) {
            return Err(KeyError::InvalidPublicJwk("alg must be ES256"));
        }
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(KeyError::InvalidPublicJwk("use must be sig"));
        }
        let x = B64
            .decode(&self.x)
            .map_err(|_| KeyError::InvalidPublicJwk("x is not base64url"))?;
        let y = B64
            .decode(&self.y)
            .map_err(|_| KeyError::InvalidPublicJwk("y is not base64url"))?;
        if x.len() != 32 || y.len() != 32 {
            return Err(KeyError::InvalidPublicJwk("coordinates must be 32 bytes"));
        }
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(4u8);
        sec1.extend_from_slice(&x);
        sec1.extend_from_slice(&y);
        p256::PublicKey::from_sec1_bytes(&sec1)
            .map_err(|_| KeyError::InvalidPublicJwk("point is not on P-256"))?;
        if self.kid.as_deref().is_none_or(str::is_empty) {
            self.kid = Some(self.thumbprint());
        }
        self.use_ = Some("sig".into());
        self.alg = Some(ES256.into());
        Ok(self)
    }

    /// RFC 7638 JWK thumbprint (SHA-256, base64url) over the required EC members.
    pub fn thumbprint(&self) -> String {
        // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
        let canonical = format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            self.crv, self.kty, self.x, self.y
        );
        B64.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The key id, always present on keys built by this crate.
    pub fn kid(&self) -> &str {
        self.kid.as_deref().unwrap_or_default()
    }
}

/// The signing port. Native implementations are `Send`; on wasm32 the futures need not be.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Signer: Send + Sync + fmt::Debug {
    /// JOSE algorithm name (`ES256`).
    fn alg(&self) -> &'static str;
    /// Key id placed in the JWS header (RFC 7638 thumbprint of the public JWK).
    fn key_id(&self) -> &str;
    /// The public key, as published in the JWKS.
    fn public_jwk(&self) -> &PublicJwk;
    /// Signs a JWS signing input (`b64(header) . b64(payload)`); returns the raw JOSE signature.
    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// The published key set: the active signer plus previous public keys kept for rotation overlap.
#[derive(Clone, Debug)]
pub struct KeySet {
    active: Arc<dyn Signer>,
    published: Vec<PublicJwk>,
}

impl KeySet {
    /// Builds the set; previous keys are normalized and de-duplicated by `kid` (the active key wins).
    pub fn new(active: Arc<dyn Signer>, previous: Vec<PublicJwk>) -> Result<Self, KeyError> {
        let mut published = vec![active.public_jwk().clone()];
        for jwk in previous {
            let jwk = jwk.normalized()?;
            if !published.iter().any(|p| p.kid() == jwk.kid()) {
                published.push(jwk);
            }
        }
        Ok(KeySet { active, published })
    }

    /// The signer of new tokens.
    pub fn signer(&self) -> &dyn Signer {
        self.active.as_ref()
    }

    /// All public keys, active first.
    pub fn public_keys(&self) -> &[PublicJwk] {
        &self.published
    }

    /// The JWKS document (`{"keys": [...]}`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.published })
    }
}

/// Converts a DER ECDSA signature (as KMS returns it) into a 64-byte JOSE `r || s`, low-S.
pub fn der_to_jose_low_s(der: &[u8]) -> Result<Vec<u8>, SignError> {
    let sig = p256::ecdsa::Signature::from_der(der).map_err(|_| SignError::Malformed)?;
    let sig = sig.normalize_s().unwrap_or(sig);
    Ok(sig.to_bytes().to_vec())
}

/// Normalises a raw 64-byte ECDSA P-256 signature (`r || s`, as aws-lc-rs and WebCrypto return
/// it) to the low-S form every txbridge signer publishes.
pub fn raw_to_jose_low_s(raw: &[u8]) -> Result<Vec<u8>, SignError> {
    let sig = p256::ecdsa::Signature::from_slice(raw).map_err(|_| SignError::Malformed)?;
    let sig = sig.normalize_s().unwrap_or(sig);
    Ok(sig.to_bytes().to_vec())
}

#[cfg(test)]
mod tests;
