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

use crate::alg::Algorithm;
use crate::claims::{self, Accept, Audience, Registered, Validation};
use crate::encoding::strict_json;
use crate::error::TokenError;
use crate::jwk::{VerifyKey, parse_verify_keys};
use crate::jws;

/// The JOSE `typ` of a Transaction Token.
pub const TXN_TOKEN_TYP: &str = "txntoken+jwt";

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
    pub fn parse(token: &'a str) -> Result<Self, TokenError> {
        let jws = jws::parse_compact(token)?;
        check_header(&jws)?;
        if jws.kid.is_none() {
            return Err(TokenError::MissingKeyId);
        }
        Ok(UnverifiedTxToken { jws })
    }

    /// The header's `kid`: which key to fetch.
    pub fn kid(&self) -> &str {
        self.jws.kid.as_deref().unwrap_or_default()
    }

    /// Verifies the token against `keys` and `expect` at `now` (Unix seconds).
    pub async fn verify(
        &self,
        keys: &[VerifyKey],
        expect: &Expectations<'_>,
        now: u64,
    ) -> Result<TxTokenClaims, TokenError> {
        verify_jws(&self.jws, keys, expect, now).await
    }
}

/// Verifies `token` against `keys` (the TxToken service's published keys) and `expect` at
/// `now` (Unix seconds), and returns its typed claims.
pub async fn verify_txtoken(
    token: &str,
    keys: &[VerifyKey],
    expect: &Expectations<'_>,
    now: u64,
) -> Result<TxTokenClaims, TokenError> {
    let jws = jws::parse_compact(token)?;
    verify_jws(&jws, keys, expect, now).await
}

/// [`verify_txtoken`] of an already parsed token (a caller that fetches keys by `kid` parses
/// first).
async fn verify_jws(
    jws: &jws::UnverifiedJws<'_>,
    keys: &[VerifyKey],
    expect: &Expectations<'_>,
    now: u64,
) -> Result<TxTokenClaims, TokenError> {
    check_header(jws)?;
    let kid = jws.kid.as_deref().ok_or(TokenError::MissingKeyId)?;
    let key = keys
        .iter()
        .find(|k| k.kid.as_deref() == Some(kid))
        .ok_or(TokenError::UnknownKey)?;
    verify_signature(jws, key).await?;
    check_claims(&jws.payload, expect, now)
}

/// Header checks before any key is looked at: `typ`, `alg` (and, by parsing, no `crit`).
fn check_header(jws: &jws::UnverifiedJws<'_>) -> Result<(), TokenError> {
    if jws.typ.as_deref() != Some(TXN_TOKEN_TYP) {
        return Err(TokenError::WrongType);
    }
    if jws.alg != Algorithm::ES256.as_str() {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    Ok(())
}

/// Checks the signature of a parsed JWS with `key` (which must be a P-256 key for ES256).
async fn verify_signature(jws: &jws::UnverifiedJws<'_>, key: &VerifyKey) -> Result<(), TokenError> {
    if !key.fits(Algorithm::ES256) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    if !key
        .verify(Algorithm::ES256, jws.signing_input, &jws.signature)
        .await
    {
        return Err(TokenError::BadSignature);
    }
    Ok(())
}

/// The claim checks, on a payload whose signature has been verified.
fn check_claims(
    payload: &[u8],
    expect: &Expectations<'_>,
    now: u64,
) -> Result<TxTokenClaims, TokenError> {
    use TokenError as E;
    let raw: RawClaims = strict_json(payload).ok_or(E::BadClaims)?;
    let times = claims::check_registered(
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
pub fn parse_txtoken_keys(jwks: &[u8]) -> Result<Vec<VerifyKey>, &'static str> {
    let keys: Vec<VerifyKey> = parse_verify_keys(jwks)?
        .into_iter()
        .filter(|k| k.kid.is_some() && k.fits(Algorithm::ES256))
        .collect();
    if keys.is_empty() {
        return Err("JWKS has no ES256 key with a kid");
    }
    Ok(keys)
}
