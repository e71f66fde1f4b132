//! The one check of a JWT's registered claims (RFC 7519 §4.1), shared by subject tokens and
//! TxTokens: issuer, audience, `exp`/`iat`/`nbf` with leeway. Each token kind keeps only its own
//! rules outside (a subject token: the cluster picked by `iss`, the ServiceAccount identity, the
//! lifetime cap; a TxToken: `typ`, `txn`, `sub`). The shape follows jsonwebtoken's `Validation`:
//! what to expect is data, the order of the checks is fixed here.

use serde::Deserialize;

use crate::error::TokenError;

/// An `aud` claim: one string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Which audiences are accepted: the token's `aud` must name at least one.
#[derive(Debug, Clone, Copy)]
pub enum Accept<'a> {
    One(&'a str),
    AnyOf(&'a [String]),
}

impl Accept<'_> {
    fn accepts(&self, aud: &str) -> bool {
        match self {
            Accept::One(want) => *want == aud,
            Accept::AnyOf(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// What the registered claims must say, and when.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    /// `iss` must equal this; `None` when the caller chose its keys by `iss` already.
    pub issuer: Option<&'a str>,
    pub audience: Accept<'a>,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`, seconds.
    pub leeway: u64,
    /// Unix seconds.
    pub now: u64,
    /// Check `nbf` when present.
    pub validate_nbf: bool,
}

/// The registered claims as a token's claims struct read them (borrowed from it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Registered<'c> {
    pub iss: Option<&'c str>,
    pub aud: Option<&'c Audience>,
    pub exp: Option<&'c serde_json::Number>,
    pub iat: Option<&'c serde_json::Number>,
    pub nbf: Option<&'c serde_json::Number>,
}

/// The times of a token whose registered claims passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub exp: u64,
    pub iat: u64,
}

/// A NumericDate (RFC 7519 §2): a non-negative number of seconds; fractions are truncated.
#[inline]
pub fn numeric_date(n: &serde_json::Number) -> Result<u64, TokenError> {
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        Some(f) if (0.0..1e15).contains(&f) => Ok(f as u64),
        _ => Err(TokenError::BadClaims),
    }
}

fn required_date(n: Option<&serde_json::Number>, missing: TokenError) -> Result<u64, TokenError> {
    numeric_date(n.ok_or(missing)?)
}

/// Checks `claims` against `v`: issuer, audience, `exp` and `iat` (required), expiry, issued in
/// the future, `nbf` (when asked), `exp` after `iat`.
#[inline]
pub fn check_registered(claims: &Registered<'_>, v: &Validation<'_>) -> Result<Times, TokenError> {
    use TokenError as E;
    if let Some(want) = v.issuer
        && claims.iss.ok_or(E::WrongIssuer)? != want
    {
        return Err(E::WrongIssuer);
    }
    let aud_ok = match claims.aud.ok_or(E::MissingAudience)? {
        Audience::One(a) => v.audience.accepts(a),
        Audience::Many(list) => list.iter().any(|a| v.audience.accepts(a)),
    };
    if !aud_ok {
        return Err(E::WrongAudience);
    }
    let exp = required_date(claims.exp, E::MissingExpiry)?;
    let iat = required_date(claims.iat, E::MissingIssuedAt)?;
    if v.now >= exp.saturating_add(v.leeway) {
        return Err(E::Expired);
    }
    if iat > v.now.saturating_add(v.leeway) {
        return Err(E::IssuedInFuture);
    }
    if v.validate_nbf {
        let nbf = claims.nbf.map(numeric_date).transpose()?;
        if nbf.is_some_and(|nbf| nbf > v.now.saturating_add(v.leeway)) {
            return Err(E::NotYetValid);
        }
    }
    if exp <= iat {
        return Err(E::BadClaims);
    }
    Ok(Times { exp, iat })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::TokenError as E;

    fn n(v: serde_json::Value) -> serde_json::Number {
        match v {
            serde_json::Value::Number(n) => n,
            _ => unreachable!(),
        }
    }

    /// Every rule, at its edge, with leeway 30 at now = 1000.
    #[test]
    fn each_rule_at_its_edge() {
        let aud_ok = Audience::Many(vec!["x".into(), "txbridge".into()]);
        let aud_one_bad = Audience::One("other".into());
        let accepted = ["txbridge".to_owned()];
        let v = Validation {
            issuer: Some("https://iss"),
            audience: Accept::AnyOf(&accepted),
            leeway: 30,
            now: 1000,
            validate_nbf: true,
        };
        let (d900, d970, d1000, d1029, d1030, d1031, d2000) = (
            n(900.into()),
            n(970.into()),
            n(1000.into()),
            n(1029.into()),
            n(1030.into()),
            n(1031.into()),
            n(2000.into()),
        );
        let frac = n(serde_json::json!(1500.9));
        let neg = n((-1).into());
        let good = Registered {
            iss: Some("https://iss"),
            aud: Some(&aud_ok),
            exp: Some(&d2000),
            iat: Some(&d900),
            nbf: None,
        };
        let cases: Vec<(&str, Registered<'_>, Result<Times, E>)> = vec![
            (
                "good",
                good,
                Ok(Times {
                    exp: 2000,
                    iat: 900,
                }),
            ),
            (
                "no iss",
                Registered { iss: None, ..good },
                Err(E::WrongIssuer),
            ),
            (
                "other iss",
                Registered {
                    iss: Some("https://x"),
                    ..good
                },
                Err(E::WrongIssuer),
            ),
            (
                "no aud",
                Registered { aud: None, ..good },
                Err(E::MissingAudience),
            ),
            (
                "wrong aud",
                Registered {
                    aud: Some(&aud_one_bad),
                    ..good
                },
                Err(E::WrongAudience),
            ),
            (
                "no exp",
                Registered { exp: None, ..good },
                Err(E::MissingExpiry),
            ),
            (
                "no iat",
                Registered { iat: None, ..good },
                Err(E::MissingIssuedAt),
            ),
            (
                "negative exp",
                Registered {
                    exp: Some(&neg),
                    ..good
                },
                Err(E::BadClaims),
            ),
            (
                "fractional exp",
                Registered {
                    exp: Some(&frac),
                    ..good
                },
                Ok(Times {
                    exp: 1500,
                    iat: 900,
                }),
            ),
            (
                "expired within leeway",
                Registered {
                    exp: Some(&d1000),
                    ..good
                },
                Ok(Times {
                    exp: 1000,
                    iat: 900,
                }),
            ),
            (
                "expired past leeway",
                Registered {
                    exp: Some(&d970),
                    ..good
                },
                Err(E::Expired),
            ),
            (
                "iat at now + leeway",
                Registered {
                    iat: Some(&d1030),
                    ..good
                },
                Ok(Times {
                    exp: 2000,
                    iat: 1030,
                }),
            ),
            (
                "iat past now + leeway",
                Registered {
                    iat: Some(&d1031),
                    ..good
                },
                Err(E::IssuedInFuture),
            ),
            (
                "nbf within leeway",
                Registered {
                    nbf: Some(&d1029),
                    ..good
                },
                Ok(Times {
                    exp: 2000,
                    iat: 900,
                }),
            ),
            (
                "nbf past leeway",
                Registered {
                    nbf: Some(&d1031),
                    ..good
                },
                Err(E::NotYetValid),
            ),
            (
                "exp = iat",
                Registered {
                    exp: Some(&d1030),
                    iat: Some(&d1030),
                    ..good
                },
                Err(E::BadClaims),
            ),
        ];
        for (name, claims, want) in cases {
            assert_eq!(check_registered(&claims, &v), want, "{name}");
        }
        // Without an expected issuer `iss` is not looked at; without validate_nbf neither is nbf.
        let lax = Validation {
            issuer: None,
            validate_nbf: false,
            ..v
        };
        let no_iss_late_nbf = Registered {
            iss: None,
            nbf: Some(&d1031),
            ..good
        };
        assert!(check_registered(&no_iss_late_nbf, &lax).is_ok());
        let one = Validation {
            audience: Accept::One("txbridge"),
            ..v
        };
        assert!(check_registered(&good, &one).is_ok());
        assert_eq!(
            check_registered(
                &Registered {
                    aud: Some(&aud_one_bad),
                    ..good
                },
                &one
            ),
            Err(E::WrongAudience)
        );
    }
}
