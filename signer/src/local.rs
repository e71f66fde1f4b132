//! In-binary P-256 signing key (`TXBRIDGE_SIGNING_KEY`).

use std::fmt;

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;

use crate::{ES256, KeyError, PublicJwk, SignError, Signer};

/// Which library signs in this build: `"aws-lc-rs"` with the native-only `aws-lc` feature,
/// `"p256"` otherwise (always on wasm32). The key, its public JWK and kid come from p256 either way.
pub const SIGN_BACKEND: &str = if cfg!(all(feature = "aws-lc", not(target_arch = "wasm32"))) {
    "aws-lc-rs"
} else {
    "p256"
};

/// A P-256 private key held in memory (zeroized on drop: p256's key, or with `aws-lc` the PKCS#8
/// document; aws-lc frees its own copy).
pub struct LocalSigner {
    #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
    key: SigningKey,
    /// With `aws-lc` (native only): the key as aws-lc-rs holds it, and its PKCS#8 document. The
    /// public key and kid come from aws-lc-rs, which loads a PKCS#8 key without the three
    /// pure-Rust scalar multiplications p256 would spend (parse check, verifying key, encoding):
    /// most of what loading the key cost at a Lambda cold start.
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    native: aws_lc_rs::signature::EcdsaKeyPair,
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
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
        Self::from_secret(secret)
    }

    /// Loads a key given as a DER PKCS#8 `PrivateKeyInfo` (what KMS
    /// `GenerateDataKeyPairWithoutPlaintext` wraps for `ECC_NIST_P256`). Errors never echo it.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        const NOT_P256: KeyError = KeyError::InvalidPrivateKey("not a P-256 PKCS#8 private key");
        #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
        {
            use aws_lc_rs::signature::{
                ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
            };
            // aws-lc-rs checks the curve, the scalar and a public key the document carries.
            let native = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map_err(|_| NOT_P256)?;
            let jwk = jwk_of_point(native.public_key().as_ref())?;
            Ok(LocalSigner {
                native,
                pkcs8: zeroize::Zeroizing::new(der.to_vec()),
                jwk,
            })
        }
        #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
        {
            let secret = p256::SecretKey::from_pkcs8_der(der).map_err(|_| NOT_P256)?;
            Self::from_secret(secret)
        }
    }

    /// Generates a fresh key (development and tests).
    pub fn generate() -> Self {
        Self::from_secret(p256::SecretKey::random(
            &mut p256::elliptic_curve::rand_core::OsRng,
        ))
        .unwrap_or_else(|_| unreachable_key())
    }

    /// The private key as PKCS#8 PEM, for emitting a development key. Handle as a secret.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        use p256::pkcs8::EncodePrivateKey as _;
        self.secret()?
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|_| KeyError::InvalidPrivateKey("cannot encode key"))
    }

    /// The private key as DER PKCS#8 (zeroized on drop), for importing it into another crypto
    /// backend (the Worker's WebCrypto). Handle as a secret.
    pub fn to_pkcs8_der(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
        return Ok(self.pkcs8.clone());
        #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
        {
            use p256::pkcs8::EncodePrivateKey as _;
            self.secret()?
                .to_pkcs8_der()
                .map(|doc| zeroize::Zeroizing::new(doc.as_bytes().to_vec()))
                .map_err(|_| KeyError::InvalidPrivateKey("cannot encode key"))
        }
    }

    /// The key as p256 holds it (zeroized on drop).
    fn secret(&self) -> Result<p256::SecretKey, KeyError> {
        #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
        return p256::SecretKey::from_pkcs8_der(&self.pkcs8)
            .map_err(|_| KeyError::InvalidPrivateKey("cannot decode key"));
        #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
        Ok(p256::SecretKey::from(&self.key))
    }

    fn from_secret(secret: p256::SecretKey) -> Result<Self, KeyError> {
        #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
        {
            use p256::pkcs8::EncodePrivateKey as _;
            // The DER document is zeroized on drop.
            let der = secret
                .to_pkcs8_der()
                .map_err(|_| KeyError::InvalidPrivateKey("cannot encode key"))?;
            Self::from_pkcs8_der(der.as_bytes())
        }
        #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
        {
            let key = SigningKey::from(&secret);
            let jwk = jwk_of_point(key.verifying_key().to_encoded_point(false).as_bytes())
                .unwrap_or_else(|_| unreachable_jwk());
            Ok(LocalSigner { key, jwk })
        }
    }

    /// The pure-Rust path (p256, RFC 6979 deterministic): the only one on wasm32 and without
    /// `aws-lc` (where it is the backends' cross-check only). Low-S, raw `r || s`.
    #[cfg_attr(all(feature = "aws-lc", not(target_arch = "wasm32")), allow(dead_code))]
    fn sign_rust_crypto(&self, signing_input: &[u8]) -> Vec<u8> {
        #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
        let key = SigningKey::from(&self.secret().unwrap_or_else(|_| unreachable_secret()));
        #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
        let key = &self.key;
        let sig: Signature = key.sign(signing_input);
        let sig = sig.normalize_s().unwrap_or(sig);
        sig.to_bytes().to_vec()
    }

    /// aws-lc-rs (randomised k), normalised to low-S like the p256 path and the KMS signer.
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    fn sign_aws_lc(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let raw = self
            .native
            .sign(&rng, signing_input)
            .map_err(|_| SignError::KeyUnusable {
                code: "aws-lc-rs sign failed".into(),
            })?;
        crate::raw_to_jose_low_s(raw.as_ref())
    }
}

#[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
#[allow(clippy::panic)]
fn unreachable_jwk() -> PublicJwk {
    // Invariant: a P-256 verifying key always encodes to 32-byte affine coordinates.
    panic!("P-256 public key without affine coordinates")
}

#[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
#[allow(clippy::panic)]
fn unreachable_secret() -> p256::SecretKey {
    // Invariant: the PKCS#8 document was accepted by aws-lc-rs as a P-256 key.
    panic!("stored P-256 key not decodable")
}

#[allow(clippy::panic)]
fn unreachable_key() -> LocalSigner {
    // Invariant: a freshly generated P-256 key always encodes to PKCS#8 and aws-lc-rs parses it.
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
        #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
        return self.sign_aws_lc(signing_input);
        #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
        Ok(self.sign_rust_crypto(signing_input))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Reports the backend in the test output (`.ci/run` runs the signer's tests with and
    /// without it).
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    #[test]
    fn sign_backend_is_aws_lc_rs() {
        assert_eq!(SIGN_BACKEND, "aws-lc-rs");
    }

    #[cfg(not(all(feature = "aws-lc", not(target_arch = "wasm32"))))]
    #[test]
    fn sign_backend_is_p256() {
        assert_eq!(SIGN_BACKEND, "p256");
    }

    /// The backends are interchangeable: aws-lc-rs signatures verify with p256, p256 signatures
    /// verify with aws-lc-rs, both are low-S `r || s`, and aws-lc holds the same key as p256
    /// (whose public JWK and kid are published).
    #[cfg(all(feature = "aws-lc", not(target_arch = "wasm32")))]
    #[test]
    fn aws_lc_and_p256_signatures_cross_verify() {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, KeyPair as _, ParsedPublicKey};
        use p256::ecdsa::signature::Verifier as _;

        let pem = LocalSigner::generate().to_pkcs8_pem().unwrap();
        for signer in [
            LocalSigner::generate(),
            LocalSigner::from_encoded(&pem).unwrap(),
        ] {
            // The public key aws-lc-rs derived is p256's, and the published JWK's.
            let p256_key =
                *p256::ecdsa::SigningKey::from(&signer.secret().unwrap()).verifying_key();
            let point = p256_key.to_encoded_point(false);
            assert_eq!(signer.native.public_key().as_ref(), point.as_bytes());
            let from_jwk = jwk_of_point(point.as_bytes()).unwrap();
            assert_eq!(&from_jwk, signer.public_jwk());
            let lc_key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point.as_bytes()).unwrap();
            for i in 0..16 {
                let input = format!("eyJhbGciOiJFUzI1NiJ9.eyJpIjo{i}fQ");
                let input = input.as_bytes();
                let by_lc = signer.sign_aws_lc(input).unwrap();
                let by_p256 = signer.sign_rust_crypto(input);
                for sig in [&by_lc, &by_p256] {
                    assert_eq!(sig.len(), 64);
                    let parsed = Signature::from_slice(sig).unwrap();
                    assert!(parsed.normalize_s().is_none(), "high-S");
                    assert!(p256_key.verify(input, &parsed).is_ok(), "p256 rejects");
                    assert!(lc_key.verify_sig(input, sig).is_ok(), "aws-lc-rs rejects");
                    assert!(lc_key.verify_sig(b"other", sig).is_err());
                }
            }
        }
    }
}
