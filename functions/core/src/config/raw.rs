//! The config file as written: serde types with exactly the documented keys (unknown keys are
//! errors). `super` compiles them into a checked `Config`.

use serde::Deserialize;

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
    /// Clusters whose `workload_id` templates are identical and lack `${cluster}` render the same
    /// workload id for the same namespace and service account. That is a config error unless
    /// this says the fleet means it (namespace sameness). Default false.
    #[serde(default)]
    pub shared_workload_ids: bool,
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

impl RawPublicJwk {
    /// Was a private key member (`d`) given?
    pub(super) fn has_private_member(&self) -> bool {
        self.d.is_some()
    }
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
    /// Names the policy in logs, metrics and `txbridge policy explain` (unique; 1-64 of letters,
    /// digits, '-', '_', '.', ':'). Default `policies[N]`.
    #[serde(default)]
    pub id: Option<String>,
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
    /// Extra `req_wl` names (globs: `*` matches any run of characters except `/` and `:`) the
    /// matching subjects may claim in the `X-Txbridge-Workload` header, besides their own
    /// workload id.
    #[serde(default)]
    pub workloads: Vec<String>,
    /// A CEL expression (at most 4 KiB): the policy applies only when it is true. Variables:
    /// `subject` {cluster, namespace, service_account, sub, claims}, `request` {scope,
    /// request_details, request_context, workload, replacement, actor}. An evaluation error
    /// counts as false.
    #[serde(default)]
    pub condition: Option<String>,
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
