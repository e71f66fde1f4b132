//! The aws-lc-rs backend (feature `aws-lc`, native only). The public key comes from aws-lc-rs,
//! which loads a PKCS#8 key without the three pure-Rust scalar multiplications p256 would spend
//! (parse check, verifying key, encoding): most of what loading the key cost at a Lambda cold
//! start.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};

use crate::{KeyError, SignError};

/// Which library signs in this build.
pub const BACKEND: &str = "aws-lc-rs";

/// A P-256 private key as aws-lc-rs holds it, and its PKCS#8 document (zeroized on drop;
/// aws-lc frees its own copy).
pub(crate) struct Key {
    native: EcdsaKeyPair,
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
}

impl Key {
    /// Loads a DER PKCS#8 `PrivateKeyInfo`; aws-lc-rs checks the curve, the scalar and a public
    /// key the document carries.
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Result<Self, ()> {
        let native =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| ())?;
        Ok(Key {
            native,
            pkcs8: zeroize::Zeroizing::new(der.to_vec()),
        })
    }

    pub(crate) fn from_secret(secret: &p256::SecretKey) -> Self {
        // The DER document is zeroized on drop; a valid P-256 key always encodes and loads.
        secret
            .to_pkcs8_der()
            .ok()
            .and_then(|der| Self::from_pkcs8_der(der.as_bytes()).ok())
            .unwrap_or_else(unreachable_key)
    }

    /// The public key, an uncompressed SEC1 point (`04 || x || y`).
    pub(crate) fn public_point(&self) -> Vec<u8> {
        self.native.public_key().as_ref().to_vec()
    }

    /// The key as p256 holds it (zeroized on drop).
    pub(crate) fn secret(&self) -> Result<p256::SecretKey, KeyError> {
        p256::SecretKey::from_pkcs8_der(&self.pkcs8)
            .map_err(|_| KeyError::InvalidPrivateKey("cannot decode key"))
    }

    /// DER PKCS#8 (zeroized on drop).
    pub(crate) fn pkcs8_der(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        Ok(self.pkcs8.clone())
    }

    /// ES256 with aws-lc-rs (randomised k), normalised to low-S like the p256 path and the KMS
    /// signer, raw `r || s`.
    pub(crate) fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
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

#[allow(clippy::panic)]
fn unreachable_key() -> Key {
    // Invariant: a P-256 secret key always encodes to PKCS#8 and aws-lc-rs parses it.
    panic!("P-256 key not loadable")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{LocalSigner, PublicJwk, Signer as _};
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Verifier as _;

    /// The backends are interchangeable: aws-lc-rs signatures verify with p256, p256 signatures
    /// verify with aws-lc-rs, both are low-S `r || s`, and aws-lc holds the same key as p256
    /// (whose public JWK and kid are published).
    #[test]
    fn aws_lc_and_p256_signatures_cross_verify() {
        let pem = LocalSigner::generate().to_pkcs8_pem().unwrap();
        for signer in [
            LocalSigner::generate(),
            LocalSigner::from_encoded(&pem).unwrap(),
        ] {
            let der = signer.to_pkcs8_der().unwrap();
            let key = Key::from_pkcs8_der(&der).unwrap();
            // The public key aws-lc-rs derived is p256's, and the published JWK's.
            let p256_signing = p256::ecdsa::SigningKey::from(&key.secret().unwrap());
            let p256_key = *p256_signing.verifying_key();
            let point = p256_key.to_encoded_point(false);
            assert_eq!(key.native.public_key().as_ref(), point.as_bytes());
            let xy = &point.as_bytes()[1..];
            let from_point = PublicJwk::from_p256_coordinates(&xy[..32], &xy[32..]).unwrap();
            assert_eq!(&from_point, signer.public_jwk());
            let lc_key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point.as_bytes()).unwrap();
            for i in 0..16 {
                let input = format!("eyJhbGciOiJFUzI1NiJ9.eyJpIjo{i}fQ");
                let input = input.as_bytes();
                let by_lc = key.sign(input).unwrap();
                let by_p256 = super::super::sign_p256(&p256_signing, input);
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
