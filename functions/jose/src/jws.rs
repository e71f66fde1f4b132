//! JOSE, the bottom layer: algorithms, strict compact-JWS parsing, JWKS keys and their
//! verification (through [`crate::crypto`] or a shell's [`VerifyBackend`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;

use crate::crypto::{self, NativeKey};

/// Signing algorithms txbridge verifies (subject tokens: RS256, ES256; TxTokens: ES256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    ES256,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Algorithm::RS256),
            "ES256" => Some(Algorithm::ES256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
        }
    }
}

/// Why a compact JWS could not be parsed (structure only: nothing is verified yet). Each reason
/// is a fixed string; nothing from the token is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("token is too large")]
    TooLarge,
    #[error("token is not a compact JWS")]
    Malformed,
    #[error("token header is invalid")]
    BadHeader,
    #[error("token uses a critical header extension")]
    CritHeader,
}

use JwsError as E;

/// Largest subject token accepted (Kubernetes tokens are ~1-2 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Decodes base64url without padding, strictly (no padding, no other alphabet).
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.as_bytes()).ok()
}

pub fn b64_encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Appends the base64url (no padding) encoding of `bytes` to `out`.
pub fn b64_encode_into(bytes: &[u8], out: &mut String) {
    B64.encode_string(bytes, out);
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
    /// Present with any value, `null` included. txbridge understands no extension, so a token
    /// that has a `crit` member at all is refused (RFC 7515 §4.1.11).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// `true` for a member that is present, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
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
/// (RFC 7515 §5.2, RFC 7519 §7.2). serde_json skips the UTF-8, escape and number-range checks
/// inside members a struct ignores, so the text is first checked by a full parse that accepts
/// what a `serde_json::Value` accepts (without building one); the struct parse still rejects
/// duplicates of the members it reads.
pub fn strict_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice::<ValidJson>(bytes) {
        Ok(ValidJson) => {}
        // serde_json's `raw_value` feature (on in some builds) gives this one key a meaning
        // when parsing a `Value`: leave such texts to the `Value` parse itself.
        Err(e) if e.to_string().starts_with(RAW_VALUE_TOKEN) => {
            serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
        }
        Err(_) => return None,
    }
    serde_json::from_slice(bytes).ok()
}

/// The map key serde_json's `raw_value` feature treats specially when parsing a `Value`.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Any JSON value, parsed exactly as a `serde_json::Value` is (`deserialize_any`: strings fully
/// decoded and checked, numbers range-checked, the same recursion limit) but not kept.
struct ValidJson;

impl<'de> Deserialize<'de> for ValidJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValidJson)
    }
}

impl<'de> serde::de::Visitor<'de> for ValidJson {
    type Value = ValidJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<Er>(self, _: bool) -> Result<Self, Er> {
        Ok(ValidJson)
    }

    fn visit_i64<Er>(self, _: i64) -> Result<Self, Er> {
        Ok(ValidJson)
    }

    fn visit_u64<Er>(self, _: u64) -> Result<Self, Er> {
        Ok(ValidJson)
    }

    fn visit_f64<Er>(self, _: f64) -> Result<Self, Er> {
        Ok(ValidJson)
    }

    fn visit_str<Er>(self, _: &str) -> Result<Self, Er> {
        Ok(ValidJson)
    }

    fn visit_unit<Er>(self) -> Result<Self, Er> {
        Ok(ValidJson)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<ValidJson>()?.is_some() {}
        Ok(ValidJson)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_key::<ValidKey>()?.is_some() {
            map.next_value::<ValidJson>()?;
        }
        Ok(ValidJson)
    }
}

/// An object member's name, decoded and checked as a `Value`'s keys are.
struct ValidKey;

impl<'de> Deserialize<'de> for ValidKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ValidKey)
    }
}

impl serde::de::Visitor<'_> for ValidKey {
    type Value = ValidKey;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<Er: serde::de::Error>(self, key: &str) -> Result<Self, Er> {
        if key == RAW_VALUE_TOKEN {
            return Err(Er::custom(RAW_VALUE_TOKEN));
        }
        Ok(ValidKey)
    }
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
    if header.crit {
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

/// Which library verifies subject-token signatures in this build: `"aws-lc-rs"` with the
/// native-only `aws-lc` feature, `"rsa+p256"` otherwise (always on wasm32).
pub const VERIFY_BACKEND: &str = crypto::BACKEND;

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

/// The public half of an accepted key, in the form a [`VerifyBackend`] imports:
/// RSA modulus and exponent (big-endian), or an uncompressed SEC1 P-256 point (65 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKeyMaterial {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { sec1: Vec<u8> },
}

/// One usable key of a cluster.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
    /// The same key for the build's crypto backend, when it has its own; verification prefers it.
    native: NativeKey,
    /// The same key imported by the shell's verify backend (the Worker's WebCrypto), with the
    /// algorithm it was imported for; [`VerifyKey::verify_async`] prefers it.
    backend: Option<(Algorithm, std::sync::Arc<dyn BackendKey>)>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("material", &self.material)
            .field("native", &self.native)
            .field("backend", &self.backend.as_ref().map(|(alg, _)| alg))
            .finish()
    }
}

impl VerifyKey {
    /// Does this key serve `alg`? The key family must match, and the JWK's own `alg` if set.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.family_fits(alg) && self.alg.is_none_or(|a| a == alg)
    }

    fn family_fits(&self, alg: Algorithm) -> bool {
        matches!(
            (&self.material, alg),
            (KeyMaterial::Rsa(_), Algorithm::RS256) | (KeyMaterial::Ec(_), Algorithm::ES256)
        )
    }

    /// The public key, for a verify backend to import.
    pub fn public_material(&self) -> PublicKeyMaterial {
        match &self.material {
            KeyMaterial::Rsa(key) => {
                use rsa::traits::PublicKeyParts as _;
                let key: &rsa::RsaPublicKey = key.as_ref().as_ref();
                PublicKeyMaterial::Rsa {
                    n: key.n().to_bytes_be(),
                    e: key.e().to_bytes_be(),
                }
            }
            KeyMaterial::Ec(key) => PublicKeyMaterial::P256 {
                sec1: key.to_encoded_point(false).as_bytes().to_vec(),
            },
        }
    }

    /// The algorithm this key serves: its JWK's `alg`, else its family's.
    pub fn algorithm(&self) -> Algorithm {
        self.alg.unwrap_or(match self.material {
            KeyMaterial::Rsa(_) => Algorithm::RS256,
            KeyMaterial::Ec(_) => Algorithm::ES256,
        })
    }

    /// Keeps the key `backend` imported for `alg`.
    pub fn set_backend(&mut self, alg: Algorithm, key: std::sync::Arc<dyn BackendKey>) {
        self.backend = Some((alg, key));
    }

    /// Which backend verifies this key: the shell's (imported), or txbridge's own.
    pub fn has_backend_key(&self) -> bool {
        self.backend.is_some()
    }

    /// [`VerifyKey::verify`] through the shell's verify backend when it imported this key for
    /// `alg`, through txbridge's own code otherwise. Caller has checked [`VerifyKey::fits`].
    pub async fn verify_async(&self, alg: Algorithm, input: &[u8], signature: &[u8]) -> bool {
        match &self.backend {
            Some((imported_for, key)) if *imported_for == alg => {
                self.family_fits(alg) && key.verify(input, signature).await
            }
            _ => self.verify(alg, input, signature),
        }
    }

    /// Verifies `signature` over `input`. Caller has checked [`VerifyKey::fits`].
    pub fn verify(&self, alg: Algorithm, input: &[u8], signature: &[u8]) -> bool {
        // The backend's key is bound to this key's family's algorithm.
        match self.native.verify(input, signature) {
            Some(verdict) => self.family_fits(alg) && verdict,
            None => self.verify_rust_crypto(alg, input, signature),
        }
    }

    /// The pure-Rust path (rsa 0.9 / p256 0.13): the only one on wasm32 and without `aws-lc`.
    fn verify_rust_crypto(&self, alg: Algorithm, input: &[u8], signature: &[u8]) -> bool {
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
    let (material, native) = match raw.kty.as_str() {
        "RSA" => {
            let n = rsa::BigUint::from_bytes_be(&b64_decode(raw.n.as_deref()?)?);
            let e = rsa::BigUint::from_bytes_be(&b64_decode(raw.e.as_deref()?)?);
            let bits = n.bits();
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return None;
            }
            // `new` would cap the modulus at 4096 bits; MAX_RSA_BITS is the limit here.
            let key = rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS).ok()?;
            let native = NativeKey::rsa(&key);
            (
                KeyMaterial::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(key))),
                native,
            )
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
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()?;
            (KeyMaterial::Ec(key), NativeKey::ec(&sec1))
        }
        _ => return None,
    };
    Some(VerifyKey {
        kid: raw.kid,
        alg,
        material,
        native,
        backend: None,
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

/// A signature verifier the shell supplies for subject-token keys (the Worker: WebCrypto, which
/// workerd runs natively). txbridge's own JWKS parsing still decides which keys are usable; a
/// backend only does the math, for keys it could import. A key it refuses is verified by
/// txbridge's own code, so the verdicts never depend on the backend.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait VerifyBackend: Send + Sync {
    /// A short name for logs and benchmarks.
    fn name(&self) -> &'static str;
    /// Imports one accepted key, once per JWKS fetch; `None` when the backend cannot use it.
    async fn import(
        &self,
        key: &PublicKeyMaterial,
        alg: Algorithm,
    ) -> Option<std::sync::Arc<dyn BackendKey>>;
}

/// A key imported by a [`VerifyBackend`], bound to one algorithm (RS256: RSASSA-PKCS1-v1_5 with
/// SHA-256; ES256: ECDSA P-256 with SHA-256 over a raw `r || s` signature).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait BackendKey: Send + Sync {
    /// Does `signature` verify over `input`? Any backend error is `false`.
    async fn verify(&self, input: &[u8], signature: &[u8]) -> bool;
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
                "crit null",
                format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","crit":null}"#)),
                E::CritHeader,
            ),
            (
                "crit empty array",
                format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","crit":[]}"#)),
                E::CritHeader,
            ),
            (
                "crit not an array",
                format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","crit":"b64"}"#)),
                E::CritHeader,
            ),
            (
                "crit object",
                format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","crit":{}}"#)),
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

    /// `strict_json` accepts exactly what parsing a `serde_json::Value` and then the struct
    /// accepted (its first implementation), and yields the same struct.
    #[test]
    fn strict_json_matches_a_value_parse() {
        fn reference(bytes: &[u8]) -> Option<RawHeader> {
            serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
            serde_json::from_slice(bytes).ok()
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let ok_deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let texts: Vec<Vec<u8>> = vec![
            br#"{"alg":"RS256","kid":"k","typ":"JWT"}"#.to_vec(),
            br#" {"alg":"RS256","x":[1,2.5,-3e2,true,false,null,{"a":{}}]} "#.to_vec(),
            br#"{"alg":"RS256","x":"\ud83d\ude00 \u00e9 \n \"q\" \\u"}"#.to_vec(),
            br#"{"alg":"RS256","x":"\ud800"}"#.to_vec(),
            br#"{"alg":"RS256","x":"\udc00"}"#.to_vec(),
            br#"{"alg":"RS256","x":"\ud800\u0041"}"#.to_vec(),
            br#"{"alg":"RS256","x":"\ud800x"}"#.to_vec(),
            br#"{"alg":"RS256","\ud800":1}"#.to_vec(),
            b"{\"alg\":\"RS256\",\"x\":\"\xff\"}".to_vec(),
            b"{\"alg\":\"RS256\",\"\xc3\x28\":1}".to_vec(),
            b"{\"alg\":\"RS256\",\"x\":\"\x01\"}".to_vec(),
            br#"{"alg":"RS256","x":1e400}"#.to_vec(),
            br#"{"alg":"RS256","x":-1e400}"#.to_vec(),
            br#"{"alg":"RS256","x":1e-400}"#.to_vec(),
            format!(r#"{{"alg":"RS256","x":{}}}"#, "9".repeat(400)).into_bytes(),
            br#"{"alg":"RS256","x":18446744073709551616}"#.to_vec(),
            br#"{"alg":"RS256","x":01}"#.to_vec(),
            br#"{"alg":"RS256","x":"\q"}"#.to_vec(),
            format!(r#"{{"alg":"RS256","x":{deep}}}"#).into_bytes(),
            format!(r#"{{"alg":"RS256","x":{ok_deep}}}"#).into_bytes(),
            br#"{"alg":"RS256","x":1,"x":2}"#.to_vec(),
            br#"{"alg":"RS256","alg":"none"}"#.to_vec(),
            br#"{"alg":"RS256"} x"#.to_vec(),
            br#"{"alg":"RS256",}"#.to_vec(),
            br#"{"alg":"RS256","$serde_json::private::RawValue":"[1"}"#.to_vec(),
            br#"{"$serde_json::private::RawValue":"{\"alg\":\"RS256\"}"}"#.to_vec(),
            br#"{"alg":"RS256","x":{"$serde_json::private::RawValue":"1"}}"#.to_vec(),
            br#"{"alg":"RS256","x":{"\u0024serde_json::private::RawValue":"}"}}"#.to_vec(),
            b"[1]".to_vec(),
            b"".to_vec(),
        ];
        for text in &texts {
            let got = strict_json::<RawHeader>(text).map(|h| format!("{h:?}"));
            let want = reference(text).map(|h| format!("{h:?}"));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(text));
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
            let keys = parse_jwks(&serde_json::to_vec(&doc).unwrap());
            assert_eq!(keys.is_ok(), usable, "{bits} bits");
        }
    }

    /// Reports the backend in the test output (`.ci/run` runs core's tests with and without it).
    #[cfg(aws_lc)]
    #[test]
    fn verify_backend_is_aws_lc_rs() {
        assert_eq!(VERIFY_BACKEND, "aws-lc-rs");
    }

    #[cfg(not(aws_lc))]
    #[test]
    fn verify_backend_is_rsa_p256() {
        assert_eq!(VERIFY_BACKEND, "rsa+p256");
    }

    /// The backends are interchangeable: with `aws-lc`, signatures made by the pure-Rust crates
    /// (rsa, p256) verify through aws-lc-rs, signatures made by aws-lc-rs verify through rsa/p256,
    /// and both verifiers give the same verdict on every malformed variant.
    #[cfg(aws_lc)]
    mod aws_lc_contract {
        use super::*;
        use aws_lc_rs::signature as lc;
        use p256::ecdsa::signature::Signer as _;

        fn one_key(jwk: serde_json::Value) -> VerifyKey {
            let doc = serde_json::json!({ "keys": [jwk] });
            let mut keys = parse_jwks(&serde_json::to_vec(&doc).unwrap()).unwrap();
            assert_eq!(keys.len(), 1);
            keys.remove(0)
        }

        /// Both paths give `want` on `sig`, and the same verdict on its malformed variants.
        fn same_verdicts(key: &VerifyKey, alg: Algorithm, input: &[u8], sig: &[u8], want: bool) {
            assert!(key.native.is_parsed(), "aws-lc-rs parsed the key");
            assert_eq!(key.verify(alg, input, sig), want, "aws-lc-rs");
            assert_eq!(key.verify_rust_crypto(alg, input, sig), want, "rsa/p256");
            let mut flipped = sig.to_vec();
            flipped[7] ^= 1;
            let mut longer = sig.to_vec();
            longer.push(0);
            let other = if alg == Algorithm::RS256 {
                Algorithm::ES256
            } else {
                Algorithm::RS256
            };
            let variants: [(&str, &[u8], &[u8], Algorithm); 6] = [
                ("flipped bit", &flipped, input, alg),
                ("other input", sig, b"other input", alg),
                ("truncated", &sig[..sig.len() - 1], input, alg),
                ("longer", &longer, input, alg),
                ("empty", b"", input, alg),
                ("other alg", sig, input, other),
            ];
            for (name, s, i, a) in variants {
                assert!(!key.verify(a, i, s), "{name}: aws-lc-rs accepts");
                assert!(!key.verify_rust_crypto(a, i, s), "{name}: rsa/p256 accepts");
            }
        }

        #[test]
        fn es256_signatures_cross_verify() {
            let sk = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
            let jwk: serde_json::Value =
                serde_json::from_str(&sk.public_key().to_jwk_string()).unwrap();
            let key = one_key(jwk);
            let input = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0";

            // p256 signs (RFC 6979), aws-lc-rs verifies; the high-S twin gets the same verdict.
            let p256_sig: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(&sk).sign(input);
            same_verdicts(&key, Algorithm::ES256, input, &p256_sig.to_bytes(), true);
            let (r, s) = p256_sig.split_scalars();
            let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
            same_verdicts(&key, Algorithm::ES256, input, &twin.to_bytes(), true);

            // aws-lc-rs signs (randomised k) from the same PKCS#8, p256 verifies.
            use p256::pkcs8::EncodePrivateKey as _;
            let der = sk.to_pkcs8_der().unwrap();
            let pair =
                lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P256_SHA256_FIXED_SIGNING, der.as_bytes())
                    .unwrap();
            let rng = aws_lc_rs::rand::SystemRandom::new();
            for _ in 0..8 {
                let sig = pair.sign(&rng, input).unwrap();
                same_verdicts(&key, Algorithm::ES256, input, sig.as_ref(), true);
            }
        }

        #[test]
        fn rs256_signatures_cross_verify() {
            use rsa::pkcs8::EncodePrivateKey as _;
            use rsa::signature::{SignatureEncoding as _, Signer as _};
            use rsa::traits::PublicKeyParts as _;
            let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
            let public = private.to_public_key();
            let key = one_key(serde_json::json!({
                "kty": "RSA",
                "n": b64_encode(&public.n().to_bytes_be()),
                "e": b64_encode(&public.e().to_bytes_be()),
            }));
            let input = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0";

            // rsa signs, aws-lc-rs verifies.
            let rsa_sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private.clone())
                .sign(input)
                .to_vec();
            same_verdicts(&key, Algorithm::RS256, input, &rsa_sig, true);

            // aws-lc-rs signs from the same PKCS#8, rsa verifies. PKCS#1 v1.5 is deterministic:
            // the two signatures are the same bytes.
            let der = private.to_pkcs8_der().unwrap();
            let pair = lc::RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap();
            let mut lc_sig = vec![0; pair.public_modulus_len()];
            let rng = aws_lc_rs::rand::SystemRandom::new();
            pair.sign(&lc::RSA_PKCS1_SHA256, &rng, input, &mut lc_sig)
                .unwrap();
            same_verdicts(&key, Algorithm::RS256, input, &lc_sig, true);
            assert_eq!(lc_sig, rsa_sig);
        }

        /// Every RSA key rsa accepts at the edges of our rules (2048 and 4096 bits, e = 3 and
        /// e = 2^33 - 1) is also parsed by aws-lc-rs, so no accepted key falls back in practice.
        #[test]
        fn aws_lc_parses_every_edge_key_rsa_accepts() {
            for bits in [2048usize, 4096] {
                // An odd modulus of exactly `bits` bits (rsa and aws-lc check size and parity).
                let mut n = vec![0xa5u8; bits / 8];
                n[0] = 0xc1;
                for e in [3u64, 65_537, (1 << 33) - 1] {
                    let e = e.to_be_bytes();
                    let start = e.iter().position(|&b| b != 0).unwrap();
                    let key = one_key(serde_json::json!({
                        "kty": "RSA", "n": b64_encode(&n), "e": b64_encode(&e[start..]),
                    }));
                    assert!(key.native.is_parsed(), "{bits} bits, e = {e:?}");
                }
            }
        }

        /// Should aws-lc-rs ever refuse a key rsa/p256 accepted, the key stays usable and is
        /// verified by rsa/p256: which keys a JWKS may hold does not depend on the backend.
        #[test]
        fn key_without_aws_lc_form_is_verified_by_rust_crypto() {
            let sk = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
            let jwk: serde_json::Value =
                serde_json::from_str(&sk.public_key().to_jwk_string()).unwrap();
            let key = VerifyKey {
                native: NativeKey::refused(),
                ..one_key(jwk)
            };
            let input = b"x.y";
            let sig: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(&sk).sign(input);
            assert!(key.verify(Algorithm::ES256, input, &sig.to_bytes()));
            assert!(!key.verify(Algorithm::ES256, b"x.z", &sig.to_bytes()));
            assert!(!key.verify(Algorithm::RS256, input, &sig.to_bytes()));
        }
    }
}
