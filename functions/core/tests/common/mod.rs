//! Test support for the core: issuer keys, token crafting, a fixed clock and a closure
//! `HttpClient` that plays the clusters' discovery/JWKS endpoints and counts fetches.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rsa::pkcs1v15::SigningKey as RsaSigningKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde_json::{Value, json};
use txbridge_core::{AsyncRuntime, Clock, Config, HttpClient, HttpError, KeySet, Task, TxBridge};
use txbridge_signer::LocalSigner;

pub const NOW: u64 = 1_800_000_000;
pub const TD: &str = "https://tts.example.test";

/// A cluster signing key.
#[derive(Clone)]
pub enum TestKey {
    Rsa(Arc<rsa::RsaPrivateKey>),
    Ec(p256::SecretKey),
}

static RSA_KEYS: OnceLock<Vec<Arc<rsa::RsaPrivateKey>>> = OnceLock::new();

/// Pre-generated 2048-bit RSA keys (generation is the slow part of these tests).
pub fn rsa_key(i: usize) -> TestKey {
    let keys = RSA_KEYS.get_or_init(|| {
        (0..3)
            .map(|_| Arc::new(rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap()))
            .collect()
    });
    TestKey::Rsa(keys[i].clone())
}

pub fn ec_key() -> TestKey {
    TestKey::Ec(p256::SecretKey::random(
        &mut p256::elliptic_curve::rand_core::OsRng,
    ))
}

impl TestKey {
    pub fn alg(&self) -> &'static str {
        match self {
            TestKey::Rsa(_) => "RS256",
            TestKey::Ec(_) => "ES256",
        }
    }

    pub fn public_jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts as _;
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                    "n": B64.encode(k.n().to_bytes_be()), "e": B64.encode(k.e().to_bytes_be())})
            }
            TestKey::Ec(k) => {
                let mut v: Value = serde_json::from_str(&k.public_key().to_jwk_string()).unwrap();
                v["kid"] = json!(kid);
                v["use"] = json!("sig");
                v["alg"] = json!("ES256");
                v
            }
        }
    }

    /// The public key as SPKI PEM (what an HS256 confusion attack uses as the secret).
    pub fn public_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        match self {
            TestKey::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey as _;
                k.to_public_key()
                    .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                    .unwrap()
            }
            TestKey::Ec(k) => k
                .public_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .unwrap(),
        }
    }

    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            TestKey::Rsa(k) => RsaSigningKey::<sha2::Sha256>::new((**k).clone())
                .sign(input)
                .to_vec(),
            TestKey::Ec(k) => {
                let sk = p256::ecdsa::SigningKey::from(k);
                let sig: p256::ecdsa::Signature = sk.sign(input);
                sig.to_bytes().to_vec()
            }
        }
    }
}

/// Signs exactly `header` and `claims` (no validation: attack tests need bad tokens).
pub fn craft(header: &Value, claims: &Value, key: &TestKey) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = match header["alg"].as_str() {
        Some("none") => Vec::new(),
        Some("HS256") => {
            use hmac::Mac as _;
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(key.public_pem().as_bytes()).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => key.sign(input.as_bytes()),
    };
    format!("{input}.{}", B64.encode(sig))
}

/// Projected SA token claims as kube-apiserver issues them.
pub fn sa_claims(iss: &str, ns: &str, sa: &str) -> Value {
    json!({
        "iss": iss,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "aud": ["txbridge"],
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "jti": "5b8a6f1e-0000-4000-8000-000000000000",
        "kubernetes.io": {
            "namespace": ns,
            "serviceaccount": {"name": sa, "uid": "1b9a7c1e-0000-4000-8000-000000000001"},
            "pod": {"name": "pod-1", "uid": "1b9a7c1e-0000-4000-8000-000000000002"}
        }
    })
}

/// A fixed, settable clock.
#[derive(Debug, Default)]
pub struct FixedClock(pub AtomicU64);

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What an upstream URL answers.
#[derive(Clone, Debug)]
pub enum Upstream {
    Json(Value),
    Status(u16),
    Body(Vec<u8>),
    Fail,
}

/// A closure-like HTTP client: URL -> canned answer, counting requests per URL. Its future
/// yields once before answering so concurrent requests really overlap.
#[derive(Default)]
pub struct FakeHttp {
    pub routes: Mutex<HashMap<String, Upstream>>,
    pub hits: Mutex<HashMap<String, usize>>,
    pub total: AtomicUsize,
}

impl FakeHttp {
    pub fn set(&self, url: &str, answer: Upstream) {
        self.routes.lock().unwrap().insert(url.to_owned(), answer);
    }

    pub fn hits(&self, url: &str) -> usize {
        self.hits.lock().unwrap().get(url).copied().unwrap_or(0)
    }
}

struct YieldOnce(bool);
impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for FakeHttp {
    async fn execute(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let url = req.uri().to_string();
        self.total.fetch_add(1, Ordering::SeqCst);
        *self.hits.lock().unwrap().entry(url.clone()).or_default() += 1;
        YieldOnce(false).await;
        let answer = self.routes.lock().unwrap().get(&url).cloned();
        let (status, body) = match answer {
            Some(Upstream::Json(v)) => (200, serde_json::to_vec(&v).unwrap()),
            Some(Upstream::Status(s)) => (s, b"oops".to_vec()),
            Some(Upstream::Body(b)) => (200, b),
            Some(Upstream::Fail) => return Err(HttpError::Connect),
            None => (404, Vec::new()),
        };
        let mut resp = http::Response::new(body);
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(resp)
    }
}

/// The async runtime of the tests. Timers follow the fixed clock: a short one (a waiter's poll
/// interval, under a second) yields once; a long one (a fetch deadline) completes only once the
/// clock has passed it, which a test does by setting the time. Background tasks wait in a queue
/// until the test runs them ([`TestRuntime::run_background`]) or a request sleeps.
pub struct TestRuntime {
    pub clock: Arc<FixedClock>,
    pub queued: Mutex<Vec<Task>>,
    pub sleeps: AtomicUsize,
}

impl TestRuntime {
    pub fn new(clock: Arc<FixedClock>) -> Self {
        TestRuntime {
            clock,
            queued: Mutex::default(),
            sleeps: AtomicUsize::new(0),
        }
    }

    /// Runs the queued background tasks (and those they queue) to completion; returns how many.
    pub fn run_background(&self) -> usize {
        let mut n = 0;
        loop {
            let tasks: Vec<Task> = std::mem::take(&mut *self.queued.lock().unwrap());
            if tasks.is_empty() {
                return n;
            }
            n += tasks.len();
            for t in tasks {
                futures::executor::block_on(t);
            }
        }
    }

    pub fn pending(&self) -> usize {
        self.queued.lock().unwrap().len()
    }
}

#[async_trait::async_trait]
impl AsyncRuntime for TestRuntime {
    async fn sleep(&self, duration: std::time::Duration) {
        self.sleeps.fetch_add(1, Ordering::SeqCst);
        if duration < std::time::Duration::from_secs(1) {
            // While a request waits, the background tasks make progress (as a runtime's would).
            let tasks: Vec<Task> = std::mem::take(&mut *self.queued.lock().unwrap());
            futures::future::join_all(tasks).await;
            return YieldOnce(false).await;
        }
        let until = self.clock.now_millis() + duration.as_millis() as u64;
        // Not woken by itself: it is polled again whenever its task is (by the work it bounds).
        std::future::poll_fn(|_| {
            if self.clock.now_millis() >= until {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    fn spawn(&self, task: Task) {
        self.queued.lock().unwrap().push(task);
    }
}

/// Two clusters: `alpha` (RS256, issuer hosts its own discovery) and `beta` (ES256, the
/// mirror case: issuer string differs from where the documents are hosted).
pub struct World {
    pub http: Arc<FakeHttp>,
    pub clock: Arc<FixedClock>,
    pub runtime: Arc<TestRuntime>,
    pub alpha: TestKey,
    pub beta: TestKey,
    pub signer: Arc<LocalSigner>,
    pub bridge: TxBridge,
}

pub const ALPHA_ISS: &str = "https://alpha.example.test";
pub const ALPHA_DISCOVERY: &str = "https://alpha.example.test/.well-known/openid-configuration";
pub const ALPHA_JWKS: &str = "https://alpha.example.test/openid/v1/jwks";
pub const BETA_ISS: &str = "https://kubernetes.default.svc";
pub const BETA_DISCOVERY: &str =
    "https://mirror.example.test/beta/.well-known/openid-configuration";
pub const BETA_JWKS: &str = "https://mirror.example.test/beta/openid/v1/jwks";

pub fn config_toml(extra: &str) -> String {
    format!(
        r#"
issuer = "https://tts.example.test"
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

impl World {
    pub fn new() -> World {
        World::with_config(&config_toml(""))
    }

    pub fn with_config(toml: &str) -> World {
        let http = Arc::new(FakeHttp::default());
        let clock = Arc::new(FixedClock(AtomicU64::new(NOW)));
        let runtime = Arc::new(TestRuntime::new(clock.clone()));
        let alpha = rsa_key(0);
        let beta = ec_key();
        http.set(
            ALPHA_DISCOVERY,
            Upstream::Json(json!({"issuer": ALPHA_ISS, "jwks_uri": ALPHA_JWKS})),
        );
        http.set(
            ALPHA_JWKS,
            Upstream::Json(json!({"keys": [alpha.public_jwk("a1")]})),
        );
        http.set(
            BETA_DISCOVERY,
            Upstream::Json(json!({"issuer": BETA_ISS, "jwks_uri": BETA_JWKS})),
        );
        http.set(
            BETA_JWKS,
            Upstream::Json(json!({"keys": [beta.public_jwk("b1")]})),
        );
        let signer = Arc::new(LocalSigner::generate());
        let config = Config::from_toml_str(toml).unwrap();
        let keys = KeySet::new(signer.clone(), vec![]).unwrap();
        let bridge = TxBridge::new(config, keys, http.clone(), clock.clone(), runtime.clone());
        World {
            http,
            clock,
            runtime,
            alpha,
            beta,
            signer,
            bridge,
        }
    }

    pub fn alpha_token(&self, ns: &str, sa: &str) -> String {
        craft(
            &json!({"alg": "RS256", "kid": "a1"}),
            &sa_claims(ALPHA_ISS, ns, sa),
            &self.alpha,
        )
    }

    pub fn beta_token(&self, ns: &str, sa: &str) -> String {
        craft(
            &json!({"alg": "ES256", "kid": "b1"}),
            &sa_claims(BETA_ISS, ns, sa),
            &self.beta,
        )
    }

    pub fn set_now(&self, t: u64) {
        self.clock.0.store(t, Ordering::SeqCst);
    }

    pub async fn exchange(&self, form: &[(&str, &str)]) -> (u16, Value, http::HeaderMap) {
        self.exchange_with(form, |_| {}).await
    }

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
