//! Offline validation of a Kubernetes ServiceAccount token against its cluster's keys.

use serde::Deserialize;

use crate::cache::{KeyCache, Unavailable};
use crate::config::{Algorithm, Config};
use crate::error::{Error, SubjectTokenError as E};
use crate::jose;

/// The verified identity behind a subject token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    /// The token's own `sub` (`system:serviceaccount:<ns>:<sa>`).
    pub k8s_sub: String,
    /// The token's `exp`.
    pub exp: u64,
    /// The subject as a workload, rendered from its cluster's `workload_id` template: `req_wl`
    /// when the request names no other.
    pub workload_id: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
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

/// A NumericDate (RFC 7519 §2): a non-negative number of seconds; fractions are truncated.
fn numeric_date(n: &serde_json::Number) -> Result<u64, E> {
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        Some(f) if (0.0..1e15).contains(&f) => Ok(f as u64),
        _ => Err(E::BadClaims),
    }
}

fn required_date(n: Option<&serde_json::Number>, missing: E) -> Result<u64, E> {
    numeric_date(n.ok_or(missing)?)
}

/// Kubernetes object names in `sub` and `kubernetes.io`: DNS-1123 subdomain characters.
fn valid_k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Validates `token` as a ServiceAccount token of one of the configured clusters.
pub async fn validate(
    config: &Config,
    cache: &KeyCache,
    token: &str,
    now: u64,
) -> Result<Subject, Error> {
    let jws = jose::parse_compact(token)?;
    // Which cluster? Only `iss` is read before the signature check, to pick the keys.
    let claims: Claims = jose::strict_json(&jws.payload).ok_or(E::BadClaims)?;
    let iss = claims.iss.as_deref().ok_or(E::UntrustedIssuer)?;
    let (idx, cluster) = config.cluster_by_issuer(iss).ok_or(E::UntrustedIssuer)?;

    let alg = Algorithm::parse(&jws.alg).ok_or(E::AlgorithmNotAllowed)?;
    if !cluster.algorithms.contains(&alg) {
        return Err(E::AlgorithmNotAllowed.into());
    }

    let snapshot = cache
        .keys(idx, jws.kid.as_deref())
        .await
        .map_err(|e: Unavailable| {
            tracing::debug!(cluster = %cluster.name, error = %e, "no keys for subject token");
            Error::UpstreamUnavailable {
                retry_after: e.retry_after,
            }
        })?;
    let key = match jws.kid.as_deref() {
        Some(kid) => snapshot
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or(E::UnknownKey)?,
        None => {
            // No kid: acceptable only when exactly one key fits the algorithm.
            let mut fitting = snapshot.keys.iter().filter(|k| k.fits(alg));
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => k,
                _ => return Err(E::UnknownKey.into()),
            }
        }
    };
    if !key.fits(alg) {
        return Err(E::AlgorithmNotAllowed.into());
    }
    if !key
        .verify_async(alg, jws.signing_input, &jws.signature)
        .await
    {
        return Err(E::BadSignature.into());
    }

    // Signature is good: now the claims.
    let sub = claims.sub.as_deref().ok_or(E::MissingSubject)?;
    let aud_ok = match claims.aud.as_ref().ok_or(E::MissingAudience)? {
        Audience::One(a) => cluster.audiences.iter().any(|x| x == a),
        Audience::Many(list) => list.iter().any(|a| cluster.audiences.contains(a)),
    };
    if !aud_ok {
        return Err(E::WrongAudience.into());
    }
    let exp = required_date(claims.exp.as_ref(), E::MissingExpiry)?;
    let iat = required_date(claims.iat.as_ref(), E::MissingIssuedAt)?;
    let leeway = config.leeway;
    if now >= exp.saturating_add(leeway) {
        return Err(E::Expired.into());
    }
    if iat > now.saturating_add(leeway) {
        return Err(E::IssuedInFuture.into());
    }
    let nbf = claims.nbf.as_ref().map(numeric_date).transpose()?;
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(E::NotYetValid.into());
    }
    if exp <= iat {
        return Err(E::BadClaims.into());
    }
    if exp - iat > config.max_subject_token_lifetime {
        return Err(E::LifetimeTooLong.into());
    }

    let k8s: K8sClaims = claims
        .kubernetes
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
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ports::{AsyncRuntime, HttpClient, HttpError, Task};

    /// Claims are rejected before any key fetch; these ports are never called.
    struct Unused;
    #[async_trait::async_trait]
    impl HttpClient for Unused {
        async fn execute(
            &self,
            _: http::Request<Vec<u8>>,
        ) -> Result<http::Response<Vec<u8>>, HttpError> {
            Err(HttpError::Connect)
        }
    }
    #[async_trait::async_trait]
    impl AsyncRuntime for Unused {
        async fn sleep(&self, _: std::time::Duration) {}
        fn spawn(&self, _: Task) {}
    }

    /// Found by fuzzing (fuzz/, target `handler`): a signed token whose claims were not valid
    /// JSON inside a member txbridge ignores was accepted.
    #[test]
    fn claims_must_be_completely_valid_json() {
        let config = Config::from_toml_str(
            r#"
issuer = "https://tts.example.test"
[[clusters]]
name = "alpha"
issuer = "https://alpha.example.test"
audiences = ["txbridge"]
"#,
        )
        .unwrap();
        let cache = KeyCache::new(
            vec![std::sync::Arc::new(config.clusters[0].clone())],
            config.key_cache,
            std::sync::Arc::new(Unused),
            std::sync::Arc::new(crate::ports::SystemClock),
            std::sync::Arc::new(Unused),
        );
        let header = jose::b64_encode(br#"{"alg":"ES256"}"#);
        let bad: [&[u8]; 2] = [
            b"{\"iss\":\"https://alpha.example.test\",\"jti\":\"\xcc\xcf\"}",
            br#"{"iss":"https://alpha.example.test","jti":"\ud800"}"#,
        ];
        for claims in bad {
            let token = format!("{header}.{}.c2ln", jose::b64_encode(claims));
            let err = futures::executor::block_on(validate(&config, &cache, &token, 0));
            assert!(
                matches!(err, Err(Error::SubjectToken(E::BadClaims))),
                "{err:?}"
            );
        }
    }
}
