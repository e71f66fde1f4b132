//! Minting of Transaction Tokens (draft-ietf-oauth-transaction-tokens).

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};
use txbridge_signer::Signer;

use crate::error::Error;
use crate::identity::Subject;
use crate::subject::SubjectTokenError;
use txbridge_jose::{MAX_TOKEN_LEN, TXN_TOKEN_TYP, TokenError, b64_encode, b64_encode_into};

/// tctx keys txbridge sets from the verified subject.
pub const TCTX_RESERVED: [&str; 3] = ["cluster", "namespace", "service_account"];
/// rctx keys txbridge sets itself; `request_context` may never supply them.
pub const RCTX_RESERVED: [&str; 3] = ["req_wl", "req_ip", "authn"];

/// A signed TxToken: redacted `Debug`, no `Display`.
pub struct TxToken(String);

impl TxToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TxToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TxToken([redacted])")
    }
}

/// What goes into a TxToken besides the service's own settings.
#[derive(Debug)]
pub struct Grant<'a> {
    pub subject: &'a Subject,
    pub scope: &'a [String],
    pub req_wl: String,
    pub req_ip: Option<IpAddr>,
    pub authn: &'a str,
    pub request_details: Map<String, Value>,
    pub request_context: Map<String, Value>,
}

/// The claims of a TxToken, serialized in this order: sorted by name, as a `json!` object
/// serializes them, so a token's bytes do not depend on how its claims were built (an exchange
/// or a replacement).
#[derive(Debug, Serialize)]
pub struct TxClaims {
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub iss: String,
    pub rctx: Map<String, Value>,
    pub req_wl: String,
    pub scope: String,
    pub sub: String,
    pub tctx: Map<String, Value>,
    pub txn: String,
}

/// A fresh transaction id: 128 random bits, base64url.
pub fn new_txn() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|_| Error::Internal)?;
    Ok(b64_encode(&bytes))
}

/// `tctx`: request_details plus the verified cluster/namespace/service account. A details key
/// that names one of those must carry the verified value.
pub fn build_tctx(
    subject: &Subject,
    mut details: Map<String, Value>,
) -> Result<Map<String, Value>, Error> {
    let verified = [
        (TCTX_RESERVED[0], &subject.cluster),
        (TCTX_RESERVED[1], &subject.namespace),
        (TCTX_RESERVED[2], &subject.service_account),
    ];
    for (key, value) in verified {
        match details.get(key) {
            Some(Value::String(s)) if s == value => {}
            Some(_) => return Err(Error::RequestDetailsConflict),
            None => {}
        }
        details.insert(key.to_owned(), Value::String(value.clone()));
    }
    Ok(details)
}

/// `rctx`: request_context additions plus req_wl, req_ip and authn, which it cannot set.
pub fn build_rctx(
    req_wl: &str,
    req_ip: Option<IpAddr>,
    authn: &str,
    mut context: Map<String, Value>,
) -> Result<Map<String, Value>, Error> {
    if RCTX_RESERVED.iter().any(|k| context.contains_key(*k)) {
        return Err(Error::RequestContextReserved);
    }
    context.insert("req_wl".into(), Value::String(req_wl.to_owned()));
    if let Some(ip) = req_ip {
        context.insert("req_ip".into(), Value::String(ip.to_string()));
    }
    context.insert("authn".into(), Value::String(authn.to_owned()));
    Ok(context)
}

/// The claims of a fresh TxToken for a verified subject (an exchange). `exp` never passes the
/// subject token's `exp`.
pub fn exchange_claims(
    issuer: &str,
    trust_domain: &str,
    lifetime: u64,
    grant: Grant<'_>,
    now: u64,
) -> Result<TxClaims, Error> {
    let Grant {
        subject,
        scope,
        req_wl,
        req_ip,
        authn,
        request_details,
        request_context,
    } = grant;
    let exp = now.saturating_add(lifetime).min(subject.exp);
    if exp <= now {
        return Err(SubjectTokenError::from(TokenError::Expired).into());
    }
    Ok(TxClaims {
        aud: trust_domain.to_owned(),
        exp,
        iat: now,
        iss: issuer.to_owned(),
        rctx: build_rctx(&req_wl, req_ip, authn, request_context)?,
        req_wl,
        scope: scope.join(" "),
        sub: format!("{}:{}", subject.cluster, subject.k8s_sub),
        tctx: build_tctx(subject, request_details)?,
        txn: new_txn()?,
    })
}

/// The JOSE header of a TxToken (fields sorted by name, as above).
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// The base64url length of an ES256 (P-256, `r || s`) signature: 64 bytes.
const ES256_SIGNATURE_B64_LEN: usize = 86;

/// Serializes and signs a TxToken's claims: header `{"alg", "typ": "txntoken+jwt", "kid"}`.
pub async fn sign(signer: &dyn Signer, claims: &TxClaims) -> Result<TxToken, Error> {
    let txn = claims.txn.as_str();
    let header = Header {
        alg: signer.alg(),
        kid: signer.key_id(),
        typ: TXN_TOKEN_TYP,
    };
    let header = serde_json::to_vec(&header).map_err(|_| Error::Internal)?;
    let claims = serde_json::to_vec(claims).map_err(|_| Error::Internal)?;
    let mut token = String::with_capacity((header.len() + claims.len()) * 4 / 3 + 100);
    b64_encode_into(&header, &mut token);
    token.push('.');
    b64_encode_into(&claims, &mut token);
    // Never issue a token that no consumer (nor this service, replacing it) would accept; checked
    // before the signer is asked, so an oversized request costs no KMS call.
    if token.len() + 1 + ES256_SIGNATURE_B64_LEN > MAX_TOKEN_LEN {
        tracing::debug!(txn = %txn, len = token.len(), "transaction token too large");
        return Err(Error::TokenTooLarge);
    }
    let signature = signer.sign(token.as_bytes()).await.map_err(|e| {
        tracing::warn!(error = %e, txn = %txn, "signing failed");
        Error::SigningUnavailable
    })?;
    token.push('.');
    b64_encode_into(&signature, &mut token);
    Ok(TxToken(token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// The typed claims and header serialize to the same bytes as the `json!` objects they
    /// replaced.
    #[test]
    fn typed_claims_serialize_like_json_objects() {
        let tctx = json!({"cluster": "c", "zeta": [1, 2], "a\"b": {"y": null, "x": true}});
        let rctx = json!({"req_wl": "ns/wl", "authn": "urn:x", "req_ip": "10.0.0.1"});
        let claims = TxClaims {
            aud: "td".into(),
            exp: 1_700_000_300,
            iat: 1_700_000_000,
            iss: "https://tts.example/é".into(),
            rctx: rctx.as_object().unwrap().clone(),
            req_wl: "ns/wl".into(),
            scope: "a b".into(),
            sub: "alpha:system:serviceaccount:ns:sa".into(),
            tctx: tctx.as_object().unwrap().clone(),
            txn: "dHhu".into(),
        };
        let old = json!({
            "iss": "https://tts.example/é",
            "aud": "td",
            "iat": 1_700_000_000u64,
            "exp": 1_700_000_300u64,
            "txn": "dHhu",
            "sub": "alpha:system:serviceaccount:ns:sa",
            "scope": "a b",
            "req_wl": "ns/wl",
            "tctx": tctx,
            "rctx": rctx,
        });
        assert_eq!(
            serde_json::to_string(&claims).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
        let header = Header {
            alg: "ES256",
            kid: "k1",
            typ: TXN_TOKEN_TYP,
        };
        let old = json!({"alg": "ES256", "typ": TXN_TOKEN_TYP, "kid": "k1"});
        assert_eq!(
            serde_json::to_string(&header).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
    }
}
