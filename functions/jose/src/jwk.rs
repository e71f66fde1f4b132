//! JSON Web Keys (RFC 7517) as txbridge accepts them: RSA (2048-8192 bits) and P-256 keys for
//! signatures, each checked by rsa/p256 whatever the backend that will verify with it, then
//! imported once into one [`VerifyBackend`] (the native one when another refuses the key).

use std::sync::Arc;

use serde::Deserialize;

use crate::alg::Algorithm;
use crate::crypto::{BackendKey, NativeBackend, PublicKeyMaterial, VerifyBackend};
use crate::encoding::b64_decode;

/// RSA moduli accepted from a JWKS.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = crate::crypto::MAX_RSA_BITS;
/// Largest number of keys kept from one JWKS.
const MAX_KEYS: usize = 32;

/// An accepted key of a JWKS, not yet imported for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    pub alg: Option<Algorithm>,
    pub material: PublicKeyMaterial,
}

impl Jwk {
    /// The algorithm of the key's family (RS256 for RSA, ES256 for P-256).
    pub fn family(&self) -> Algorithm {
        match self.material {
            PublicKeyMaterial::Rsa { .. } => Algorithm::RS256,
            PublicKeyMaterial::P256 { .. } => Algorithm::ES256,
        }
    }
}

/// One usable key: its id, the algorithm it serves, and the one imported key that verifies.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    alg: Option<Algorithm>,
    family: Algorithm,
    key: Arc<dyn BackendKey>,
    /// The backend that verifies with it.
    backend: &'static str,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .field("backend", &self.backend)
            .finish()
    }
}

impl VerifyKey {
    /// Imports `jwk` into `backend`, or into the native backend when `backend` refuses it.
    pub async fn import(jwk: Jwk, backend: &dyn VerifyBackend) -> Option<VerifyKey> {
        let family = jwk.family();
        match backend.import(&jwk.material, family).await {
            Some(key) => Some(VerifyKey {
                kid: jwk.kid,
                alg: jwk.alg,
                family,
                key,
                backend: backend.name(),
            }),
            None => VerifyKey::native(jwk),
        }
    }

    /// Imports `jwk` into the native backend, at once.
    pub fn native(jwk: Jwk) -> Option<VerifyKey> {
        let family = jwk.family();
        let key = NativeBackend.import_now(&jwk.material, family)?;
        Some(VerifyKey {
            kid: jwk.kid,
            alg: jwk.alg,
            family,
            key,
            backend: crate::crypto::BACKEND,
        })
    }

    /// Does this key serve `alg`? The key family must match, and the JWK's own `alg` if set.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.family == alg && self.alg.is_none_or(|a| a == alg)
    }

    /// The name of the backend that verifies with this key.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Verifies `signature` over `input` for `alg`: `false` when the key does not serve `alg`.
    /// The one verification path, whatever the backend.
    pub async fn verify(&self, alg: Algorithm, input: &[u8], signature: &[u8]) -> bool {
        self.fits(alg) && self.key.verify(input, signature).await
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Checks one JWK; None for keys txbridge can't or won't use (skipped, not fatal).
fn parse_jwk(raw: RawJwk) -> Option<Jwk> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(a) => Some(Algorithm::parse(a)?),
    };
    let material = match raw.kty.as_str() {
        "RSA" => {
            let n = b64_decode(raw.n.as_deref()?)?;
            let e = b64_decode(raw.e.as_deref()?)?;
            let bits = rsa::BigUint::from_bytes_be(&n).bits();
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return None;
            }
            // rsa's own checks (exponent range, modulus size) decide, whatever the backend.
            crate::crypto::rsa_public_key(&n, &e)?;
            PublicKeyMaterial::Rsa { n, e }
        }
        "EC" => {
            if raw.crv.as_deref() != Some("P-256") {
                return None;
            }
            let x = b64_decode(raw.x.as_deref()?)?;
            let y = b64_decode(raw.y.as_deref()?)?;
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(4);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            // On the curve, as p256 checks it.
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()?;
            PublicKeyMaterial::P256 { sec1 }
        }
        _ => return None,
    };
    Some(Jwk {
        kid: raw.kid,
        alg,
        material,
    })
}

/// The usable keys of a JWKS document (at most 32). Errors only when the document itself is
/// invalid or has no usable key.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, &'static str> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(body).map_err(|_| "JWKS is not a JSON key set")?;
    let keys: Vec<Jwk> = doc
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<RawJwk>(v).ok())
        .filter_map(parse_jwk)
        .take(MAX_KEYS)
        .collect();
    if keys.is_empty() {
        return Err("JWKS has no usable RS256/ES256 key");
    }
    Ok(keys)
}

/// [`parse_jwks`], each key imported into the native backend.
pub fn parse_verify_keys(body: &[u8]) -> Result<Vec<VerifyKey>, &'static str> {
    Ok(parse_jwks(body)?
        .into_iter()
        .filter_map(VerifyKey::native)
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::encoding::b64_encode;

    #[test]
    fn jwks_skips_unusable_keys() {
        let sk = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let ec: serde_json::Value = serde_json::from_str(&sk.public_key().to_jwk_string()).unwrap();
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "EC", "crv": "P-256", "use": "enc", "x": ec["x"], "y": ec["y"]},
            {"kty": "EC", "crv": "P-256", "alg": "HS256", "x": ec["x"], "y": ec["y"]},
            {"kty": "EC", "crv": "P-256", "kid": "good", "x": ec["x"], "y": ec["y"]},
        ]});
        let keys = parse_verify_keys(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("good"));
        assert!(keys[0].fits(Algorithm::ES256));
        assert!(!keys[0].fits(Algorithm::RS256));
        assert!(parse_jwks(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }

    /// RSA moduli from MIN_RSA_BITS to MAX_RSA_BITS are usable, outside that range skipped (rsa's
    /// own `RsaPublicKey::new` would silently cap them at 4096 bits).
    #[test]
    fn rsa_modulus_size_limits() {
        let jwk = |bits: usize| {
            let mut n = vec![0xa5u8; bits.div_ceil(8)];
            n[0] = if bits.is_multiple_of(8) { 0xc1 } else { 1 };
            serde_json::json!({"kty": "RSA", "kid": "k", "n": b64_encode(&n), "e": "AQAB"})
        };
        for (bits, usable) in [
            (2047, false),
            (2048, true),
            (4096, true),
            (4104, true),
            (8192, true),
            (8193, false),
        ] {
            let doc = serde_json::json!({ "keys": [jwk(bits)] });
            let keys = parse_verify_keys(&serde_json::to_vec(&doc).unwrap());
            assert_eq!(keys.is_ok(), usable, "{bits} bits");
        }
    }
}
