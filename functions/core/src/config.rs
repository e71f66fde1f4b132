//! The TOML config: raw serde types, compiled into a checked [`Config`] once at start-up.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use txbridge_signer::PublicJwk;
use url::Url;

use crate::policy::{Glob, Policy};
use crate::workload::{self, WorkloadTemplate};
use txbridge_jose::jws::Algorithm;
use txbridge_jose::keys::{KeyCacheConfig, KeySource};
use txbridge_jose::urls::{check_url, parse_url_ascii};

/// Why a config was rejected. Messages name the offending key, never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config is not valid TOML for txbridge: {0}")]
    Parse(String),
    #[error("config: {0}")]
    Invalid(String),
}

/// The parser's message and where, never the source excerpt `toml`'s `Display` adds (the
/// offending line may hold a value that must not reach a log, e.g. a misplaced private key).
fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e
        .span()
        .map(|span| {
            let line = text
                .get(..span.start)
                .map_or(0, |t| t.matches('\n').count())
                + 1;
            format!(" (line {line})")
        })
        .unwrap_or_default();
    ConfigError::Parse(format!("{}{at}", e.message().trim_end()))
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) types: exactly the documented keys; unknown keys are errors.

/// The config file as written (see ARCHITECTURE.md "Config").
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `iss` of issued TxTokens; also the metadata issuer. https (http only on loopback).
    pub issuer: String,
    /// `aud` of issued TxTokens and the expected `audience` parameter. Default: `issuer`.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Lifetime of issued TxTokens, e.g. "5m" (1s..=1h). Default 5m.
    #[serde(default)]
    pub token_lifetime: Option<String>,
    /// Clock skew tolerated on subject token times, e.g. "30s" (0..=5m). Default 30s.
    #[serde(default)]
    pub leeway: Option<String>,
    /// Subject tokens with `exp - iat` above this are rejected, e.g. "24h". Default 24h.
    #[serde(default)]
    pub max_subject_token_lifetime: Option<String>,
    /// Which key signs TxTokens. Default: `kind = "local"`.
    #[serde(default)]
    pub signer: Option<RawSigner>,
    /// Trusted clusters (at least one).
    #[serde(default)]
    pub clusters: Vec<RawCluster>,
    /// Trust policy; a subject matching no policy is denied.
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    /// Issuer key cache tuning (optional).
    #[serde(default)]
    pub key_cache: Option<RawKeyCache>,
}

/// `[signer]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawSigner {
    /// "local" (key from TXBRIDGE_SIGNING_KEY), "kms" or "kms-wrapped".
    pub kind: String,
    /// KMS key id, ARN, alias name or alias ARN (kms only).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Base64 `PrivateKeyCiphertextBlob` of a P-256 key pair made by KMS
    /// `GenerateDataKeyPairWithoutPlaintext` (kms-wrapped only).
    #[serde(default)]
    pub wrapped_key: Option<String>,
    /// Previous KMS keys whose public keys stay published (rotation overlap; kms only).
    #[serde(default)]
    pub previous_key_ids: Vec<String>,
    /// Previous public keys (P-256 JWKs) that stay published in the JWKS.
    #[serde(default)]
    pub previous_public_keys: Vec<RawPublicJwk>,
}

/// An entry of `signer.previous_public_keys`: a public P-256 JWK and nothing else.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPublicJwk {
    /// "EC".
    pub kty: String,
    /// "P-256".
    pub crv: String,
    /// base64url x coordinate.
    pub x: String,
    /// base64url y coordinate.
    pub y: String,
    /// Key id; default: the RFC 7638 thumbprint.
    #[serde(default)]
    pub kid: Option<String>,
    /// "sig" when present.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// "ES256" when present.
    #[serde(default)]
    pub alg: Option<String>,
    /// Never allowed: present only so that a private key is named as such in the error.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    d: Option<Redacted>,
}

/// A config value that is never read or echoed (a private key member given by mistake).
#[derive(Deserialize)]
struct Redacted(#[allow(dead_code)] serde::de::IgnoredAny);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `[[clusters]]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Short name, appears in `sub` and `tctx` (lowercase letters, digits, '-', '_', '.').
    pub name: String,
    /// Must equal the token's `iss` and the discovery document's `issuer`.
    pub issuer: String,
    /// Where the discovery document is hosted (mirror case). Default: issuer + /.well-known/openid-configuration.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// JWKS URL override: when set, discovery is not fetched.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// Accepted algorithms: RS256 and/or ES256. Default both.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// `req_wl` of this cluster's subjects: a template with `${cluster}`, `${namespace}` and
    /// `${service_account}`. Default `${cluster}:${namespace}:${service_account}`.
    #[serde(default)]
    pub workload_id: Option<String>,
    /// Tests/dev only: allow http:// issuer, discovery and JWKS URLs on loopback hosts.
    #[serde(default)]
    pub insecure_allow_http_loopback: bool,
}

/// `[[policies]]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Cluster name, exact or "*".
    pub cluster: String,
    /// Namespace, exact or glob (`*` matches any run of characters).
    pub namespace: String,
    /// Service account, exact or glob.
    pub service_account: String,
    /// Scope ceiling: the scopes this subject may be granted.
    pub scopes: Vec<String>,
    /// Constraints on `request_details` (-> tctx): key -> required value. A value may be
    /// "${cluster}", "${namespace}" or "${service_account}" for the verified subject's own.
    #[serde(default)]
    pub tctx_constraints: std::collections::BTreeMap<String, String>,
    /// Extra `req_wl` names (globs, `*` wildcard) the matching subjects may claim in the
    /// `X-Txbridge-Workload` header, besides their own workload id.
    #[serde(default)]
    pub workloads: Vec<String>,
}

/// `[key_cache]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawKeyCache {
    /// How long fetched keys are fresh. Default 5m.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Unknown-`kid` refreshes: at most one per this interval; also the longest failure back-off.
    /// Default 10s.
    #[serde(default)]
    pub min_refresh_interval: Option<String>,
    /// How long keys past `ttl` are still served (at once, refreshed in the background, and
    /// while the issuer is unreachable). Default 1h.
    #[serde(default)]
    pub stale_grace: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Compiled types.

/// Which key signs TxTokens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignerKind {
    /// In-binary key from `TXBRIDGE_SIGNING_KEY`.
    Local,
    /// AWS KMS key.
    Kms {
        key_id: String,
        previous_key_ids: Vec<String>,
    },
    /// A P-256 key wrapped by AWS KMS (`PrivateKeyCiphertextBlob`, base64), decrypted once per
    /// cold start.
    KmsWrapped { wrapped_key: String },
}

/// The compiled `[signer]` section.
#[derive(Debug, Clone)]
pub struct SignerConfig {
    pub kind: SignerKind,
    /// Checked P-256 JWKs (kid filled in) to keep publishing.
    pub previous_public_keys: Vec<PublicJwk>,
}

/// A trusted cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub issuer: String,
    /// None when `jwks_url` is configured (discovery skipped).
    pub discovery_url: Option<Url>,
    pub jwks_url: Option<Url>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// Renders the `req_wl` of this cluster's subjects.
    pub workload_id: WorkloadTemplate,
    pub insecure_allow_http_loopback: bool,
}

impl Cluster {
    /// Where the key cache fetches this cluster's keys (looked up by the cluster's name).
    pub fn key_source(&self) -> KeySource {
        KeySource {
            name: self.name.clone(),
            issuer: self.issuer.clone(),
            discovery_url: self.discovery_url.clone(),
            jwks_url: self.jwks_url.clone(),
            allow_http_loopback: self.insecure_allow_http_loopback,
        }
    }
}

/// The checked configuration. Only [`Config::from_toml_str`] builds one.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) issuer: String,
    pub(crate) trust_domain: String,
    pub(crate) token_lifetime: u64,
    pub(crate) leeway: u64,
    pub(crate) max_subject_token_lifetime: u64,
    pub(crate) signer: SignerConfig,
    pub(crate) clusters: Vec<Cluster>,
    pub(crate) policies: Vec<Policy>,
    pub(crate) key_cache: KeyCacheConfig,
}

pub(crate) const MAX_TOKEN_LIFETIME: u64 = 3600;
const MAX_LEEWAY: u64 = 300;
const MAX_SUBJECT_LIFETIME: u64 = 400 * 24 * 3600;

impl Config {
    /// Parses and compiles a TOML config document.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        Config::try_from(raw)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn signer(&self) -> &SignerConfig {
        &self.signer
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// Lifetime of issued tokens, seconds.
    pub fn token_lifetime(&self) -> u64 {
        self.token_lifetime
    }

    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    pub fn max_subject_token_lifetime(&self) -> u64 {
        self.max_subject_token_lifetime
    }

    pub fn key_cache(&self) -> KeyCacheConfig {
        self.key_cache
    }

    pub(crate) fn cluster_by_issuer(&self, iss: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.issuer == iss)
    }
}

fn duration(
    key: &str,
    value: Option<&str>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let secs = humantime::parse_duration(text.trim())
        .map_err(|_| {
            invalid(format!(
                "{key} must be a duration like \"30s\", \"5m\" or \"24h\""
            ))
        })?
        .as_secs();
    if secs < min || secs > max {
        return Err(invalid(format!(
            "{key} must be between {} and {}",
            humantime::format_duration(Duration::from_secs(min)),
            humantime::format_duration(Duration::from_secs(max))
        )));
    }
    Ok(secs)
}

fn parse_url(key: &str, text: &str, allow_http_loopback: bool) -> Result<Url, ConfigError> {
    let url =
        parse_url_ascii(text).map_err(|why| invalid(format!("{key} is not a valid URL: {why}")))?;
    check_url(&url, allow_http_loopback).map_err(|why| invalid(format!("{key} {why}")))?;
    Ok(url)
}

fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
pub(crate) fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let issuer_url = parse_url("issuer", &raw.issuer, true)?;
        if issuer_url.query().is_some() {
            return Err(invalid("issuer must not contain a query"));
        }
        let issuer = raw.issuer.trim_end_matches('/').to_owned();
        let trust_domain = match raw.trust_domain {
            Some(td) if td.trim().is_empty() => return Err(invalid("trust_domain is empty")),
            Some(td) => td,
            None => issuer.clone(),
        };
        let token_lifetime = duration(
            "token_lifetime",
            raw.token_lifetime.as_deref(),
            300,
            1,
            MAX_TOKEN_LIFETIME,
        )?;
        let leeway = duration("leeway", raw.leeway.as_deref(), 30, 0, MAX_LEEWAY)?;
        let max_subject_token_lifetime = duration(
            "max_subject_token_lifetime",
            raw.max_subject_token_lifetime.as_deref(),
            24 * 3600,
            60,
            MAX_SUBJECT_LIFETIME,
        )?;

        let signer = compile_signer(raw.signer)?;

        if raw.clusters.is_empty() {
            return Err(invalid("at least one [[clusters]] entry is required"));
        }
        let mut names = HashSet::new();
        let mut issuers = HashSet::new();
        let mut clusters = Vec::with_capacity(raw.clusters.len());
        for (i, rc) in raw.clusters.into_iter().enumerate() {
            let cluster = compile_cluster(i, rc)?;
            if !names.insert(cluster.name.clone()) {
                return Err(invalid(format!("clusters[{i}].name is not unique")));
            }
            if !issuers.insert(cluster.issuer.clone()) {
                return Err(invalid(format!(
                    "clusters[{i}].issuer is used by another cluster"
                )));
            }
            clusters.push(cluster);
        }

        let mut policies = Vec::with_capacity(raw.policies.len());
        for (i, rp) in raw.policies.into_iter().enumerate() {
            if rp.cluster != "*" && !names.contains(&rp.cluster) {
                return Err(invalid(format!(
                    "policies[{i}].cluster names no configured cluster"
                )));
            }
            policies.push(compile_policy(i, rp)?);
        }

        let key_cache = match raw.key_cache {
            None => KeyCacheConfig::default(),
            Some(kc) => {
                let d = KeyCacheConfig::default();
                KeyCacheConfig {
                    ttl: duration("key_cache.ttl", kc.ttl.as_deref(), d.ttl, 10, 24 * 3600)?,
                    min_refresh_interval: duration(
                        "key_cache.min_refresh_interval",
                        kc.min_refresh_interval.as_deref(),
                        d.min_refresh_interval,
                        1,
                        3600,
                    )?,
                    stale_grace: duration(
                        "key_cache.stale_grace",
                        kc.stale_grace.as_deref(),
                        d.stale_grace,
                        0,
                        7 * 24 * 3600,
                    )?,
                }
            }
        };

        Ok(Config {
            issuer,
            trust_domain,
            token_lifetime,
            leeway,
            max_subject_token_lifetime,
            signer,
            clusters,
            policies,
            key_cache,
        })
    }
}

fn compile_signer(raw: Option<RawSigner>) -> Result<SignerConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(SignerConfig {
            kind: SignerKind::Local,
            previous_public_keys: Vec::new(),
        });
    };
    let kind = match raw.kind.as_str() {
        "local" | "kms-wrapped" if raw.key_id.is_some() || !raw.previous_key_ids.is_empty() => {
            return Err(invalid(
                "signer.key_id and signer.previous_key_ids are for kind = \"kms\" only",
            ));
        }
        "local" | "kms" if raw.wrapped_key.is_some() => {
            return Err(invalid(
                "signer.wrapped_key is for kind = \"kms-wrapped\" only",
            ));
        }
        "local" => SignerKind::Local,
        "kms-wrapped" => {
            let wrapped_key = raw
                .wrapped_key
                .map(|k| k.split_whitespace().collect::<String>())
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    invalid("signer.wrapped_key is required for kind = \"kms-wrapped\"")
                })?;
            let decoded = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                wrapped_key.as_bytes(),
            );
            if !decoded.is_ok_and(|b| !b.is_empty() && b.len() <= 6 * 1024) {
                return Err(invalid(
                    "signer.wrapped_key must be the base64 PrivateKeyCiphertextBlob of \
                     GenerateDataKeyPairWithoutPlaintext",
                ));
            }
            SignerKind::KmsWrapped { wrapped_key }
        }
        "kms" => {
            let key_id = raw
                .key_id
                .filter(|k| !k.trim().is_empty())
                .ok_or_else(|| invalid("signer.key_id is required for kind = \"kms\""))?;
            if raw.previous_key_ids.iter().any(|k| k.trim().is_empty()) {
                return Err(invalid("signer.previous_key_ids has an empty entry"));
            }
            SignerKind::Kms {
                key_id,
                previous_key_ids: raw.previous_key_ids,
            }
        }
        _ => {
            return Err(invalid(
                "signer.kind must be \"local\", \"kms\" or \"kms-wrapped\"",
            ));
        }
    };
    let previous_public_keys = raw
        .previous_public_keys
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            if raw.d.is_some() {
                return Err(invalid(format!(
                    "signer.previous_public_keys[{i}] has a private key member (d): only public \
                     keys may be listed"
                )));
            }
            PublicJwk {
                kty: raw.kty,
                crv: raw.crv,
                x: raw.x,
                y: raw.y,
                kid: raw.kid,
                use_: raw.use_,
                alg: raw.alg,
            }
            .normalized()
            .map_err(|e| invalid(format!("signer.previous_public_keys[{i}]: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(SignerConfig {
        kind,
        previous_public_keys,
    })
}

fn compile_cluster(i: usize, rc: RawCluster) -> Result<Cluster, ConfigError> {
    if !valid_cluster_name(&rc.name) {
        return Err(invalid(format!(
            "clusters[{i}].name must be 1-63 lowercase letters, digits, '-', '_' or '.'"
        )));
    }
    let http = rc.insecure_allow_http_loopback;
    let issuer_url = parse_url(&format!("clusters[{i}].issuer"), &rc.issuer, http)?;
    let jwks_url = rc
        .jwks_url
        .as_deref()
        .map(|u| parse_url(&format!("clusters[{i}].jwks_url"), u, http))
        .transpose()?;
    let discovery_url = match (&rc.discovery_url, &jwks_url) {
        (Some(u), _) => Some(parse_url(&format!("clusters[{i}].discovery_url"), u, http)?),
        (None, Some(_)) => None,
        (None, None) => {
            let base = issuer_url.as_str().trim_end_matches('/');
            Some(parse_url(
                &format!("clusters[{i}].issuer"),
                &format!("{base}/.well-known/openid-configuration"),
                http,
            )?)
        }
    };
    if rc.audiences.is_empty() || rc.audiences.iter().any(|a| a.trim().is_empty()) {
        return Err(invalid(format!(
            "clusters[{i}].audiences must list at least one non-empty audience"
        )));
    }
    let algorithms = match rc.algorithms {
        None => vec![Algorithm::RS256, Algorithm::ES256],
        Some(list) => {
            if list.is_empty() {
                return Err(invalid(format!("clusters[{i}].algorithms is empty")));
            }
            let mut algs = Vec::new();
            for a in &list {
                let alg = Algorithm::parse(a).ok_or_else(|| {
                    invalid(format!(
                        "clusters[{i}].algorithms may contain only \"RS256\" and \"ES256\""
                    ))
                })?;
                if !algs.contains(&alg) {
                    algs.push(alg);
                }
            }
            algs
        }
    };
    let workload_id = match rc.workload_id.as_deref() {
        None => WorkloadTemplate::default(),
        Some(t) => WorkloadTemplate::compile(t)
            .map_err(|why| invalid(format!("clusters[{i}].workload_id {why}")))?,
    };
    Ok(Cluster {
        name: rc.name,
        issuer: rc.issuer,
        discovery_url,
        jwks_url,
        audiences: rc.audiences,
        algorithms,
        workload_id,
        insecure_allow_http_loopback: http,
    })
}

fn compile_policy(i: usize, rp: RawPolicy) -> Result<Policy, ConfigError> {
    let glob = |key: &str, pattern: &str| {
        Glob::compile(pattern).map_err(|why| invalid(format!("policies[{i}].{key} {why}")))
    };
    let mut scopes: Vec<String> = Vec::new();
    for s in rp.scopes {
        if !valid_scope_token(&s) {
            return Err(invalid(format!(
                "policies[{i}].scopes has an invalid scope token"
            )));
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    for (k, v) in &rp.tctx_constraints {
        if k.is_empty() || v.is_empty() {
            return Err(invalid(format!(
                "policies[{i}].tctx_constraints has an empty key or value"
            )));
        }
    }
    let workloads = rp
        .workloads
        .iter()
        .map(|w| {
            workload::compile_glob(w)
                .map_err(|why| invalid(format!("policies[{i}].workloads {why}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Policy {
        cluster: glob("cluster", &rp.cluster)?,
        namespace: glob("namespace", &rp.namespace)?,
        service_account: glob("service_account", &rp.service_account)?,
        scopes,
        tctx_constraints: rp.tctx_constraints,
        workloads,
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
