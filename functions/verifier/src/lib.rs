//! txbridge-verifier: the consumer side of txbridge. A service that receives Transaction Tokens
//! (the `Txn-Token` header) verifies them with a [`Verifier`]: keys from the TxToken service's
//! discovery document (`<issuer>/.well-known/openid-configuration` -> `jwks_uri`), from a JWKS
//! URL, or from a static JWKS; the checks are txbridge-jose's ([`txbridge_jose::txtoken`]), the
//! same code the service uses for replacement TxTokens. It does not depend on the exchange
//! (txbridge-core) or its config compiler.
//!
//! Keys are cached by txbridge-jose's key cache: TTL, single-flight fetches, stale-on-error
//! grace, and a rate-limited refresh on an unknown `kid`. Runs natively and on wasm32 (bring a
//! [`Clock`] and an [`HttpClient`] there). Feature `tower`: a middleware ([`layer`]); feature
//! `reqwest` (native): an [`HttpClient`] ([`ReqwestClient`]).
#![forbid(unsafe_code)]

use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use txbridge_jose::{
    Expectations, KeyCache, KeySource, MAX_TOKEN_LEN, UnverifiedTxToken, VerifyKey,
    parse_txtoken_keys,
};
use url::Url;

// The names a consumer needs, as txbridge-jose names them (one name per type).
pub use txbridge_jose::{
    AsyncRuntime, Clock, Glob, HttpClient, HttpError, KeyCacheConfig, KeyFetchError,
    KeysUnavailable, Task, TokenError, TxTokenClaims, parse_url_ascii,
};

#[cfg(feature = "tower")]
pub mod layer;
#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
pub use txbridge_jose::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, ReqwestClient, TokioRuntime};

/// Default clock skew tolerated on `exp` and `iat`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Everything that can go wrong. Messages are fixed strings: they never echo a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No token was presented (the middleware's missing `Txn-Token` header).
    #[error("no transaction token")]
    Missing,
    /// The token is not a valid TxToken of the expected service and trust domain.
    #[error("invalid transaction token: {0}")]
    Invalid(#[from] TokenError),
    /// The service's keys could not be fetched (and none are cached, or the token's `kid` needs
    /// a refresh that failed); retry after the seconds it says. An unknown `kid` while a refresh
    /// is rate-limited is [`Error::Invalid`] (`UnknownKey`), not this.
    #[error("transaction token keys are unavailable: {0}")]
    KeysUnavailable(KeysUnavailable),
    /// Valid, but the token does not grant a required scope.
    #[error("transaction token lacks a required scope")]
    ScopeMissing,
    /// Valid, but the transaction context does not satisfy a constraint.
    #[error("transaction context does not satisfy a constraint")]
    TctxMismatch,
    /// Valid, but the workload that sent it (the last `req_wl` entry) matches no allowed glob.
    #[error("requesting workload is not allowed")]
    WorkloadMismatch,
    /// The verifier was set up wrongly (bad URL, unusable JWKS, no clock).
    #[error("verifier configuration: {0}")]
    Config(&'static str),
}

impl Error {
    /// A request carrying this token should be refused as unauthenticated (401)?
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Error::Missing | Error::Invalid(_))
    }

    /// The token is valid but not sufficient (403)?
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Error::ScopeMissing | Error::TctxMismatch | Error::WorkloadMismatch
        )
    }
}

/// The name of the one source in the verifier's key cache.
const SERVICE_KEYS: &str = "txtoken-service";

enum Keys {
    Static(Vec<VerifyKey>),
    Remote(Box<Remote>),
}

struct Remote {
    /// Where the keys come from, for `Debug`.
    jwks_url: Option<Url>,
    cache: KeyCache,
}

/// Verifies TxTokens of one TxToken service for one trust domain. Build it once and share it.
pub struct Verifier {
    issuer: String,
    audience: String,
    leeway: u64,
    clock: Arc<dyn Clock>,
    keys: Keys,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Static(k) => format!("static ({} keys)", k.len()),
            Keys::Remote(remote) => match &remote.jwks_url {
                Some(u) => format!("jwks_url {u}"),
                None => "discovery".to_owned(),
            },
        };
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("keys", &keys)
            .finish()
    }
}

/// Settings of a [`Verifier`]; finish with [`Builder::build`] (keys fetched over HTTP) or
/// [`Builder::build_static`] (a JWKS given once).
pub struct Builder {
    issuer: String,
    audience: String,
    leeway: u64,
    clock: Option<Arc<dyn Clock>>,
    runtime: Option<Arc<dyn AsyncRuntime>>,
    jwks_url: Option<String>,
    key_cache: KeyCacheConfig,
    allow_http_loopback: bool,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for TxTokens whose `iss` is `issuer` (the service's metadata `issuer`; a
    /// trailing `/` is ignored, as the service ignores it) and whose `aud` is `audience` (the
    /// trust domain).
    pub fn builder(issuer: &str, audience: &str) -> Builder {
        Builder {
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            leeway: DEFAULT_LEEWAY_SECS,
            clock: None,
            runtime: None,
            jwks_url: None,
            key_cache: KeyCacheConfig::default(),
            allow_http_loopback: false,
        }
    }

    /// Verifies a TxToken and returns its claims. An unknown `kid` triggers (at most) one
    /// rate-limited key refresh; a token failing the header checks never causes a fetch.
    pub async fn verify(&self, token: &str) -> Result<TxTokenClaims, Error> {
        let now = self.clock.now();
        let expect = Expectations {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway: self.leeway,
        };
        let token = UnverifiedTxToken::parse(token)?;
        match &self.keys {
            Keys::Static(keys) => Ok(token.verify(keys, &expect, now).await?),
            Keys::Remote(remote) => {
                let snapshot = remote
                    .cache
                    .keys(SERVICE_KEYS, Some(token.kid()))
                    .await
                    .map_err(keys_error)?;
                Ok(token.verify(&snapshot.keys, &expect, now).await?)
            }
        }
    }

    /// The expected issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The expected audience (trust domain).
    pub fn audience(&self) -> &str {
        &self.audience
    }
}

/// The key cache's refusal, as the verifier answers it. A `kid` still unknown while no refresh
/// is allowed yet (the cache holds keys and refreshed them within `min_refresh_interval`) is an
/// unknown key: the token is refused as invalid (401), not "try again later", so that a stream of
/// made-up kids can neither trigger fetches nor turn into 503s. Only a cache that cannot get any
/// keys answers [`Error::KeysUnavailable`].
fn keys_error(u: KeysUnavailable) -> Error {
    match u.reason {
        KeyFetchError::RefreshLimited => Error::Invalid(TokenError::UnknownKey),
        _ => Error::KeysUnavailable(u),
    }
}

impl Builder {
    /// Clock skew tolerated on `exp` and `iat`, seconds (default 30).
    pub fn leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// The clock (required on wasm32; natively the system clock by default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The async runtime (timers, background key refreshes); required for [`Builder::build`]
    /// unless the `reqwest` feature supplies tokio's ([`TokioRuntime`]).
    pub fn runtime(mut self, runtime: Arc<dyn AsyncRuntime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Fetch keys from this JWKS URL instead of through the discovery document.
    pub fn jwks_url(mut self, url: &str) -> Self {
        self.jwks_url = Some(url.to_owned());
        self
    }

    /// Key cache tuning (TTL, unknown-kid refresh interval, stale grace), seconds.
    pub fn key_cache(mut self, tuning: KeyCacheConfig) -> Self {
        self.key_cache = tuning;
        self
    }

    /// Tests/dev only: allow `http://` issuer and JWKS URLs on loopback hosts.
    pub fn insecure_allow_http_loopback(mut self, allow: bool) -> Self {
        self.allow_http_loopback = allow;
        self
    }

    fn clock_or_default(&mut self) -> Result<Arc<dyn Clock>, Error> {
        if let Some(c) = self.clock.take() {
            return Ok(c);
        }
        default_clock()
    }

    fn url(&self, text: &str, what: &'static str) -> Result<Url, Error> {
        txbridge_jose::parse_url(text, self.allow_http_loopback).map_err(|_| Error::Config(what))
    }

    fn finish(mut self, keys: Keys) -> Result<Verifier, Error> {
        if self.audience.trim().is_empty() {
            return Err(Error::Config("the audience (trust domain) is empty"));
        }
        let clock = self.clock_or_default()?;
        Ok(Verifier {
            issuer: self.issuer,
            audience: self.audience,
            leeway: self.leeway,
            clock,
            keys,
        })
    }

    /// Keys over HTTP: from the issuer's discovery document, or from [`Builder::jwks_url`].
    pub fn build(mut self, http: Arc<dyn HttpClient>) -> Result<Verifier, Error> {
        const BAD_ISSUER: &str =
            "the issuer must be an https:// URL (http:// only on loopback when allowed)";
        self.url(&self.issuer, BAD_ISSUER)?;
        let (discovery_url, jwks_url) = match &self.jwks_url {
            Some(u) => (
                None,
                Some(self.url(
                    u,
                    "the JWKS URL must be an https:// URL (http:// only on loopback when allowed)",
                )?),
            ),
            None => (
                Some(self.url(
                    &format!("{}/.well-known/openid-configuration", self.issuer),
                    BAD_ISSUER,
                )?),
                None,
            ),
        };
        let source = KeySource {
            name: SERVICE_KEYS.to_owned(),
            issuer: self.issuer.clone(),
            discovery_url,
            jwks_url: jwks_url.clone(),
            allow_http_loopback: self.allow_http_loopback,
        };
        let clock = self.clock_or_default()?;
        self.clock = Some(clock.clone());
        let runtime = match self.runtime.take() {
            Some(r) => r,
            None => default_runtime()?,
        };
        let cache = KeyCache::new(vec![source], self.key_cache, http, clock, runtime);
        self.finish(Keys::Remote(Box::new(Remote { jwks_url, cache })))
    }

    /// Keys from a JWKS document given once (no HTTP, no refresh).
    pub fn build_static(self, jwks: &[u8]) -> Result<Verifier, Error> {
        let keys = parse_txtoken_keys(jwks)
            .map_err(|_| Error::Config("the JWKS has no ES256 key with a kid"))?;
        self.finish(Keys::Static(keys))
    }
}

#[cfg(all(feature = "reqwest", not(target_arch = "wasm32")))]
fn default_runtime() -> Result<Arc<dyn AsyncRuntime>, Error> {
    Ok(Arc::new(TokioRuntime))
}

#[cfg(not(all(feature = "reqwest", not(target_arch = "wasm32"))))]
fn default_runtime() -> Result<Arc<dyn AsyncRuntime>, Error> {
    Err(Error::Config(
        "an async runtime is required (Builder::runtime, or the reqwest feature's tokio)",
    ))
}

#[cfg(not(target_arch = "wasm32"))]
fn default_clock() -> Result<Arc<dyn Clock>, Error> {
    Ok(Arc::new(txbridge_jose::SystemClock))
}

#[cfg(target_arch = "wasm32")]
fn default_clock() -> Result<Arc<dyn Clock>, Error> {
    Err(Error::Config("a clock is required on wasm32"))
}

// ---------------------------------------------------------------------------------------------
// Helpers for authorizing a request with verified claims.

/// Requires that the token grants `scope`.
pub fn require_scope(claims: &TxTokenClaims, scope: &str) -> Result<(), Error> {
    if claims.has_scope(scope) {
        Ok(())
    } else {
        Err(Error::ScopeMissing)
    }
}

/// Requires `tctx[key] == value` (JSON equality).
pub fn require_tctx(claims: &TxTokenClaims, key: &str, value: &Value) -> Result<(), Error> {
    if claims.tctx.get(key) == Some(value) {
        Ok(())
    } else {
        Err(Error::TctxMismatch)
    }
}

/// Requires that the workload that sent the token (the last entry of its `req_wl` call chain)
/// matches one of `globs` (`*` never matches `/` or `:`).
pub fn require_workload(claims: &TxTokenClaims, globs: &[Glob]) -> Result<(), Error> {
    let caller = claims
        .req_wl
        .as_deref()
        .and_then(|chain| chain.rsplit(',').next())
        .filter(|w| !w.is_empty());
    match caller {
        Some(w) if globs.iter().any(|g| g.matches(w)) => Ok(()),
        _ => Err(Error::WorkloadMismatch),
    }
}

/// A set of requirements checked together: scopes, tctx equality constraints and the
/// requesting workload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    scopes: Vec<String>,
    tctx: Vec<(String, Value)>,
    /// Globs the last `req_wl` entry must match one of; empty: any workload.
    workloads: Vec<Glob>,
}

impl Requirements {
    pub fn new() -> Self {
        Self::default()
    }

    /// The token must grant this scope.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scopes.push(scope.to_owned());
        self
    }

    /// `tctx[key]` must equal `value`.
    pub fn tctx(mut self, key: &str, value: Value) -> Self {
        self.tctx.push((key.to_owned(), value));
        self
    }

    /// The workload that sent the token (the last `req_wl` entry) must match this glob or
    /// another given this way (`*` never matches `/` or `:`).
    pub fn workload(mut self, glob: Glob) -> Self {
        self.workloads.push(glob);
        self
    }

    /// Checks every requirement: scopes, then tctx, then the workload.
    pub fn check(&self, claims: &TxTokenClaims) -> Result<(), Error> {
        for s in &self.scopes {
            require_scope(claims, s)?;
        }
        for (k, v) in &self.tctx {
            require_tctx(claims, k, v)?;
        }
        if !self.workloads.is_empty() {
            require_workload(claims, &self.workloads)?;
        }
        Ok(())
    }
}

/// The canonical JSON text of a value, for digests: object members sorted by key (bytewise,
/// i.e. by the keys' UTF-8 encoding), no whitespace anywhere, strings and numbers exactly as
/// serde_json writes them (strings escape only `"`, `\` and control characters, using the short
/// forms `\b \f \n \r \t` and `\u00XX` otherwise, and keep other characters as UTF-8; integers in
/// decimal, floats in their shortest round-trip form). Close to, but not exactly, RFC 8785 (which
/// sorts by UTF-16 code units and formats numbers like ECMAScript); the same for all ASCII keys
/// and integer values. Sorting is done here, so the result does not depend on whether
/// serde_json's `preserve_order` feature is enabled.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// SHA-256 of the canonical JSON ([`canonical_json`]) of a value, lowercase hex.
pub fn json_digest(value: &Value) -> String {
    Sha256::digest(canonical_json(value).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 (hex) of the canonical JSON of the token's `tctx` (`{}` when absent): log it, or
/// compare it with one computed elsewhere, instead of the context itself.
pub fn tctx_digest(claims: &TxTokenClaims) -> String {
    json_digest(&Value::Object(claims.tctx.clone()))
}

/// SHA-256 (hex) of the canonical JSON of the token's `rctx` (`{}` when absent).
pub fn rctx_digest(claims: &TxTokenClaims) -> String {
    json_digest(&Value::Object(claims.rctx.clone()))
}

/// Header and claims of a compact JWS, NOT VERIFIED: for display and debugging only.
pub fn decode_unverified(token: &str) -> Result<(Value, Value), Error> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge.into());
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed.into());
    };
    let part = |s: &str, bad: TokenError| -> Result<Value, Error> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        Ok(serde_json::from_slice(&bytes).map_err(|_| bad)?)
    };
    Ok((
        part(h, TokenError::BadHeader)?,
        part(p, TokenError::BadClaims)?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form() {
        let v = json!({"b": [1, {"z": true, "a": null}], "a": "x\"y\n", "é": 1.5, "B": -3});
        assert_eq!(
            canonical_json(&v),
            r#"{"B":-3,"a":"x\"y\n","b":[1,{"a":null,"z":true}],"é":1.5}"#
        );
        // Key order of the input does not matter.
        let a: Value = serde_json::from_str(r#"{"x":1,"y":{"q":2,"p":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "y" : { "p":3, "q":2 }, "x" : 1 }"#).unwrap();
        assert_eq!(json_digest(&a), json_digest(&b));
        assert_eq!(
            json_digest(&json!({})),
            // sha256("{}")
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        // serde_json's map is a BTreeMap here (no `preserve_order` in the workspace): its own
        // output is already canonical.
        assert_eq!(serde_json::to_string(&v).unwrap(), canonical_json(&v));
    }

    #[test]
    fn workload_requirement_reads_the_last_chain_entry() {
        let claims = |req_wl: Option<&str>| TxTokenClaims {
            iss: "i".into(),
            aud: "a".into(),
            iat: 1,
            exp: 2,
            txn: "t".into(),
            sub: "s".into(),
            scope: vec![],
            req_wl: req_wl.map(str::to_owned),
            tctx: Default::default(),
            rctx: Default::default(),
        };
        let reqs =
            Requirements::new().workload(Glob::workload("spiffe://td/ns/payments/sa/*").unwrap());
        let ok = "spiffe://td/ns/web/sa/front,spiffe://td/ns/payments/sa/checkout";
        assert_eq!(reqs.check(&claims(Some(ok))), Ok(()));
        // Only the last entry counts: an allowed workload earlier in the chain is not the caller.
        let earlier = "spiffe://td/ns/payments/sa/checkout,spiffe://td/ns/web/sa/front";
        assert_eq!(
            reqs.check(&claims(Some(earlier))),
            Err(Error::WorkloadMismatch)
        );
        assert_eq!(
            reqs.check(&claims(Some("spiffe://td/ns/payments/sa/a/b"))),
            Err(Error::WorkloadMismatch),
            "* stays within one segment"
        );
        assert_eq!(reqs.check(&claims(None)), Err(Error::WorkloadMismatch));
        assert!(Error::WorkloadMismatch.is_forbidden());
        assert_eq!(Requirements::new().check(&claims(None)), Ok(()));
    }

    #[test]
    fn decode_unverified_needs_three_json_parts() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let h = b64(br#"{"alg":"ES256"}"#);
        let p = b64(br#"{"sub":"s"}"#);
        let (hv, pv) = decode_unverified(&format!("{h}.{p}.")).unwrap();
        assert_eq!(
            (hv["alg"].as_str(), pv["sub"].as_str()),
            (Some("ES256"), Some("s"))
        );
        for bad in [format!("{h}.{p}"), format!("{h}.x.y"), "a.b.c.d".into()] {
            assert!(decode_unverified(&bad).is_err(), "{bad}");
        }
    }
}
