//! Compact JWS (RFC 7515 §7.1), strictly: three base64url parts, a header that is one complete
//! JSON object with an `alg`, no `crit` in any form. Structure only: nothing is verified here.

use serde::Deserialize;

use crate::encoding::{b64_decode, strict_json};
use crate::error::TokenError as E;

/// Largest token accepted: subject tokens (Kubernetes tokens are ~1-2 KiB) and TxTokens, which
/// the service never issues longer than this.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::encoding::b64_encode;

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
}
