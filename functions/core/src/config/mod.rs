//! The TOML config: raw serde types ([`raw`]), compiled into a checked [`Config`] once at
//! start-up. Every problem is collected (a checker reports them all), each with its key path and
//! line and never a value (txbridge-toml).

mod raw;

use std::collections::HashSet;
use std::time::Duration;

use txbridge_signer::{PublicJwk, SignerConfig, SignerKind};
use url::Url;

use crate::condition::Condition;
use crate::policy::{Policy, compile_name_glob};
use crate::workload::WorkloadTemplate;
use txbridge_jose::{Algorithm, Glob, KeyCacheConfig, KeySource};

pub use raw::RawConfig;
use raw::{RawCluster, RawPolicy, RawSigner};
use txbridge_toml::Problems;
pub use txbridge_toml::{ConfigError, ConfigProblem};

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
    /// Does a policy condition read `subject.claims`? (Only then are claims kept.)
    pub(crate) conditions_read_claims: bool,
}

pub(crate) const MAX_TOKEN_LIFETIME: u64 = 3600;
const MAX_LEEWAY: u64 = 300;
const MAX_SUBJECT_LIFETIME: u64 = 400 * 24 * 3600;

impl Config {
    /// Parses and compiles a TOML config document. The error lists every problem found, each
    /// with its key path and line.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let (raw, doc) = txbridge_toml::parse::<RawConfig>(text)?;
        Config::try_from(raw).map_err(|e| e.locate(&doc))
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

    /// The ids of the policies, in order.
    pub fn policy_ids(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.id.as_str())
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
        .map_err(|_| ConfigError::at(key, "must be a duration like \"30s\", \"5m\" or \"24h\""))?
        .as_secs();
    if secs < min || secs > max {
        return Err(ConfigError::at(
            key,
            format!(
                "must be between {} and {}",
                humantime::format_duration(Duration::from_secs(min)),
                humantime::format_duration(Duration::from_secs(max))
            ),
        ));
    }
    Ok(secs)
}

fn parse_url(key: &str, text: &str, allow_http_loopback: bool) -> Result<Url, ConfigError> {
    txbridge_jose::parse_url(text, allow_http_loopback)
        .map_err(|why| ConfigError::at(key, why.to_string()))
}

/// Cluster names: 1-63 lowercase ASCII letters, digits, '-', '_' or '.' (the Terraform config
/// module checks the same rule at plan time).
fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// Policy ids: 1-64 ASCII letters, digits, '-', '_', '.' or ':'.
fn valid_policy_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
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
        let mut p = Problems::default();
        let issuer = match p.keep(parse_url("issuer", &raw.issuer, true)) {
            Some(url) if url.query().is_some() => {
                p.push("issuer", "must not contain a query");
                String::new()
            }
            _ => raw.issuer.trim_end_matches('/').to_owned(),
        };
        let trust_domain = match raw.trust_domain {
            Some(td) if td.trim().is_empty() => {
                p.push("trust_domain", "is empty");
                String::new()
            }
            Some(td) => td,
            None => issuer.clone(),
        };
        let token_lifetime = p
            .keep(duration(
                "token_lifetime",
                raw.token_lifetime.as_deref(),
                300,
                1,
                MAX_TOKEN_LIFETIME,
            ))
            .unwrap_or_default();
        let leeway = p
            .keep(duration("leeway", raw.leeway.as_deref(), 30, 0, MAX_LEEWAY))
            .unwrap_or_default();
        let max_subject_token_lifetime = p
            .keep(duration(
                "max_subject_token_lifetime",
                raw.max_subject_token_lifetime.as_deref(),
                24 * 3600,
                60,
                MAX_SUBJECT_LIFETIME,
            ))
            .unwrap_or_default();

        let signer = compile_signer(&mut p, raw.signer);

        if raw.clusters.is_empty() {
            p.push("", "at least one [[clusters]] entry is required");
        }
        let mut names = HashSet::new();
        let mut issuers = HashSet::new();
        let mut clusters: Vec<(usize, Cluster)> = Vec::with_capacity(raw.clusters.len());
        for (i, rc) in raw.clusters.into_iter().enumerate() {
            let Some(cluster) = compile_cluster(&mut p, i, rc) else {
                continue;
            };
            if !names.insert(cluster.name.clone()) {
                p.push(format!("clusters[{i}].name"), "is not unique");
            }
            if !issuers.insert(cluster.issuer.clone()) {
                p.push(
                    format!("clusters[{i}].issuer"),
                    "is used by another cluster",
                );
            }
            clusters.push((i, cluster));
        }
        if !raw.shared_workload_ids {
            check_workload_id_collisions(&mut p, &clusters);
        }
        let clusters: Vec<Cluster> = clusters.into_iter().map(|(_, c)| c).collect();

        let mut policies = Vec::with_capacity(raw.policies.len());
        let mut ids = HashSet::new();
        for (i, rp) in raw.policies.into_iter().enumerate() {
            if rp.cluster != "*" && !names.contains(&rp.cluster) {
                p.push(
                    format!("policies[{i}].cluster"),
                    "names no configured cluster",
                );
            }
            if let Some(policy) = compile_policy(&mut p, i, rp) {
                if !ids.insert(policy.id.clone()) {
                    p.push(format!("policies[{i}].id"), "is not unique");
                }
                policies.push(policy);
            }
        }

        let key_cache = match raw.key_cache {
            None => KeyCacheConfig::default(),
            Some(kc) => {
                let d = KeyCacheConfig::default();
                KeyCacheConfig {
                    ttl: p
                        .keep(duration(
                            "key_cache.ttl",
                            kc.ttl.as_deref(),
                            d.ttl,
                            10,
                            24 * 3600,
                        ))
                        .unwrap_or(d.ttl),
                    min_refresh_interval: p
                        .keep(duration(
                            "key_cache.min_refresh_interval",
                            kc.min_refresh_interval.as_deref(),
                            d.min_refresh_interval,
                            1,
                            3600,
                        ))
                        .unwrap_or(d.min_refresh_interval),
                    stale_grace: p
                        .keep(duration(
                            "key_cache.stale_grace",
                            kc.stale_grace.as_deref(),
                            d.stale_grace,
                            0,
                            7 * 24 * 3600,
                        ))
                        .unwrap_or(d.stale_grace),
                }
            }
        };

        let conditions_read_claims = policies
            .iter()
            .any(|p: &Policy| p.condition.as_ref().is_some_and(|c| c.reads_claims()));
        match signer {
            Some(signer) if p.is_empty() => Ok(Config {
                issuer,
                trust_domain,
                token_lifetime,
                leeway,
                max_subject_token_lifetime,
                signer,
                clusters,
                policies,
                key_cache,
                conditions_read_claims,
            }),
            _ => Err(p.into_error()),
        }
    }
}

/// Two clusters whose `workload_id` templates are identical and lack `${cluster}` render the same
/// workload id for the same namespace and service account: whoever administers one could mint
/// the other's workload identity. A config error unless `shared_workload_ids = true`.
fn check_workload_id_collisions(p: &mut Problems, clusters: &[(usize, Cluster)]) {
    for (n, (j, b)) in clusters.iter().enumerate() {
        if b.workload_id.names_cluster() {
            continue;
        }
        if let Some((i, a)) = clusters[..n]
            .iter()
            .find(|(_, a)| a.workload_id == b.workload_id)
        {
            p.push(
                format!("clusters[{j}].workload_id"),
                format!(
                    "renders the same workload ids as clusters[{i}].workload_id (clusters \
                     \"{}\" and \"{}\": identical templates without ${{cluster}}); add \
                     ${{cluster}} to the template, or set shared_workload_ids = true if the fleet \
                     means one namespace to be the same workload in every cluster",
                    a.name, b.name
                ),
            );
        }
    }
}

fn compile_signer(p: &mut Problems, raw: Option<RawSigner>) -> Option<SignerConfig> {
    let Some(raw) = raw else {
        return Some(SignerConfig {
            kind: SignerKind::Local,
            previous_public_keys: Vec::new(),
        });
    };
    let kind = match raw.kind.as_str() {
        "local" | "kms-wrapped" if raw.key_id.is_some() || !raw.previous_key_ids.is_empty() => {
            p.push(
                "signer.key_id",
                "and signer.previous_key_ids are for kind = \"kms\" only",
            );
            None
        }
        "local" | "kms" if raw.wrapped_key.is_some() => {
            p.push("signer.wrapped_key", "is for kind = \"kms-wrapped\" only");
            None
        }
        "local" => Some(SignerKind::Local),
        "kms-wrapped" => {
            let wrapped_key = raw
                .wrapped_key
                .map(|k| k.split_whitespace().collect::<String>())
                .filter(|k| !k.is_empty());
            let decoded = wrapped_key.as_deref().map(|k| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, k.as_bytes())
            });
            match (wrapped_key, decoded) {
                (Some(wrapped_key), Some(Ok(b))) if !b.is_empty() && b.len() <= 6 * 1024 => {
                    Some(SignerKind::KmsWrapped { wrapped_key })
                }
                (None, _) => {
                    p.push(
                        "signer.wrapped_key",
                        "is required for kind = \"kms-wrapped\"",
                    );
                    None
                }
                _ => {
                    p.push(
                        "signer.wrapped_key",
                        "must be the base64 PrivateKeyCiphertextBlob of \
                         GenerateDataKeyPairWithoutPlaintext",
                    );
                    None
                }
            }
        }
        "kms" => {
            let key_id = raw.key_id.filter(|k| !k.trim().is_empty());
            if key_id.is_none() {
                p.push("signer.key_id", "is required for kind = \"kms\"");
            }
            if raw.previous_key_ids.iter().any(|k| k.trim().is_empty()) {
                p.push("signer.previous_key_ids", "has an empty entry");
            }
            key_id.map(|key_id| SignerKind::Kms {
                key_id,
                previous_key_ids: raw.previous_key_ids,
            })
        }
        _ => {
            p.push(
                "signer.kind",
                "must be \"local\", \"kms\" or \"kms-wrapped\"",
            );
            None
        }
    };
    let mut previous_public_keys = Vec::with_capacity(raw.previous_public_keys.len());
    for (i, raw) in raw.previous_public_keys.into_iter().enumerate() {
        let path = format!("signer.previous_public_keys[{i}]");
        if raw.has_private_member() {
            p.push(
                path,
                "has a private key member (d): only public keys may be listed",
            );
            continue;
        }
        let jwk = PublicJwk {
            kty: raw.kty,
            crv: raw.crv,
            x: raw.x,
            y: raw.y,
            kid: raw.kid,
            use_: raw.use_,
            alg: raw.alg,
        };
        match jwk.normalized() {
            Ok(jwk) => previous_public_keys.push(jwk),
            Err(e) => p.push(path, format!("is not a usable public key: {e}")),
        }
    }
    Some(SignerConfig {
        kind: kind?,
        previous_public_keys,
    })
}

fn compile_cluster(p: &mut Problems, i: usize, rc: RawCluster) -> Option<Cluster> {
    let at = |key: &str| format!("clusters[{i}].{key}");
    let name_ok = valid_cluster_name(&rc.name);
    if !name_ok {
        p.push(
            at("name"),
            "must be 1-63 lowercase letters, digits, '-', '_' or '.'",
        );
    }
    let http = rc.insecure_allow_http_loopback;
    let issuer_url = p.keep(parse_url(&at("issuer"), &rc.issuer, http));
    let jwks_url = match rc.jwks_url.as_deref() {
        Some(u) => Some(p.keep(parse_url(&at("jwks_url"), u, http))?),
        None => None,
    };
    let discovery_url = match (&rc.discovery_url, &jwks_url) {
        (Some(u), _) => Some(p.keep(parse_url(&at("discovery_url"), u, http))?),
        (None, Some(_)) => None,
        (None, None) => {
            let base = issuer_url.as_ref()?.as_str().trim_end_matches('/');
            Some(p.keep(parse_url(
                &at("issuer"),
                &format!("{base}/.well-known/openid-configuration"),
                http,
            ))?)
        }
    };
    let audiences_ok =
        !rc.audiences.is_empty() && rc.audiences.iter().all(|a| !a.trim().is_empty());
    if !audiences_ok {
        p.push(at("audiences"), "must list at least one non-empty audience");
    }
    let algorithms = match rc.algorithms {
        None => Some(vec![Algorithm::RS256, Algorithm::ES256]),
        Some(list) if list.is_empty() => {
            p.push(at("algorithms"), "is empty");
            None
        }
        Some(list) => {
            let mut algs = Vec::new();
            for a in &list {
                match Algorithm::parse(a) {
                    Some(alg) if !algs.contains(&alg) => algs.push(alg),
                    Some(_) => {}
                    None => {
                        p.push(at("algorithms"), "may contain only \"RS256\" and \"ES256\"");
                        break;
                    }
                }
            }
            Some(algs)
        }
    };
    let workload_id = match rc.workload_id.as_deref() {
        None => Some(WorkloadTemplate::default()),
        Some(t) => p.keep(
            WorkloadTemplate::compile(t).map_err(|why| ConfigError::at(at("workload_id"), why)),
        ),
    };
    if !(name_ok && audiences_ok) {
        return None;
    }
    issuer_url?;
    Some(Cluster {
        name: rc.name,
        issuer: rc.issuer,
        discovery_url,
        jwks_url,
        audiences: rc.audiences,
        algorithms: algorithms?,
        workload_id: workload_id?,
        insecure_allow_http_loopback: http,
    })
}

fn compile_policy(p: &mut Problems, i: usize, rp: RawPolicy) -> Option<Policy> {
    let at = |key: &str| format!("policies[{i}].{key}");
    let id = match rp.id {
        Some(id) if valid_policy_id(&id) => id,
        Some(_) => {
            p.push(
                at("id"),
                "must be 1-64 ASCII letters, digits, '-', '_', '.' or ':'",
            );
            String::new()
        }
        None => format!("policies[{i}]"),
    };
    let mut glob = |key: &str, pattern: &str| {
        p.keep(compile_name_glob(pattern).map_err(|why| ConfigError::at(at(key), why)))
    };
    let cluster = glob("cluster", &rp.cluster);
    let namespace = glob("namespace", &rp.namespace);
    let service_account = glob("service_account", &rp.service_account);
    let mut scopes: Vec<String> = Vec::new();
    let mut scopes_ok = true;
    for s in rp.scopes {
        if !valid_scope_token(&s) {
            scopes_ok = false;
        } else if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    if !scopes_ok {
        p.push(at("scopes"), "has an invalid scope token");
    }
    if rp
        .tctx_constraints
        .iter()
        .any(|(k, v)| k.is_empty() || v.is_empty())
    {
        p.push(at("tctx_constraints"), "has an empty key or value");
    }
    let mut workloads = Vec::with_capacity(rp.workloads.len());
    for w in &rp.workloads {
        match Glob::workload(w) {
            Ok(g) => workloads.push(g),
            Err(why) => p.push(at("workloads"), why),
        }
    }
    let condition = match rp.condition.as_deref() {
        None => None,
        Some(source) => match Condition::compile(source) {
            Ok(condition) => Some(condition),
            Err(e) => {
                p.push(at("condition"), format!("of policy \"{id}\" {e}"));
                None
            }
        },
    };
    Some(Policy {
        id,
        cluster: cluster?,
        namespace: namespace?,
        service_account: service_account?,
        scopes,
        tctx_constraints: rp.tctx_constraints,
        workloads,
        condition,
    })
}

#[cfg(test)]
mod tests;
