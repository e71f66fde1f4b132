//! Strict parsing of the RFC 8693 token request into a typed [`ExchangeRequest`].

use std::borrow::Cow;
use std::fmt;

use crate::config::valid_scope_token;
use crate::error::Error;

pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const TOKEN_TYPE_TXN_TOKEN: &str = "urn:ietf:params:oauth:token-type:txn_token";

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest `request_details` / `request_context` JSON, and their nesting depth.
pub const MAX_JSON_PARAM: usize = 16 * 1024;
pub const MAX_JSON_DEPTH: usize = 8;

/// The subject token: redacted `Debug`, no `Display`, no `PartialEq`.
pub struct SubjectToken(String);

impl SubjectToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectToken([redacted])")
    }
}

/// Most scope tokens a request may name. Parsing stops at the first token beyond it, so a
/// hostile `scope` costs time linear in its length.
pub const MAX_SCOPES: usize = 64;

/// A token exchange request, parsed once.
#[derive(Debug)]
pub struct ExchangeRequest {
    pub subject_token: SubjectToken,
    pub subject_token_type: &'static str,
    /// The actor's own token (RFC 8693 `actor_token`), with its type; only a replacement takes
    /// one.
    pub actor_token: Option<(SubjectToken, &'static str)>,
    pub audience: Option<String>,
    /// Requested scopes, de-duplicated in request order; None when `scope` was absent.
    pub scope: Option<Vec<String>>,
    pub request_details: serde_json::Map<String, serde_json::Value>,
    pub request_context: serde_json::Map<String, serde_json::Value>,
}

/// Is the content type `application/x-www-form-urlencoded` (parameters such as charset allowed)?
pub fn is_form_content_type(value: Option<&http::HeaderValue>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = v.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// The parameters txbridge reads, as static names (so errors never echo request text).
const KNOWN: &[&str] = &[
    "grant_type",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "audience",
    "resource",
    "scope",
    "request_details",
    "request_context",
    "actor_token",
    "actor_token_type",
];

fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn json_object(
    name: &'static str,
    text: Option<Cow<'_, str>>,
) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    let Some(text) = text else {
        return Ok(serde_json::Map::new());
    };
    if text.len() > MAX_JSON_PARAM {
        return Err(Error::InvalidParameter(name));
    }
    // serde_json's own recursion limit (128) bounds the parse; the depth check bounds the output.
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| Error::InvalidParameter(name))?;
    if json_depth(&value) > MAX_JSON_DEPTH {
        return Err(Error::InvalidParameter(name));
    }
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(Error::InvalidParameter(name)),
    }
}

/// The pairs of a form body exactly as `url::form_urlencoded::parse` decodes them, borrowing
/// every name and value that needs no decoding (no `%`, no `+`). `body` is valid UTF-8, and so
/// is each piece of it between ASCII `&` and `=`.
fn pairs(body: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    body.split('&').filter(|p| !p.is_empty()).map(|pair| {
        if pair.bytes().any(|b| matches!(b, b'%' | b'+')) {
            let mut decoded = url::form_urlencoded::parse(pair.as_bytes());
            // One non-empty pair without `&`: exactly one item.
            decoded.next().unwrap_or_default()
        } else {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (Cow::Borrowed(k), Cow::Borrowed(v))
        }
    })
}

/// Splits a `scope` value (RFC 6749 §3.3) into its tokens, de-duplicated in request order.
/// Refuses an invalid token and more than [`MAX_SCOPES`] tokens (duplicates included) as soon as
/// it meets them: never more than `MAX_SCOPES + 1` tokens are looked at, each compared with at
/// most `MAX_SCOPES` others, so the cost is linear in the length of `s`.
pub fn parse_scope(s: &str) -> Result<Vec<String>, Error> {
    parse_scope_tokens(s.split(' ').filter(|t| !t.is_empty()))
}

fn parse_scope_tokens<'a>(tokens: impl Iterator<Item = &'a str>) -> Result<Vec<String>, Error> {
    let mut scopes: Vec<String> = Vec::new();
    for (i, tok) in tokens.enumerate() {
        if i == MAX_SCOPES || !valid_scope_token(tok) {
            return Err(Error::InvalidScope);
        }
        if !scopes.iter().any(|x| x == tok) {
            scopes.push(tok.to_owned());
        }
    }
    Ok(scopes)
}

/// Parses the form body. Duplicate parameters are rejected (RFC 6749 §3.2), empty values are
/// treated as absent, unknown parameters are ignored.
pub fn parse(body: &[u8]) -> Result<ExchangeRequest, Error> {
    if body.len() > MAX_BODY {
        return Err(Error::PayloadTooLarge);
    }
    let Ok(body) = std::str::from_utf8(body) else {
        return Err(Error::MalformedBody);
    };
    let mut values: [Option<Cow<'_, str>>; KNOWN.len()] = Default::default();
    for (k, v) in pairs(body) {
        let Some(i) = KNOWN.iter().position(|n| *n == k) else {
            continue;
        };
        if values[i].is_some() {
            // RFC 8693 allows several audience/resource values; txbridge serves only one target.
            return Err(match KNOWN[i] {
                "audience" | "resource" => Error::InvalidTarget,
                name => Error::DuplicateParameter(name),
            });
        }
        if v.contains('\u{FFFD}') {
            return Err(Error::MalformedBody);
        }
        values[i] = Some(v);
    }
    let mut take = |name: &str| {
        let i = KNOWN.iter().position(|n| *n == name)?;
        values[i].take().filter(|v| !v.is_empty())
    };

    match take("grant_type") {
        None => return Err(Error::MissingParameter("grant_type")),
        Some(g) if *g == *GRANT_TYPE_TOKEN_EXCHANGE => {}
        Some(_) => return Err(Error::UnsupportedGrantType),
    }
    let subject_token = take("subject_token").ok_or(Error::MissingParameter("subject_token"))?;
    let subject_token_type = match take("subject_token_type").as_deref() {
        None => return Err(Error::MissingParameter("subject_token_type")),
        Some(TOKEN_TYPE_JWT) => TOKEN_TYPE_JWT,
        Some(TOKEN_TYPE_ID_TOKEN) => TOKEN_TYPE_ID_TOKEN,
        // A TxToken of this service: the request asks for a replacement TxToken.
        Some(TOKEN_TYPE_TXN_TOKEN) => TOKEN_TYPE_TXN_TOKEN,
        Some(_) => return Err(Error::UnsupportedSubjectTokenType),
    };
    match take("requested_token_type").as_deref() {
        None | Some(TOKEN_TYPE_TXN_TOKEN) => {}
        Some(_) => return Err(Error::UnsupportedRequestedTokenType),
    }
    // RFC 8693 §2.1: actor_token_type is required with an actor_token and absent without one.
    let actor_token = match (take("actor_token"), take("actor_token_type").as_deref()) {
        (None, None) => None,
        (Some(_), None) => return Err(Error::MissingParameter("actor_token_type")),
        (None, Some(_)) => return Err(Error::InvalidParameter("actor_token_type")),
        (Some(token), Some(kind)) => {
            let kind = match kind {
                TOKEN_TYPE_JWT => TOKEN_TYPE_JWT,
                TOKEN_TYPE_ID_TOKEN => TOKEN_TYPE_ID_TOKEN,
                _ => return Err(Error::InvalidParameter("actor_token_type")),
            };
            Some((SubjectToken(token.into_owned()), kind))
        }
    };
    if take("resource").is_some() {
        return Err(Error::InvalidTarget);
    }
    let audience = take("audience").map(Cow::into_owned);
    let scope = take("scope").map(|s| parse_scope(&s)).transpose()?;
    let request_details = json_object("request_details", take("request_details"))?;
    let request_context = json_object("request_context", take("request_context"))?;
    Ok(ExchangeRequest {
        subject_token: SubjectToken(subject_token.into_owned()),
        subject_token_type,
        actor_token,
        audience,
        scope,
        request_details,
        request_context,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BASE: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a.b.c&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt";

    #[test]
    fn pairs_match_form_urlencoded() {
        let bodies = [
            "",
            "&&",
            "a=1&b=2",
            "a&b=&=c&==d",
            "a=b=c",
            "a+b=c+d&e%3Df=%26%25",
            "x=%ff%fe&y=%zz&z=%",
            "sub=é&ü=ß+%C3%A9",
            "subject_token=eyJh.eyJp.c2ln&subject_token_type=urn%3Aietf",
        ];
        for body in bodies {
            let got: Vec<_> = pairs(body).collect();
            let want: Vec<_> = url::form_urlencoded::parse(body.as_bytes()).collect();
            assert_eq!(got, want, "{body}");
        }
    }

    #[test]
    fn happy_path() {
        let body = format!(
            "{BASE}&scope=orders%3Aread+orders%3Aread+x&audience=https%3A%2F%2Ftd&request_details=%7B%22a%22%3A1%7D&foo=bar&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Atxn_token"
        );
        let r = parse(body.as_bytes()).unwrap();
        assert_eq!(r.subject_token.expose(), "a.b.c");
        assert_eq!(r.scope, Some(vec!["orders:read".into(), "x".into()]));
        assert_eq!(r.audience.as_deref(), Some("https://td"));
        assert_eq!(r.request_details["a"], 1);
        assert!(!format!("{r:?}").contains("a.b.c"));
    }

    #[test]
    fn rejections() {
        let deep = format!("{}{}", "%5B".repeat(20), "%5D".repeat(20));
        let table: Vec<(&str, String, &str)> = vec![
            ("no grant_type", "subject_token=x".into(), "invalid_request"),
            (
                "wrong grant",
                "grant_type=password&subject_token=x".into(),
                "unsupported_grant_type",
            ),
            (
                "no subject_token",
                BASE.replace("subject_token=a.b.c", "subject_token="),
                "invalid_request",
            ),
            (
                "no subject_token_type",
                BASE.replace(
                    "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt",
                    "",
                ),
                "invalid_request",
            ),
            (
                "bad subject_token_type",
                BASE.replace("token-type%3Ajwt", "token-type%3Asaml2"),
                "invalid_request",
            ),
            (
                "bad requested_token_type",
                format!(
                    "{BASE}&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
                ),
                "invalid_request",
            ),
            (
                "duplicate subject_token",
                format!("{BASE}&subject_token=x"),
                "invalid_request",
            ),
            (
                "duplicate grant_type",
                format!("{BASE}&grant_type=x"),
                "invalid_request",
            ),
            (
                "two audiences",
                format!("{BASE}&audience=a&audience=b"),
                "invalid_target",
            ),
            (
                "resource",
                format!("{BASE}&resource=https%3A%2F%2Fx"),
                "invalid_target",
            ),
            (
                "actor token without its type",
                format!("{BASE}&actor_token=x"),
                "invalid_request",
            ),
            (
                "actor token type without a token",
                format!("{BASE}&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"),
                "invalid_request",
            ),
            (
                "unsupported actor token type",
                format!(
                    "{BASE}&actor_token=x&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Asaml2"
                ),
                "invalid_request",
            ),
            (
                "65 scope tokens",
                format!(
                    "{BASE}&scope={}",
                    (0..65)
                        .map(|i| format!("s{i}"))
                        .collect::<Vec<_>>()
                        .join("+")
                ),
                "invalid_scope",
            ),
            (
                "65 copies of one scope token",
                format!("{BASE}&scope={}", vec!["s"; 65].join("+")),
                "invalid_scope",
            ),
            (
                "bad scope char",
                format!("{BASE}&scope=a%22b"),
                "invalid_scope",
            ),
            (
                "details not object",
                format!("{BASE}&request_details=%5B1%5D"),
                "invalid_request",
            ),
            (
                "details not json",
                format!("{BASE}&request_details=nope"),
                "invalid_request",
            ),
            (
                "details deep",
                format!("{BASE}&request_details=%7B%22a%22%3A{deep}%7D"),
                "invalid_request",
            ),
            (
                "details huge",
                format!(
                    "{BASE}&request_details=%7B%22a%22%3A%22{}%22%7D",
                    "x".repeat(MAX_JSON_PARAM)
                ),
                "invalid_request",
            ),
            (
                "context not object",
                format!("{BASE}&request_context=1"),
                "invalid_request",
            ),
            (
                "bad percent utf8",
                format!("{BASE}&scope=%FF"),
                "invalid_request",
            ),
        ];
        for (name, body, code) in table {
            let err = parse(body.as_bytes()).expect_err(name);
            assert_eq!(
                crate::error::WireError::from(&err).code.as_str(),
                code,
                "{name}"
            );
        }
        let huge = vec![b'a'; MAX_BODY + 1];
        assert!(matches!(parse(&huge), Err(Error::PayloadTooLarge)));
        assert!(matches!(parse(&[0xff, 0xfe]), Err(Error::MalformedBody)));
    }

    #[test]
    fn scope_parsing() {
        let ok = parse_scope("  a b  a c ").unwrap();
        assert_eq!(ok, vec!["a", "b", "c"]);
        let max: Vec<String> = (0..MAX_SCOPES).map(|i| format!("s{i}")).collect();
        assert_eq!(parse_scope(&max.join(" ")).unwrap(), max);
        assert!(matches!(parse_scope("a \"b"), Err(Error::InvalidScope)));
    }

    /// A hostile `scope` is refused after looking at `MAX_SCOPES + 1` tokens, however many
    /// follow: the work does not grow with the number of (distinct) tokens in the body.
    #[test]
    fn scope_parsing_stops_at_the_cap() {
        for distinct in [true, false] {
            let owned: Vec<String> = (0..9_500)
                .map(|i| {
                    if distinct {
                        format!("s{i}")
                    } else {
                        "s".to_owned()
                    }
                })
                .collect();
            let looked_at = std::cell::Cell::new(0usize);
            let counted = owned.iter().map(|t| {
                looked_at.set(looked_at.get() + 1);
                t.as_str()
            });
            assert!(matches!(
                parse_scope_tokens(counted),
                Err(Error::InvalidScope)
            ));
            assert_eq!(looked_at.get(), MAX_SCOPES + 1, "distinct: {distinct}");
        }
    }

    #[test]
    fn actor_token_is_parsed() {
        let body = format!(
            "{BASE}&actor_token=d.e.f&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"
        );
        let r = parse(body.as_bytes()).unwrap();
        let (token, kind) = r.actor_token.as_ref().unwrap();
        assert_eq!(token.expose(), "d.e.f");
        assert_eq!(*kind, TOKEN_TYPE_JWT);
        assert!(!format!("{r:?}").contains("d.e.f"));
    }

    #[test]
    fn content_types() {
        let ok = [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
        ];
        for v in ok {
            assert!(
                is_form_content_type(Some(&http::HeaderValue::from_static(v))),
                "{v}"
            );
        }
        for v in ["application/json", "multipart/form-data", "text/plain"] {
            assert!(
                !is_form_content_type(Some(&http::HeaderValue::from_static(v))),
                "{v}"
            );
        }
        assert!(!is_form_content_type(None));
    }
}
