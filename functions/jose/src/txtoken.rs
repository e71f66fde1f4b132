//! Verification of Transaction Tokens issued by a txbridge service, given its keys: the one
//! implementation shared by the exchange (replacement TxTokens, `subject_token_type` txn_token)
//! and the consumer-side verifier (`txbridge-verifier`). Pure: no I/O, the time is an argument.
//!
//! Checks (draft-ietf-oauth-transaction-tokens §"Txn-Token Validation", plus this service's
//! profile): compact JWS; header `typ` exactly `txntoken+jwt`; `alg` exactly `ES256` (never
//! `none`, never HMAC); no `crit`; `kid` required and selecting one of the given P-256 keys;
//! the signature; `iss` equal to the expected issuer; `aud` naming the expected trust domain;
//! `exp` and `iat` present, with the leeway; `txn` and `sub` present and non-empty.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::claims::{self, Accept, Audience, ClaimsError, Registered, Validation};
use crate::jws::{self, Algorithm, JwsError, VerifyKey};

/// The JOSE `typ` of a Transaction Token.
pub const TXN_TOKEN_TYP: &str = "txntoken+jwt";

/// Why a TxToken was rejected. Each reason is a fixed string: nothing from the token is ever
/// echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxTokenError {
    #[error("token is too large")]
    TooLarge,
    #[error("token is not a compact JWS")]
    Malformed,
    #[error("token header is invalid")]
    BadHeader,
    #[error("token uses a critical header extension")]
    CritHeader,
    #[error("token type is not txntoken+jwt")]
    WrongType,
    #[error("signing algorithm is not ES256")]
    AlgorithmNotAllowed,
    #[error("token has no key id")]
    MissingKeyId,
    #[error("signing key is unknown")]
    UnknownKey,
    #[error("signature is invalid")]
    BadSignature,
    #[error("token claims are invalid")]
    BadClaims,
    #[error("issuer is not the expected one")]
    WrongIssuer,
    #[error("audience is not the expected trust domain")]
    WrongAudience,
    #[error("token has no expiry")]
    MissingExpiry,
    #[error("token has no issued-at time")]
    MissingIssuedAt,
    #[error("token is expired")]
    Expired,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token has no transaction id")]
    MissingTxn,
    #[error("token has no subject")]
    MissingSubject,
}

impl From<JwsError> for TxTokenError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::TooLarge => TxTokenError::TooLarge,
            JwsError::Malformed => TxTokenError::Malformed,
            JwsError::BadHeader => TxTokenError::BadHeader,
            JwsError::CritHeader => TxTokenError::CritHeader,
        }
    }
}

impl From<ClaimsError> for TxTokenError {
    fn from(e: ClaimsError) -> Self {
        match e {
            ClaimsError::Invalid => TxTokenError::BadClaims,
            ClaimsError::MissingIssuer | ClaimsError::WrongIssuer => TxTokenError::WrongIssuer,
            ClaimsError::MissingAudience | ClaimsError::WrongAudience => {
                TxTokenError::WrongAudience
            }
            ClaimsError::MissingExpiry => TxTokenError::MissingExpiry,
            ClaimsError::MissingIssuedAt => TxTokenError::MissingIssuedAt,
            ClaimsError::Expired => TxTokenError::Expired,
            ClaimsError::IssuedInFuture => TxTokenError::IssuedInFuture,
            // `nbf` is not checked on TxTokens (this service never sets it).
            ClaimsError::NotYetValid => TxTokenError::BadClaims,
        }
    }
}

/// What the token must say, besides being signed by one of the keys.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// `iss`: the TxToken service's issuer URL (its metadata `issuer`).
    pub issuer: &'a str,
    /// `aud`: the trust domain.
    pub audience: &'a str,
    /// Clock skew tolerated on `exp` and `iat`, seconds.
    pub leeway: u64,
}

/// The claims of a verified TxToken.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TxTokenClaims {
    pub iss: String,
    /// The trust domain (the expected audience).
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// The transaction id, unchanged through the call chain and through replacements.
    pub txn: String,
    /// The principal of the transaction.
    pub sub: String,
    /// The granted scopes (the space-separated `scope` claim, split); empty when absent.
    pub scope: Vec<String>,
    /// The requesting workload(s): one identifier, or after replacements the call chain of
    /// requesters separated by commas, oldest first.
    pub req_wl: Option<String>,
    /// The immutable transaction context; empty when absent.
    pub tctx: Map<String, Value>,
    /// The request (environment) context; empty when absent.
    pub rctx: Map<String, Value>,
}

impl TxTokenClaims {
    /// Does the token grant `scope`?
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    iat: Option<serde_json::Number>,
    #[serde(default)]
    exp: Option<serde_json::Number>,
    #[serde(default)]
    txn: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    req_wl: Option<String>,
    #[serde(default)]
    tctx: Option<Map<String, Value>>,
    #[serde(default)]
    rctx: Option<Map<String, Value>>,
}

/// A TxToken whose structure and header passed (`typ`, `alg`, a `kid`), not yet verified: what
/// a verifier that fetches keys by `kid` holds between parsing and verifying.
#[derive(Debug)]
pub struct UnverifiedTxToken<'a> {
    jws: jws::UnverifiedJws<'a>,
}

impl<'a> UnverifiedTxToken<'a> {
    /// Parses `token` and checks its header; no key is looked at.
    pub fn parse(token: &'a str) -> Result<Self, TxTokenError> {
        let jws = jws::parse_compact(token)?;
        check_header(&jws)?;
        if jws.kid.is_none() {
            return Err(TxTokenError::MissingKeyId);
        }
        Ok(UnverifiedTxToken { jws })
    }

    /// The header's `kid`: which key to fetch.
    pub fn kid(&self) -> &str {
        self.jws.kid.as_deref().unwrap_or_default()
    }

    /// Verifies the token against `keys` and `expect` at `now` (Unix seconds).
    pub fn verify(
        &self,
        keys: &[VerifyKey],
        expect: &Expectations<'_>,
        now: u64,
    ) -> Result<TxTokenClaims, TxTokenError> {
        verify_jws(&self.jws, keys, expect, now)
    }
}

/// Verifies `token` against `keys` (the TxToken service's published keys) and `expect` at
/// `now` (Unix seconds), and returns its typed claims.
pub fn verify(
    token: &str,
    keys: &[VerifyKey],
    expect: &Expectations<'_>,
    now: u64,
) -> Result<TxTokenClaims, TxTokenError> {
    let jws = jws::parse_compact(token)?;
    verify_jws(&jws, keys, expect, now)
}

/// [`verify`] of an already parsed token (a caller that fetches keys by `kid` parses first).
fn verify_jws(
    jws: &jws::UnverifiedJws<'_>,
    keys: &[VerifyKey],
    expect: &Expectations<'_>,
    now: u64,
) -> Result<TxTokenClaims, TxTokenError> {
    check_header(jws)?;
    let kid = jws.kid.as_deref().ok_or(TxTokenError::MissingKeyId)?;
    let key = keys
        .iter()
        .find(|k| k.kid.as_deref() == Some(kid))
        .ok_or(TxTokenError::UnknownKey)?;
    verify_signature(jws, key)?;
    check_claims(&jws.payload, expect, now)
}

/// Header checks before any key is looked at: `typ`, `alg` (and, by parsing, no `crit`).
fn check_header(jws: &jws::UnverifiedJws<'_>) -> Result<(), TxTokenError> {
    if jws.typ.as_deref() != Some(TXN_TOKEN_TYP) {
        return Err(TxTokenError::WrongType);
    }
    if jws.alg != Algorithm::ES256.as_str() {
        return Err(TxTokenError::AlgorithmNotAllowed);
    }
    Ok(())
}

/// Checks the signature of a parsed JWS with `key` (which must be a P-256 key for ES256).
fn verify_signature(jws: &jws::UnverifiedJws<'_>, key: &VerifyKey) -> Result<(), TxTokenError> {
    if !key.fits(Algorithm::ES256) {
        return Err(TxTokenError::AlgorithmNotAllowed);
    }
    if !key.verify(Algorithm::ES256, jws.signing_input, &jws.signature) {
        return Err(TxTokenError::BadSignature);
    }
    Ok(())
}

/// The claim checks, on a payload whose signature has been verified.
pub(crate) fn check_claims(
    payload: &[u8],
    expect: &Expectations<'_>,
    now: u64,
) -> Result<TxTokenClaims, TxTokenError> {
    use TxTokenError as E;
    let raw: RawClaims = jws::strict_json(payload).ok_or(E::BadClaims)?;
    let times = claims::check(
        &Registered {
            iss: raw.iss.as_deref(),
            aud: raw.aud.as_ref(),
            exp: raw.exp.as_ref(),
            iat: raw.iat.as_ref(),
            nbf: None,
        },
        &Validation {
            issuer: Some(expect.issuer),
            audience: Accept::One(expect.audience),
            leeway: expect.leeway,
            now,
            validate_nbf: false,
        },
    )?;
    let txn = raw.txn.filter(|t| !t.is_empty()).ok_or(E::MissingTxn)?;
    let sub = raw.sub.filter(|s| !s.is_empty()).ok_or(E::MissingSubject)?;
    let scope = raw
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(TxTokenClaims {
        iss: expect.issuer.to_owned(),
        aud: expect.audience.to_owned(),
        iat: times.iat,
        exp: times.exp,
        txn,
        sub,
        scope,
        req_wl: raw.req_wl,
        tctx: raw.tctx.unwrap_or_default(),
        rctx: raw.rctx.unwrap_or_default(),
    })
}

/// The keys of a JWKS document (`{"keys": [...]}`) that can verify TxTokens: P-256 keys with a
/// `kid`. Errors when the document is invalid or has no such key.
pub fn parse_keys(jwks: &[u8]) -> Result<Vec<VerifyKey>, &'static str> {
    let keys: Vec<VerifyKey> = jws::parse_jwks(jwks)?
        .into_iter()
        .filter(|k| k.kid.is_some() && k.fits(Algorithm::ES256))
        .collect();
    if keys.is_empty() {
        return Err("JWKS has no ES256 key with a kid");
    }
    Ok(keys)
}
