//! Encodings of JOSE: base64url without padding, and the complete-JSON rule for headers and
//! claims sets.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The header fields a JWS parse reads, for comparing parses.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct RawHeader {
        alg: String,
        #[serde(default)]
        kid: Option<String>,
        #[serde(default)]
        typ: Option<String>,
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
}
