//! Offline validation of a Kubernetes ServiceAccount token (a subject or actor token) against its
//! cluster's keys.

use serde::Deserialize;

use crate::config::{Cluster, Config};
use crate::identity::Subject;
use txbridge_jose::{
    Accept, Algorithm, Audience, KeyCache, KeysUnavailable, Registered, TokenError, Validation,
    check_registered, parse_compact, strict_json,
};

/// Why a subject (or actor) token was rejected: any reason a token fails verification
/// ([`TokenError`]), or one of the ServiceAccount profile's own rules. Each reason is a fixed
/// string: nothing from the token is ever echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectTokenError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("issuer is not trusted")]
    UntrustedIssuer,
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
    #[error("token is not a Kubernetes service account token")]
    NotServiceAccount,
    #[error("subject does not match the kubernetes.io claims")]
    InconsistentSubject,
}

use SubjectTokenError as E;
use TokenError as T;

/// Why a subject token could not be accepted: the token itself, or its cluster's keys could not
/// be had now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Token(SubjectTokenError),
    KeysUnavailable(KeysUnavailable),
}

impl From<SubjectTokenError> for Rejected {
    fn from(e: SubjectTokenError) -> Self {
        Rejected::Token(e)
    }
}

impl From<TokenError> for Rejected {
    fn from(e: TokenError) -> Self {
        Rejected::Token(e.into())
    }
}

#[derive(Deserialize)]
struct NamedRef {
    name: String,
}

#[derive(Deserialize)]
struct K8sClaims {
    namespace: String,
    serviceaccount: NamedRef,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<serde_json::Number>,
    #[serde(default)]
    iat: Option<serde_json::Number>,
    #[serde(default)]
    nbf: Option<serde_json::Number>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<serde_json::Value>,
}

/// Kubernetes object names in `sub` and `kubernetes.io`: DNS-1123 subdomain characters.
fn valid_k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Validates `token` as a ServiceAccount token of one of the configured clusters, at `now`
/// (Unix seconds).
pub async fn validate(
    config: &Config,
    cache: &KeyCache,
    token: &str,
    now: u64,
) -> Result<Subject, Rejected> {
    let jws = parse_compact(token)?;
    // Which cluster? Only `iss` is read before the signature check, to pick the keys.
    let claims: Claims = strict_json(&jws.payload).ok_or(T::BadClaims)?;
    let iss = claims.iss.as_deref().ok_or(E::UntrustedIssuer)?;
    let cluster = config.cluster_by_issuer(iss).ok_or(E::UntrustedIssuer)?;

    let alg = Algorithm::parse(&jws.alg).ok_or(T::AlgorithmNotAllowed)?;
    if !cluster.algorithms.contains(&alg) {
        return Err(T::AlgorithmNotAllowed.into());
    }

    let snapshot = cache
        .keys(&cluster.name, jws.kid.as_deref())
        .await
        .map_err(|e: KeysUnavailable| {
            tracing::debug!(cluster = %cluster.name, error = %e, "no keys for subject token");
            Rejected::KeysUnavailable(e)
        })?;
    let key = match jws.kid.as_deref() {
        Some(kid) => snapshot
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or(T::UnknownKey)?,
        None => {
            // No kid: acceptable only when exactly one key fits the algorithm.
            let mut fitting = snapshot.keys.iter().filter(|k| k.fits(alg));
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => k,
                _ => return Err(T::UnknownKey.into()),
            }
        }
    };
    if !key.fits(alg) {
        return Err(T::AlgorithmNotAllowed.into());
    }
    if !key.verify(alg, jws.signing_input, &jws.signature).await {
        return Err(T::BadSignature.into());
    }

    // Signature is good: now the claims.
    let sub = claims.sub.as_deref().ok_or(T::MissingSubject)?;
    let times = check_registered(
        &Registered {
            iss: None,
            aud: claims.aud.as_ref(),
            exp: claims.exp.as_ref(),
            iat: claims.iat.as_ref(),
            nbf: claims.nbf.as_ref(),
        },
        &Validation {
            issuer: None,
            audience: Accept::AnyOf(&cluster.audiences),
            leeway: config.leeway,
            now,
            validate_nbf: true,
        },
    )?;
    if times.exp - times.iat > config.max_subject_token_lifetime {
        return Err(E::LifetimeTooLong.into());
    }

    let mut subject = service_account(cluster, sub, claims.kubernetes, times.exp)?;
    // Kept only for conditions that read them (a second parse of a verified payload).
    if config.conditions_read_claims {
        subject.claims = serde_json::from_slice(&jws.payload).ok();
    }
    Ok(subject)
}

/// The ServiceAccount a token of `cluster` names: `sub` `system:serviceaccount:<ns>:<sa>`,
/// consistent with its `kubernetes.io` claims.
fn service_account(
    cluster: &Cluster,
    sub: &str,
    kubernetes: Option<serde_json::Value>,
    exp: u64,
) -> Result<Subject, Rejected> {
    let k8s: K8sClaims = kubernetes
        .map(serde_json::from_value)
        .transpose()
        .map_err(|_| E::NotServiceAccount)?
        .ok_or(E::NotServiceAccount)?;
    let (ns, sa) = sub
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .ok_or(E::NotServiceAccount)?;
    if !valid_k8s_name(ns) || !valid_k8s_name(sa) {
        return Err(E::NotServiceAccount.into());
    }
    if k8s.namespace != ns || k8s.serviceaccount.name != sa {
        return Err(E::InconsistentSubject.into());
    }
    Ok(Subject {
        cluster: cluster.name.clone(),
        namespace: ns.to_owned(),
        service_account: sa.to_owned(),
        k8s_sub: sub.to_owned(),
        exp,
        workload_id: cluster.workload_id.render(&cluster.name, ns, sa),
        claims: None,
    })
}

/// The subject a token names, WITHOUT verifying anything: no signature, no key, no time checks
/// (`txbridge policy explain`, offline). Its cluster is chosen by `iss` as in [`validate`], its
/// ServiceAccount read as there, its claims kept.
pub fn read_unverified(config: &Config, token: &str) -> Result<Subject, SubjectTokenError> {
    let jws = parse_compact(token)?;
    let claims: Claims = strict_json(&jws.payload).ok_or(T::BadClaims)?;
    let iss = claims.iss.as_deref().ok_or(E::UntrustedIssuer)?;
    let cluster = config.cluster_by_issuer(iss).ok_or(E::UntrustedIssuer)?;
    let sub = claims.sub.as_deref().ok_or(T::MissingSubject)?;
    let exp = claims
        .exp
        .as_ref()
        .and_then(|n| txbridge_jose::numeric_date(n).ok())
        .unwrap_or(0);
    let mut subject =
        service_account(cluster, sub, claims.kubernetes, exp).map_err(|e| match e {
            Rejected::Token(e) => e,
            Rejected::KeysUnavailable(_) => E::Token(T::UnknownKey),
        })?;
    subject.claims = serde_json::from_slice(&jws.payload).ok();
    Ok(subject)
}
