//! Compact JWS parsing (strict) and the verification keys of a cluster.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;

use crate::config::Algorithm;
use crate::error::SubjectTokenError as E;

/// Largest subject token accepted (Kubernetes tokens are ~1-2 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Decodes base64url without padding, strictly (no padding, no other alphabet).
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.as_bytes()).ok()
}

pub fn b64_encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The JOSE header fields the core looks at. `jku`, `x5u`, `jwk` and `x5c` are ignored on
/// purpose (keys come only from the configured issuer); `crit` is rejected.
#[derive(Debug, Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    pub alg: String,
    pub kid: Option<String>,
    /// The header's `typ`, when present (TxTokens require `txntoken+jwt`).
    pub typ: Option<String>,
    pub signing_input: &'a [u8],
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Deserializes a JOSE header or JWT claims set, which must be one completely valid JSON text
/// (RFC 7515 §5.2, RFC 7519 §7.2). serde_json skips the UTF-8 and escape checks inside members
/// a struct ignores, so the text is first parsed as a `Value`; the struct parse still rejects
/// duplicates of the members it reads.
pub fn strict_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
    serde_json::from_slice(bytes).ok()
}

/// Splits and decodes a compact JWS. Checks structure only.
pub fn parse_compact(token: &str) -> Result<UnverifiedJws<'_>, E> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(E::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(E::Malformed);
    };
    if h.is_empty() || p.is_empty() {
        return Err(E::Malformed);
    }
    let header_bytes = b64_decode(h).ok_or(E::Malformed)?;
    let payload = b64_decode(p).ok_or(E::Malformed)?;
    let signature = b64_decode(s).ok_or(E::Malformed)?;
    let header: RawHeader = strict_json(&header_bytes).ok_or(E::BadHeader)?;
    if header.crit.is_some() {
        return Err(E::CritHeader);
    }
    if header
        .kid
        .as_deref()
        .is_some_and(|k| k.is_empty() || k.len() > 256)
    {
        return Err(E::BadHeader);
    }
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    Ok(UnverifiedJws {
        alg: header.alg,
        kid: header.kid,
        typ: header.typ,
        signing_input,
        payload,
        signature,
    })
}

/// A verification key taken from a cluster's JWKS, parsed once.
#[derive(Clone)]
pub enum KeyMaterial {
    Rsa(Box<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>),
    Ec(p256::ecdsa::VerifyingKey),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyMaterial::Rsa(_) => f.write_str("Rsa"),
            KeyMaterial::Ec(_) => f.write_str("Ec(P-256)"),
        }
    }
}

/// One usable key of a cluster.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
}

impl VerifyKey {
    /// Does this key serve `alg`? The key family must match, and the JWK's own `alg` if set.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let family = matches!(
            (&self.material, alg),
            (KeyMaterial::Rsa(_), Algorithm::RS256) | (KeyMaterial::Ec(_), Algorithm::ES256)
        );
        family && self.alg.is_none_or(|a| a == alg)
    }

    /// Verifies `signature` over `input`. Caller has checked [`VerifyKey::fits`].
    pub fn verify(&self, alg: Algorithm, input: &[u8], signature: &[u8]) -> bool {
        match (&self.material, alg) {
            (KeyMaterial::Rsa(key), Algorithm::RS256) => {
                let Ok(sig) = rsa::pkcs1v15::Signature::try_from(signature) else {
                    return false;
                };
                key.verify(input, &sig).is_ok()
            }
            (KeyMaterial::Ec(key), Algorithm::ES256) => {
                let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else {
                    return false;
                };
                key.verify(input, &sig).is_ok()
            }
            _ => false,
        }
    }
}

/// RSA moduli accepted from a JWKS.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

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

/// Parses one JWK; None for keys txbridge can't or won't use (skipped, not fatal).
fn parse_jwk(raw: RawJwk) -> Option<VerifyKey> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(a) => Some(Algorithm::parse(a)?),
    };
    let material = match raw.kty.as_str() {
        "RSA" => {
            let n = rsa::BigUint::from_bytes_be(&b64_decode(raw.n.as_deref()?)?);
            let e = rsa::BigUint::from_bytes_be(&b64_decode(raw.e.as_deref()?)?);
            let bits = n.bits();
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return None;
            }
            let key = rsa::RsaPublicKey::new(n, e).ok()?;
            KeyMaterial::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(key)))
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
            KeyMaterial::Ec(p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()?)
        }
        _ => return None,
    };
    Some(VerifyKey {
        kid: raw.kid,
        alg,
        material,
    })
}

/// Largest number of keys kept from one JWKS.
const MAX_KEYS: usize = 32;

/// Parses a JWKS document into usable keys. Errors only when the document itself is invalid.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyKey>, &'static str> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(body).map_err(|_| "JWKS is not a JSON key set")?;
    let keys: Vec<VerifyKey> = doc
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn enc(v: &str) -> String {
        b64_encode(v.as_bytes())
    }

    #[test]
    fn compact_structure() {
        let h = enc(r#"{"alg":"RS256","kid":"k"}"#);
        let p = enc(r#"{"sub":"x"}"#);
        let ok = format!("{h}.{p}.{}", enc("sig"));
        let jws = parse_compact(&ok).unwrap();
        assert_eq!(jws.alg, "RS256");
        assert_eq!(jws.kid.as_deref(), Some("k"));
        assert_eq!(jws.signing_input, format!("{h}.{p}").as_bytes());

        let table: &[(&str, String, E)] = &[
            ("two parts", format!("{h}.{p}"), E::Malformed),
            ("four parts", format!("{h}.{p}.c2ln.eQ"), E::Malformed),
            ("empty header", format!(".{p}.c2ln"), E::Malformed),
            ("padding", format!("{h}=.{p}.c2ln"), E::Malformed),
            ("std alphabet", format!("{h}.{p}.a+b/"), E::Malformed),
            (
                "header not json",
                format!("{}.{p}.c2ln", enc("nope")),
                E::BadHeader,
            ),
            (
                "header array",
                format!("{}.{p}.c2ln", enc("[1]")),
                E::BadHeader,
            ),
            (
                "no alg",
                format!("{}.{p}.c2ln", enc(r#"{"kid":"k"}"#)),
                E::BadHeader,
            ),
            (
                "duplicate alg",
                format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","alg":"none"}"#)),
                E::BadHeader,
            ),
            (
                "crit",
                format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","crit":["exp"]}"#)),
                E::CritHeader,
            ),
            (
                // Found by fuzzing: serde skipped UTF-8 checks inside ignored members.
                "invalid utf-8 in an ignored member",
                format!(
                    "{}.{p}.c2ln",
                    b64_encode(b"{\"alg\":\"RS256\",\"x\":\"\xff\"}")
                ),
                E::BadHeader,
            ),
            (
                "lone surrogate in an ignored member",
                format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","x":"\ud800"}"#)),
                E::BadHeader,
            ),
            (
                "empty kid",
                format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","kid":""}"#)),
                E::BadHeader,
            ),
            (
                "huge",
                format!("{}.{p}.c2ln", enc(&"a".repeat(9000))),
                E::TooLarge,
            ),
        ];
        for (name, token, want) in table {
            assert_eq!(parse_compact(token).unwrap_err(), *want, "{name}");
        }
    }

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
        let keys = parse_jwks(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("good"));
        assert!(keys[0].fits(Algorithm::ES256));
        assert!(!keys[0].fits(Algorithm::RS256));
        assert!(parse_jwks(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }
}
