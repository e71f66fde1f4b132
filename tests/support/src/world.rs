use std::sync::Arc;

use serde_json::{Value, json};
use txbridge_core::{Config, TxBridge};
use txbridge_signer::KeySet;
use txbridge_signer::LocalSigner;

use crate::clock::FixedClock;
use crate::http::{FnHttp, Routes, Upstream};
use crate::keys::{TestKey, craft, rsa_key, sa_claims};
use crate::runtime::TestRuntime;

/// The time of the world (Unix seconds) until a test sets another.
pub const NOW: u64 = 1_800_000_000;
/// The service's issuer and trust domain.
pub const TD: &str = "https://tts.example.test";

/// `alpha` (RS256): the issuer hosts its own discovery document.
pub const ALPHA_ISS: &str = "https://alpha.example.test";
pub const ALPHA_DISCOVERY: &str = "https://alpha.example.test/.well-known/openid-configuration";
pub const ALPHA_JWKS: &str = "https://alpha.example.test/openid/v1/jwks";
/// `beta` (ES256), the mirror case: the issuer string differs from where the documents are.
pub const BETA_ISS: &str = "https://kubernetes.default.svc";
pub const BETA_DISCOVERY: &str =
    "https://mirror.example.test/beta/.well-known/openid-configuration";
pub const BETA_JWKS: &str = "https://mirror.example.test/beta/openid/v1/jwks";
/// `gamma`: a JWKS URL without discovery, on plain-HTTP loopback (not in [`config_toml`]; the
/// fuzz target adds it).
pub const GAMMA_ISS: &str = "http://127.0.0.1:9";
pub const GAMMA_JWKS: &str = "http://127.0.0.1:9/keys";

/// The world's config: clusters `alpha` and `beta` and their policies, then `extra` (more
/// clusters, policies or tables).
pub fn config_toml(extra: &str) -> String {
    format!(
        r#"
issuer = "{TD}"
token_lifetime = "5m"
leeway = "30s"
max_subject_token_lifetime = "24h"

[signer]
kind = "local"

[[clusters]]
name = "alpha"
issuer = "{ALPHA_ISS}"
audiences = ["txbridge"]
algorithms = ["RS256"]

[[clusters]]
name = "beta"
issuer = "{BETA_ISS}"
discovery_url = "{BETA_DISCOVERY}"
audiences = ["txbridge", "other"]

[[policies]]
cluster = "*"
namespace = "payments"
service_account = "checkout"
scopes = ["orders:read", "orders:write"]
workloads = ["web", "wl-*", "spiffe://example/ns/payments/sa/*"]

[[policies]]
cluster = "alpha"
namespace = "team-*"
service_account = "*"
scopes = ["reports:read"]

# The workload that replaces TxTokens in the replacement tests (its actor_token).
[[policies]]
cluster = "alpha"
namespace = "orders"
service_account = "worker"
scopes = ["orders:read"]
workloads = ["svc-*"]
{extra}
"#
    )
}

/// How the world's upstreams and timers behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Each upstream request yields once before it is answered (concurrent requests really
    /// overlap); timers follow the fixed clock ([`TestRuntime::new`]).
    Overlapping,
    /// Upstreams answer at once and timers complete at once, for requests run one after the
    /// other ([`TestRuntime::immediate`]).
    Sequential,
}

/// The test world: a [`TxBridge`] trusting clusters `alpha` and `beta`, whose discovery
/// documents and JWKS are served by [`World::routes`] through [`World::http`], at a fixed
/// clock standing at [`NOW`].
pub struct World {
    /// What the upstream URLs answer (alpha's and beta's documents to begin with).
    pub routes: Arc<Routes>,
    pub http: Arc<FnHttp>,
    pub clock: Arc<FixedClock>,
    pub runtime: Arc<TestRuntime>,
    /// alpha's key `a1` ([`rsa_key`]`(0)`).
    pub alpha: TestKey,
    /// beta's key `b1` ([`World::beta_key`]).
    pub beta: TestKey,
    pub signer: Arc<LocalSigner>,
    pub bridge: TxBridge,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("bridge", &self.bridge)
            .finish_non_exhaustive()
    }
}

impl Default for World {
    fn default() -> World {
        World::new()
    }
}

impl World {
    /// The world with [`config_toml`]`("")` and a fresh signing key.
    pub fn new() -> World {
        World::with_config(&config_toml(""))
    }

    /// The world with this config and a fresh signing key.
    pub fn with_config(toml: &str) -> World {
        World::build(
            Config::from_toml_str(toml).unwrap(),
            Arc::new(LocalSigner::generate()),
            Pace::Overlapping,
        )
    }

    /// The world with this config, signer and pace.
    pub fn build(config: Config, signer: Arc<LocalSigner>, pace: Pace) -> World {
        let routes = Arc::new(Routes::default());
        let mut http = FnHttp::routes(routes.clone());
        let clock = Arc::new(FixedClock::at(NOW));
        let runtime = match pace {
            Pace::Overlapping => {
                http = http.yielding();
                TestRuntime::new(clock.clone())
            }
            Pace::Sequential => TestRuntime::immediate(),
        };
        let (http, runtime) = (Arc::new(http), Arc::new(runtime));
        let alpha = rsa_key(0);
        let beta = World::beta_key();
        routes.set(
            ALPHA_DISCOVERY,
            Upstream::Json(json!({"issuer": ALPHA_ISS, "jwks_uri": ALPHA_JWKS})),
        );
        routes.set(
            ALPHA_JWKS,
            Upstream::Json(json!({"keys": [alpha.public_jwk("a1")]})),
        );
        routes.set(
            BETA_DISCOVERY,
            Upstream::Json(json!({"issuer": BETA_ISS, "jwks_uri": BETA_JWKS})),
        );
        routes.set(
            BETA_JWKS,
            Upstream::Json(json!({"keys": [beta.public_jwk("b1")]})),
        );
        let keys = KeySet::new(signer.clone(), vec![]).unwrap();
        let bridge = TxBridge::new(config, keys, http.clone(), clock.clone(), runtime.clone());
        World {
            routes,
            http,
            clock,
            runtime,
            alpha,
            beta,
            signer,
            bridge,
        }
    }

    /// beta's key: fixed (the key in the fuzz seeds, e.g. `fuzz/seeds/handler/custom_jwks`).
    pub fn beta_key() -> TestKey {
        TestKey::ec_seeded(b"txbridge-fuzz beta")
    }

    /// An SA token of alpha (RS256, kid `a1`) for `ns`/`sa`.
    pub fn alpha_token(&self, ns: &str, sa: &str) -> String {
        craft(
            &json!({"alg": "RS256", "kid": "a1"}),
            &sa_claims(ALPHA_ISS, ns, sa),
            &self.alpha,
        )
    }

    /// An SA token of beta (ES256, kid `b1`) for `ns`/`sa`.
    pub fn beta_token(&self, ns: &str, sa: &str) -> String {
        craft(
            &json!({"alg": "ES256", "kid": "b1"}),
            &sa_claims(BETA_ISS, ns, sa),
            &self.beta,
        )
    }

    /// Sets the clock.
    pub fn set_now(&self, t: u64) {
        self.clock.set(t);
    }

    /// POSTs `form` to `/token`: (status, JSON body or `null`, headers).
    pub async fn exchange(&self, form: &[(&str, &str)]) -> (u16, Value, http::HeaderMap) {
        self.exchange_with(form, |_| {}).await
    }

    /// [`World::exchange`], with the request changed by `tweak` before it is handled.
    pub async fn exchange_with(
        &self,
        form: &[(&str, &str)],
        tweak: impl FnOnce(&mut http::Request<Vec<u8>>),
    ) -> (u16, Value, http::HeaderMap) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = http::Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.into_bytes())
            .unwrap();
        tweak(&mut req);
        let resp = self.bridge.handle(req).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body: Value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
        (status, body, headers)
    }
}

/// The standard exchange form for a subject token.
pub fn form(token: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange".into(),
        ),
        ("subject_token", token.into()),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:jwt".into(),
        ),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:txn_token".into(),
        ),
    ]
}

/// `form` as borrowed pairs, for [`World::exchange`].
pub fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

/// Verifies a TxToken with jsonwebtoken (independent of the core) on the published JWKS.
pub fn verify_txtoken(jwks: &Value, token: &str) -> (jsonwebtoken::Header, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[TD]);
    v.set_issuer(&[TD]);
    v.validate_exp = false; // fixed clock in the past of the real one; exp checked by hand
    v.set_required_spec_claims(&["iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).unwrap();
    (data.header, data.claims)
}
