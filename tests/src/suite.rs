//! The end-to-end suite, written once and run against every shell (Lambda under
//! `cargo lambda watch`, Worker under workerd): real harness issuer, real HTTP.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::procs::Harness;

pub const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TXN: &str = "urn:ietf:params:oauth:token-type:txn_token";

/// The clusters every run uses: a direct RS256 issuer, a mirrored ES256 one, and a third
/// (cold, for upstream faults).
pub const CLUSTERS: [&str; 3] = [
    "name=alpha,alg=RS256",
    "name=beta,alg=ES256,mirror",
    "name=gamma,alg=ES256",
];

/// Which shell runs the function under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// The Lambda under `cargo lambda watch`.
    Lambda,
    /// The Worker under `workerd serve`.
    Worker,
}

/// The workload id template of cluster beta in the suite: the kontxt quickstart's SPIFFE shape.
pub const BETA_WORKLOAD_ID: &str = "spiffe://example.test/ns/${namespace}/sa/${service_account}";

/// The suite's config: the harness's, with beta rendering SPIFFE workload ids, and policies
/// with conditions (alpha's namespace `conditional`, which no other policy matches).
pub fn config(harness_config: &str) -> String {
    let out = harness_config.replacen(
        "name = \"beta\"\n",
        &format!("name = \"beta\"\nworkload_id = \"{BETA_WORKLOAD_ID}\"\n"),
        1,
    );
    assert!(
        out.contains("workload_id"),
        "no cluster beta in {harness_config}"
    );
    format!("{out}{CONDITIONAL_POLICIES}")
}

/// Policies with CEL conditions: a pod-name condition over the SA token's claims, and a
/// request_details + scope condition.
pub const CONDITIONAL_POLICIES: &str = r#"
[[policies]]
id = "checkout-pods"
cluster = "alpha"
namespace = "conditional"
service_account = "pods"
scopes = ["orders:read"]
condition = 'subject.claims["kubernetes.io"].pod.name.startsWith("checkout-")'

[[policies]]
id = "ticketed-writes"
cluster = "alpha"
namespace = "conditional"
service_account = "ticketed"
scopes = ["orders:read", "orders:write"]
condition = '!("orders:write" in request.scope) || request.request_details.ticket.startsWith("INC-")'
"#;

/// The function under test.
#[derive(Debug)]
pub struct Function {
    /// Where requests go.
    pub base_url: String,
    /// The configured issuer (`iss` of TxTokens).
    pub issuer: String,
    /// Files holding everything the function logged.
    pub logs: Vec<PathBuf>,
    pub shell: Shell,
    /// The config it runs with.
    pub config: String,
}

/// Another instance of the same shell, started by a case (stopped on drop).
#[allow(missing_debug_implementations)]
pub struct Peer {
    pub base_url: String,
    /// Where the peer's output goes (also scanned by the leak check).
    pub log: PathBuf,
    _running: crate::Running,
    _dir: Option<crate::procs::TempDir>,
}

/// The log level every function under test runs at: the most verbose, so that the leak check
/// sees everything any level could log.
pub const TRACE: &str = "trace";

/// One run's context: the harness, the function, and every secret seen (for the leak check).
#[allow(missing_debug_implementations)]
pub struct Env {
    pub harness: Harness,
    pub f: Function,
    pub signing_key: String,
    http: reqwest::blocking::Client,
    secrets: Mutex<Vec<String>>,
    /// Log files of peers started by cases, for the leak check.
    peer_logs: Mutex<Vec<PathBuf>>,
}

/// A response from the function.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub raw: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Env {
    pub fn new(harness: Harness, f: Function, signing_key: String) -> Env {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let env = Env {
            harness,
            f,
            signing_key,
            http,
            secrets: Mutex::new(Vec::new()),
            peer_logs: Mutex::new(Vec::new()),
        };
        env.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(env.signing_key.clone());
        env
    }

    /// Records a token or key the leak check must not find in any log.
    pub fn remember(&self, secret: &str) {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(secret.to_owned());
    }

    /// Starts another instance of the shell under test with this config and signing key (its
    /// logs join the leak check).
    pub fn start_peer(&self, config: &str, key: &str) -> anyhow::Result<Peer> {
        self.start_peer_with(config, key, true)
    }

    /// [`Env::start_peer`] for an instance that cannot start (it answers 503).
    pub fn start_peer_failing(&self, config: &str, key: &str) -> anyhow::Result<Peer> {
        self.start_peer_with(config, key, false)
    }

    fn start_peer_with(&self, config: &str, key: &str, ready: bool) -> anyhow::Result<Peer> {
        self.remember(key);
        match self.f.shell {
            Shell::Lambda => {
                let port = crate::free_port();
                let start = if ready {
                    crate::procs::start_lambda
                } else {
                    crate::procs::start_lambda_answering
                };
                let (running, log, dir) = start(port, config, key, &[("RUST_LOG", TRACE)])?;
                self.peer_logs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(log.clone());
                Ok(Peer {
                    base_url: running.base_url.clone(),
                    log,
                    _running: running,
                    _dir: Some(dir),
                })
            }
            Shell::Worker => {
                let running = if ready {
                    crate::worker::start(config, key)?
                } else {
                    crate::worker::start_answering(config, key)?
                };
                let log = crate::worker::log_path(&running);
                self.peer_logs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(log.clone());
                Ok(Peer {
                    base_url: running.base_url.clone(),
                    log,
                    _running: running,
                    _dir: None,
                })
            }
        }
    }

    /// POST /token at another base URL.
    pub fn exchange_at(
        &self,
        base_url: &str,
        pairs: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let mut req = self
            .http
            .post(format!("{base_url}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req)
    }

    /// An SA token of the workload that replaces TxTokens in the suite (alpha orders/worker).
    pub fn actor_token(&self) -> String {
        self.token("alpha", "orders", "worker")
    }

    pub fn token(&self, cluster: &str, ns: &str, sa: &str) -> String {
        let t = self
            .harness
            .token(cluster, ns, sa, &["txbridge"], 3600)
            .expect("harness token");
        self.remember(&t);
        t
    }

    pub fn sign(&self, cluster: &str, header: Value, claims: Value, key: &str) -> String {
        let t = self
            .harness
            .sign(cluster, header, claims, key)
            .expect("harness sign");
        self.remember(&t);
        t
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(format!("{}{path}", self.f.base_url)))
    }

    pub fn send(&self, req: reqwest::blocking::RequestBuilder) -> Resp {
        let resp = req.send().expect("request to the function");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.text().unwrap_or_default();
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        if let Some(t) = body["access_token"].as_str() {
            self.remember(t);
        }
        Resp {
            status,
            body,
            raw,
            headers,
        }
    }

    /// POST /token with these form pairs (sent as given: duplicates stay duplicates).
    pub fn exchange_form(&self, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        self.exchange_at(&self.f.base_url, pairs, headers)
    }

    pub fn exchange(&self, token: &str, extra: &[(&str, &str)]) -> Resp {
        self.exchange_sa_at(&self.f.base_url, token, extra)
    }

    /// A plain exchange of the SA token `token` at the function serving `base_url`.
    pub fn exchange_sa_at(&self, base_url: &str, token: &str, extra: &[(&str, &str)]) -> Resp {
        let mut pairs = vec![
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("requested_token_type", TXN),
        ];
        pairs.extend_from_slice(extra);
        self.exchange_at(base_url, &pairs, &[])
    }

    /// The published JWKS.
    pub fn jwks(&self) -> Value {
        self.get("/.well-known/jwks.json").body
    }
}

/// A function under test, with its harness: stops both (by pid) when dropped.
#[allow(missing_debug_implementations)]
pub struct Started {
    pub env: Env,
    _function: crate::Running,
    _dir: Option<crate::procs::TempDir>,
}

/// Starts a harness with `clusters` and the Lambda under `cargo lambda watch` (trace logs, for
/// the leak check) with the harness's config passed through `config`.
pub fn start_lambda_env(clusters: &[&str], config: fn(&str) -> String) -> anyhow::Result<Started> {
    use crate::procs::{lambda_base_url, start_lambda};
    start_lambda_like(clusters, config, lambda_base_url, start_lambda)
}

/// The same for a Lambda bootstrap built for aarch64, run under `qemu-aarch64` behind
/// cargo-lambda's Runtime API. Cases that start peers would start the native debug build: run
/// only [`CROSS_BUILD_CASES`] against it.
pub fn start_lambda_emulated_env(
    bootstrap: &std::path::Path,
    clusters: &[&str],
    config: fn(&str) -> String,
) -> anyhow::Result<Started> {
    let issuer = crate::procs::emulated_base_url;
    start_lambda_like(clusters, config, issuer, |port, config, key, env| {
        crate::procs::start_lambda_emulated(port, bootstrap, config, key, env)
    })
}

/// What a started Lambda process is: its handle, its log file, its directory.
type LambdaProc = (crate::Running, std::path::PathBuf, crate::procs::TempDir);

/// A harness with `clusters`, and a Lambda on a free port (`issuer_of` the port: its issuer)
/// started by `start` with the config, the key and `RUST_LOG` at trace.
fn start_lambda_like(
    clusters: &[&str],
    config: fn(&str) -> String,
    issuer_of: fn(u16) -> String,
    start: impl FnOnce(u16, &str, &str, &[(&str, &str)]) -> anyhow::Result<LambdaProc>,
) -> anyhow::Result<Started> {
    let _busy = shared();
    let harness = Harness::start(clusters)?;
    let port = crate::free_port();
    let issuer = issuer_of(port);
    let (toml, key) = harness.config(&issuer)?;
    let config = config(&toml);
    let (running, log, dir) = start(port, &config, &key, &[("RUST_LOG", TRACE)])?;
    let f = Function {
        base_url: running.base_url.clone(),
        issuer,
        logs: vec![log],
        shell: Shell::Lambda,
        config,
    };
    Ok(Started {
        env: Env::new(harness, f, key),
        _function: running,
        _dir: Some(dir),
    })
}

/// The same for the Worker under workerd. Its port is chosen at start, so its issuer is a name,
/// not where it is served.
pub fn start_worker_env(clusters: &[&str], config: fn(&str) -> String) -> anyhow::Result<Started> {
    let _busy = shared();
    let harness = Harness::start(clusters)?;
    let issuer = "https://txbridge-worker.example.test".to_owned();
    let (toml, key) = harness.config(&issuer)?;
    let config = config(&toml);
    let running = crate::worker::start(&config, &key)?;
    let f = Function {
        base_url: running.base_url.clone(),
        issuer,
        logs: vec![crate::worker::log_path(&running)],
        shell: Shell::Worker,
        config,
    };
    Ok(Started {
        env: Env::new(harness, f, key),
        _function: running,
        _dir: None,
    })
}

/// Asserts an OAuth error: status, exact code, no token, nothing secret echoed.
pub fn expect_error(r: &Resp, status: u16, code: &str, what: &str) -> anyhow::Result<()> {
    ensure!(
        r.status == status && r.body["error"] == code,
        "{what}: want {status} {code}, got {} {}",
        r.status,
        r.raw
    );
    ensure!(
        r.body.get("access_token").is_none(),
        "{what}: token in an error body"
    );
    ensure!(
        r.body["error_description"].is_string(),
        "{what}: no error_description"
    );
    Ok(())
}

/// Verifies a TxToken with jsonwebtoken on the published JWKS; returns header and claims. Its
/// ES256 signature must be in low-S form, as every txbridge signer normalises it.
pub fn verify(
    jwks: &Value,
    token: &str,
    issuer: &str,
    aud: &str,
) -> anyhow::Result<(jsonwebtoken::Header, Value)> {
    let header = jsonwebtoken::decode_header(token)?;
    let sig = B64.decode(token.rsplit('.').next().unwrap_or_default())?;
    ensure!(sig.len() == 64, "ES256 signature of {} bytes", sig.len());
    // P-256 order n; low-S means s <= n / 2.
    const HALF_N: [u8; 32] = [
        0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31,
        0x92, 0xa8,
    ];
    ensure!(sig[32..] <= HALF_N[..], "a high-S signature");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone())?;
    let kid = header.kid.as_deref().context("kid")?;
    let jwk = set.find(kid).context("kid not published")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["iss", "aud", "sub", "exp", "iat"]);
    v.leeway = 5;
    let data = jsonwebtoken::decode::<Value>(token, &key, &v)?;
    Ok((data.header, data.claims))
}

/// The claims of the TxToken in an exchange's answer, verified on `jwks`.
fn issued_claims(env: &Env, jwks: &Value, r: &Resp) -> anyhow::Result<Value> {
    let token = r.body["access_token"].as_str().context("no access_token")?;
    Ok(verify(jwks, token, &env.f.issuer, &env.f.issuer)?.1)
}

fn claims_template(env: &Env, cluster: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    json!({
        "iss": env.harness.cluster(cluster)["issuer"],
        "sub": "system:serviceaccount:payments:checkout",
        "aud": ["txbridge"],
        "exp": now + 600, "iat": now - 5, "nbf": now - 5,
        "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "checkout", "uid": "u-1"}}
    })
}

fn alpha_kid(env: &Env) -> String {
    let clusters: Value =
        reqwest::blocking::get(format!("{}/admin/clusters", env.harness.base_url))
            .and_then(|r| r.json())
            .unwrap_or(Value::Null);
    clusters["clusters"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "alpha"))
        .and_then(|c| c["kids"][0].as_str())
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The cases.

fn happy_path_two_clusters(env: &Env) -> anyhow::Result<()> {
    let jwks = env.jwks();
    for cluster in ["alpha", "beta"] {
        let token = env.token(cluster, "payments", "checkout");
        let r = env.exchange_form(
            &[
                ("grant_type", TE),
                ("subject_token", &token),
                ("subject_token_type", JWT),
                ("requested_token_type", TXN),
                ("scope", "orders:read"),
                ("request_details", r#"{"order":"42"}"#),
                ("request_context", r#"{"purpose":"e2e"}"#),
            ],
            &[("X-Txbridge-Workload", "payments/checkout-web")],
        );
        ensure!(r.status == 200, "{cluster}: {} {}", r.status, r.raw);
        ensure!(
            r.headers
                .get("cache-control")
                .is_some_and(|v| v == "no-store"),
            "no-store"
        );
        ensure!(
            r.body["issued_token_type"] == TXN && r.body["token_type"] == "N_A",
            "{}",
            r.raw
        );
        ensure!(r.body["scope"] == "orders:read", "scope {}", r.raw);
        let exp_in = r.body["expires_in"].as_u64().context("expires_in")?;
        ensure!((1..=300).contains(&exp_in), "expires_in {exp_in}");
        let token = r.body["access_token"].as_str().context("access_token")?;
        let (h, c) = verify(&jwks, token, &env.f.issuer, &env.f.issuer)?;
        ensure!(h.typ.as_deref() == Some("txntoken+jwt"), "typ {:?}", h.typ);
        ensure!(
            c["sub"] == format!("{cluster}:system:serviceaccount:payments:checkout"),
            "sub {c}"
        );
        ensure!(c["txn"].as_str().is_some_and(|t| t.len() >= 22), "txn {c}");
        ensure!(
            c["req_wl"] == "payments/checkout-web"
                && c["rctx"]["req_wl"] == "payments/checkout-web",
            "req_wl {c}"
        );
        ensure!(
            c["tctx"]
                == json!({"order": "42", "cluster": cluster, "namespace": "payments", "service_account": "checkout"}),
            "tctx {c}"
        );
        ensure!(
            c["rctx"]["purpose"] == "e2e" && c["rctx"]["authn"] == JWT,
            "rctx {c}"
        );
        if let Some(ip) = c["rctx"].get("req_ip") {
            ensure!(
                ip.as_str()
                    .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
                "req_ip {ip}"
            );
        }
    }
    Ok(())
}

fn metadata_documents(env: &Env) -> anyhow::Result<()> {
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let r = env.get(path);
        ensure!(r.status == 200, "{path}: {}", r.status);
        ensure!(
            r.body["issuer"] == env.f.issuer.as_str(),
            "{path}: issuer {}",
            r.raw
        );
        ensure!(
            r.body["token_endpoint"] == format!("{}/token", env.f.issuer),
            "{path}: {}",
            r.raw
        );
        ensure!(
            r.body["jwks_uri"] == format!("{}/.well-known/jwks.json", env.f.issuer),
            "{path}: {}",
            r.raw
        );
        ensure!(
            r.body["grant_types_supported"] == json!([TE]),
            "{path}: {}",
            r.raw
        );
    }
    let r = env.get("/.well-known/jwks.json");
    ensure!(r.status == 200, "jwks {}", r.status);
    ensure!(
        r.headers
            .get("cache-control")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("max-age")),
        "jwks cache-control"
    );
    let keys = r.body["keys"].as_array().context("keys")?;
    ensure!(
        !keys.is_empty()
            && keys
                .iter()
                .all(|k| k["kty"] == "EC" && k.get("d").is_none() && k["kid"].is_string()),
        "jwks {}",
        r.raw
    );
    let h = env.get("/healthz");
    ensure!(
        h.status == 200 && h.body["status"] == "ok",
        "healthz {}",
        h.raw
    );
    Ok(())
}

fn mirror_case(env: &Env) -> anyhow::Result<()> {
    let beta = env.harness.cluster("beta");
    ensure!(beta["mirror"] == true, "beta is mirrored");
    ensure!(
        !beta["discovery_url"]
            .as_str()
            .unwrap_or("")
            .starts_with(beta["issuer"].as_str().unwrap_or("-")),
        "hosted away from the issuer"
    );
    let r = env.exchange(&env.token("beta", "payments", "checkout"), &[]);
    ensure!(r.status == 200, "mirror exchange {}", r.raw);
    Ok(())
}

/// The retry loop of a well-behaved client: 503s with `Retry-After` are retried until `limit`;
/// returns the final answer and how many 503s came before it. Any other answer ends the loop.
fn retry_unavailable(env: &Env, token: &str, limit: Duration) -> anyhow::Result<(Resp, usize)> {
    let started = std::time::Instant::now();
    let mut unavailable = 0;
    loop {
        let r = env.exchange(token, &[]);
        if r.status != 503 {
            return Ok((r, unavailable));
        }
        expect_error(&r, 503, "temporarily_unavailable", "retryable answer")?;
        let wait: u64 = r
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .context("503 without a numeric Retry-After")?;
        ensure!((1..=10).contains(&wait), "Retry-After {wait}");
        unavailable += 1;
        ensure!(started.elapsed() < limit, "still 503 after {limit:?}");
        std::thread::sleep(Duration::from_secs(wait));
    }
}

/// The cache's default `min_refresh_interval`: one unknown-kid refresh per cluster per interval.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// A bogus kid, then the issuer really rotates: the new key's tokens get 503s with Retry-After
/// (never a 400) and then 200 within `min_refresh_interval`, without a restart.
fn key_rotation_without_restart(env: &Env) -> anyhow::Result<()> {
    ensure!(
        env.exchange(&env.token("alpha", "payments", "checkout"), &[])
            .status
            == 200,
        "before"
    );
    let mut claims = claims_template(env, "alpha");
    claims["sub"] = json!("system:serviceaccount:payments:checkout");
    let bogus = env.sign(
        "alpha",
        json!({"alg": "RS256", "kid": "bogus-kid-before-a-rotation"}),
        claims,
        "active",
    );
    let r = env.exchange(&bogus, &[]);
    ensure!(
        (r.status == 400 && r.body["error"] == "invalid_request")
            || (r.status == 503 && r.headers.get("retry-after").is_some()),
        "bogus kid: {} {}",
        r.status,
        r.raw
    );
    ensure!(r.body.get("access_token").is_none(), "bogus kid: a token");
    env.harness.rotate("alpha", true)?;
    let rotated = env.token("alpha", "payments", "checkout");
    let started = std::time::Instant::now();
    let (r, unavailable) =
        retry_unavailable(env, &rotated, MIN_REFRESH_INTERVAL + Duration::from_secs(3))?;
    ensure!(
        r.status == 200,
        "token of the new key after {unavailable} retryable answers: {} {}",
        r.status,
        r.raw
    );
    ensure!(
        started.elapsed() <= MIN_REFRESH_INTERVAL + Duration::from_secs(3),
        "the new key took {:?}",
        started.elapsed()
    );
    // A flood of the bogus kid: each answer is a 400 (right after a refresh missed it) or a
    // retryable 503, never a token, and it costs at most one fetch per min_refresh_interval.
    let before = env.harness.stats()?["clusters"]["alpha"]["jwks"]
        .as_u64()
        .unwrap_or(0);
    let flood_started = std::time::Instant::now();
    for _ in 0..20 {
        let r = env.exchange(&bogus, &[]);
        ensure!(
            (r.status == 400 && r.body["error"] == "invalid_request")
                || (r.status == 503 && r.headers.get("retry-after").is_some()),
            "bogus kid flood: {} {}",
            r.status,
            r.raw
        );
    }
    let after = env.harness.stats()?["clusters"]["alpha"]["jwks"]
        .as_u64()
        .unwrap_or(0);
    let intervals = flood_started.elapsed().as_secs() / MIN_REFRESH_INTERVAL.as_secs() + 1;
    ensure!(
        after - before <= intervals,
        "a flood of one bogus kid fetched keys {} times in {:?}",
        after - before,
        flood_started.elapsed()
    );
    Ok(())
}

/// Contract v3: an issuer (or a lagging mirror) signs with a new key before its JWKS lists it.
/// The first token of that key misses on a refresh (400); the miss is remembered only until the
/// next refresh is allowed (503 + Retry-After meanwhile), so once the key is published it is
/// accepted within min_refresh_interval, not after the key cache's ttl.
fn key_published_late(env: &Env) -> anyhow::Result<()> {
    env.harness.rotate_unpublished("beta")?;
    let token = env.token("beta", "payments", "checkout");
    let r = env.exchange(&token, &[]);
    ensure!(
        r.status != 200 && r.body.get("access_token").is_none(),
        "a token of an unpublished key was accepted: {} {}",
        r.status,
        r.raw
    );
    ensure!(
        (r.status == 400 && r.body["error"] == "invalid_request")
            || (r.status == 503 && r.headers.get("retry-after").is_some()),
        "unpublished key: {} {}",
        r.status,
        r.raw
    );
    // Within the interval: retryable, never a definite answer.
    let r = env.exchange(&token, &[]);
    expect_error(
        &r,
        503,
        "temporarily_unavailable",
        "the same kid right after the miss",
    )?;
    ensure!(r.headers.get("retry-after").is_some(), "no Retry-After");
    env.harness.publish("beta")?;
    let started = std::time::Instant::now();
    let (r, unavailable) =
        retry_unavailable(env, &token, MIN_REFRESH_INTERVAL + Duration::from_secs(3))?;
    ensure!(
        r.status == 200,
        "the key published late after {unavailable} retryable answers: {} {}",
        r.status,
        r.raw
    );
    ensure!(
        started.elapsed() <= MIN_REFRESH_INTERVAL + Duration::from_secs(3),
        "the key published late took {:?}",
        started.elapsed()
    );
    Ok(())
}

fn unknown_cluster_and_policy(env: &Env) -> anyhow::Result<()> {
    let mut c = claims_template(env, "alpha");
    c["iss"] = json!("https://unknown-cluster.example");
    let t = env.sign(
        "alpha",
        json!({"alg": "RS256", "kid": alpha_kid(env)}),
        c,
        "active",
    );
    expect_error(
        &env.exchange(&t, &[]),
        400,
        "invalid_request",
        "unknown cluster",
    )?;
    expect_error(
        &env.exchange(&env.token("alpha", "default", "web"), &[]),
        400,
        "invalid_request",
        "policy denial",
    )?;
    expect_error(
        &env.exchange(&env.token("beta", "team-a", "job"), &[]),
        400,
        "invalid_request",
        "policy of another cluster",
    )?;
    let r = env.exchange(&env.token("alpha", "team-a", "job"), &[]);
    ensure!(
        r.status == 200 && r.body["scope"] == "reports:read",
        "glob policy {}",
        r.raw
    );
    Ok(())
}

fn scope_ceiling(env: &Env) -> anyhow::Result<()> {
    let t = env.token("alpha", "payments", "checkout");
    expect_error(
        &env.exchange(&t, &[("scope", "orders:read admin")]),
        400,
        "invalid_scope",
        "escalation",
    )?;
    let r = env.exchange(&t, &[("scope", "orders:write orders:read")]);
    ensure!(
        r.status == 200 && r.body["scope"] == "orders:write orders:read",
        "within the ceiling {}",
        r.raw
    );
    let r = env.exchange(&t, &[]);
    ensure!(
        r.status == 200 && r.body["scope"] == "orders:read orders:write",
        "default = ceiling {}",
        r.raw
    );
    Ok(())
}

fn each_error_code(env: &Env) -> anyhow::Result<()> {
    let t = env.token("alpha", "payments", "checkout");
    expect_error(
        &env.exchange_form(&[("grant_type", "client_credentials")], &[]),
        400,
        "unsupported_grant_type",
        "grant",
    )?;
    expect_error(
        &env.exchange_form(&[("grant_type", TE), ("subject_token_type", JWT)], &[]),
        400,
        "invalid_request",
        "missing subject_token",
    )?;
    expect_error(
        &env.exchange(&t, &[("audience", "https://elsewhere.example")]),
        400,
        "invalid_target",
        "audience",
    )?;
    let ok = env.exchange(&t, &[("audience", &env.f.issuer)]);
    ensure!(ok.status == 200, "audience = trust domain {}", ok.raw);
    let r = env.get("/token");
    ensure!(r.status == 405, "GET /token {}", r.status);
    // Wrong methods with a subject token in the body: refused, the body never logged.
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", TE),
            ("subject_token", t.as_str()),
            ("subject_token_type", JWT),
        ])
        .finish();
    for (method, path, want) in [
        (reqwest::Method::PUT, "/token", 405),
        (reqwest::Method::DELETE, "/token_endpoint", 405),
        (reqwest::Method::POST, "/healthz", 405),
        (reqwest::Method::GET, "/token", 405),
    ] {
        let r = env.send(
            env.http
                .request(method.clone(), format!("{}{path}", env.f.base_url))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone()),
        );
        ensure!(
            r.status == want,
            "{method} {path} with a body: {} {}",
            r.status,
            r.raw
        );
        ensure!(
            r.body.get("access_token").is_none(),
            "{method} {path}: a token"
        );
    }
    ensure!(env.get("/nope").status == 404, "404");
    let big = "a".repeat(70 * 1024);
    let r = env.send(
        env.http
            .post(format!("{}/token", env.f.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big),
    );
    ensure!(r.status == 413, "413: {}", r.status);
    let r = env.send(
        env.http
            .post(format!("{}/token", env.f.base_url))
            .header("content-type", "application/json")
            .body("{}"),
    );
    expect_error(&r, 400, "invalid_request", "content type")?;
    let r = env.exchange_form(
        &[
            ("grant_type", TE),
            ("subject_token", &t),
            ("subject_token", &t),
            ("subject_token_type", JWT),
        ],
        &[],
    );
    expect_error(&r, 400, "invalid_request", "duplicate parameter")?;
    let r = env.send(
        env.http
            .post(format!("{}/token_endpoint", env.f.base_url))
            .form(&[
                ("grant_type", TE),
                ("subject_token", t.as_str()),
                ("subject_token_type", JWT),
            ]),
    );
    ensure!(r.status == 200, "kontxt alias {}", r.raw);
    Ok(())
}

fn upstream_fault_and_recovery(env: &Env) -> anyhow::Result<()> {
    env.harness.fault("gamma", "both", "status500")?;
    let t = env.token("gamma", "payments", "checkout");
    let r = env.exchange(&t, &[]);
    expect_error(&r, 503, "temporarily_unavailable", "issuer down")?;
    ensure!(r.headers.get("retry-after").is_some(), "Retry-After");
    ensure!(
        env.exchange(&env.token("alpha", "payments", "checkout"), &[])
            .status
            == 200,
        "other clusters unaffected"
    );
    env.harness.fault("gamma", "both", "none")?;
    std::thread::sleep(Duration::from_millis(1100));
    let r = env.exchange(&t, &[]);
    ensure!(r.status == 200, "recovery {}", r.raw);
    Ok(())
}

fn attacks(env: &Env) -> anyhow::Result<()> {
    let kid = alpha_kid(env);
    let base = claims_template(env, "alpha");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    let rs = json!({"alg": "RS256", "kid": kid});
    let now = base["iat"].as_u64().unwrap_or(0) + 5;
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "alg none",
            json!({"alg": "none", "kid": kid}),
            base.clone(),
            "active",
        ),
        (
            "HS256 with the public key",
            json!({"alg": "HS256", "kid": kid}),
            base.clone(),
            "active",
        ),
        ("foreign key, real kid", rs.clone(), base.clone(), "foreign"),
        (
            "unknown kid",
            json!({"alg": "RS256", "kid": "unknown"}),
            base.clone(),
            "active",
        ),
        (
            // The real kid: were jku honoured, the attacker's key would verify it.
            "jku to attacker",
            json!({"alg": "RS256", "kid": kid, "jku": "http://127.0.0.1:1/jwks"}),
            base.clone(),
            "foreign",
        ),
        (
            "x5u to attacker",
            json!({"alg": "RS256", "kid": kid, "x5u": "http://127.0.0.1:1/x5u"}),
            base.clone(),
            "foreign",
        ),
        (
            "crit",
            json!({"alg": "RS256", "kid": kid, "crit": ["b64"], "b64": false}),
            base.clone(),
            "active",
        ),
        (
            "crit null",
            json!({"alg": "RS256", "kid": kid, "crit": null}),
            base.clone(),
            "active",
        ),
        (
            "crit empty",
            json!({"alg": "RS256", "kid": kid, "crit": []}),
            base.clone(),
            "active",
        ),
        (
            "wrong aud",
            rs.clone(),
            with(&|c| c["aud"] = json!(["someone-else"])),
            "active",
        ),
        (
            "expired",
            rs.clone(),
            with(&|c| {
                c["exp"] = json!(now - 60);
                c["iat"] = json!(now - 700);
                c["nbf"] = json!(now - 700);
            }),
            "active",
        ),
        (
            "nbf in the future",
            rs.clone(),
            with(&|c| c["nbf"] = json!(now + 120)),
            "active",
        ),
        (
            "iat in the future",
            rs.clone(),
            with(&|c| c["iat"] = json!(now + 120)),
            "active",
        ),
        (
            "missing exp",
            rs.clone(),
            with(&|c| {
                c.as_object_mut().map(|o| o.remove("exp"));
            }),
            "active",
        ),
        (
            "missing iat",
            rs.clone(),
            with(&|c| {
                c.as_object_mut().map(|o| o.remove("iat"));
            }),
            "active",
        ),
        (
            "missing sub",
            rs.clone(),
            with(&|c| {
                c.as_object_mut().map(|o| o.remove("sub"));
            }),
            "active",
        ),
        (
            "lifetime over the maximum",
            rs.clone(),
            with(&|c| c["exp"] = json!(now + 2 * 86400)),
            "active",
        ),
        (
            "sub inconsistent with kubernetes.io",
            rs.clone(),
            with(&|c| c["kubernetes.io"]["namespace"] = json!("kube-system")),
            "active",
        ),
        (
            "cluster A token as cluster B",
            rs.clone(),
            with(&|c| c["iss"] = env.harness.cluster("beta")["issuer"].clone()),
            "active",
        ),
        (
            "untrusted iss",
            rs.clone(),
            with(&|c| c["iss"] = json!("https://evil.example")),
            "active",
        ),
    ];
    for (name, header, claims, key) in cases {
        let t = env.sign("alpha", header, claims, key);
        expect_error(&env.exchange(&t, &[]), 400, "invalid_request", name)?;
    }
    // Embedded attacker JWK: header carries the foreign key's own public JWK.
    let foreign_jwk = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
    let t = env.sign(
        "alpha",
        json!({"alg": "RS256", "jwk": foreign_jwk}),
        base.clone(),
        "foreign",
    );
    expect_error(
        &env.exchange(&t, &[]),
        400,
        "invalid_request",
        "embedded jwk",
    )?;
    // Tampered signature / malformed compact serialisations.
    let good = env.token("alpha", "payments", "checkout");
    let (head, _) = good.rsplit_once('.').context("jws")?;
    let huge_header = format!(
        "{}.{}.sig",
        B64.encode(format!(r#"{{"alg":"RS256","x":"{}"}}"#, "a".repeat(20_000))),
        B64.encode("{}")
    );
    for (name, t) in [
        (
            "bad signature",
            format!("{head}.{}", B64.encode([7u8; 256])),
        ),
        ("two parts", head.to_owned()),
        ("bad base64", "@@@.###.$$$".to_owned()),
        (
            "header not JSON",
            format!("{}.{}.c2ln", B64.encode("nope"), B64.encode("{}")),
        ),
        ("huge header", huge_header),
    ] {
        expect_error(&env.exchange(&t, &[]), 400, "invalid_request", name)?;
    }
    // request_details abuse.
    let deep = format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40));
    for (name, details) in [("non-object", "[1,2,3]".to_owned()), ("deep nesting", deep)] {
        expect_error(
            &env.exchange(&good, &[("request_details", &details)]),
            400,
            "invalid_request",
            name,
        )?;
    }
    let huge = format!(r#"{{"a":"{}"}}"#, "x".repeat(1024 * 1024));
    let r = env.exchange(&good, &[("request_details", &huge)]);
    ensure!(
        r.status == 413 && r.body.get("access_token").is_none(),
        "1 MiB request_details: {}",
        r.status
    );
    // Hostile scope values under the 64 KiB cap: refused at the 65th token, distinct or not.
    let distinct: Vec<String> = (0..9_500).map(|i| format!("s{i}")).collect();
    for (name, scope) in [
        ("9,500 distinct scope tokens", distinct.join(" ")),
        (
            "one scope token 9,500 times",
            vec!["s9999"; 9_500].join(" "),
        ),
    ] {
        expect_error(
            &env.exchange(&good, &[("scope", &scope)]),
            400,
            "invalid_scope",
            name,
        )?;
    }
    Ok(())
}

/// The requesting workload is authenticated: the header may name the subject's own workload id
/// or a name its policies list in `workloads`; nothing else.
fn workload_binding(env: &Env) -> anyhow::Result<()> {
    let jwks = env.jwks();
    let t = env.token("alpha", "payments", "checkout");
    let allowed: [(Vec<(&str, &str)>, &str); 3] = [
        (vec![], "alpha:payments:checkout"),
        (
            vec![("X-Txbridge-Workload", "alpha:payments:checkout")],
            "alpha:payments:checkout",
        ),
        (
            vec![("X-Kontxt-Workload", "payments/checkout-api")],
            "payments/checkout-api",
        ),
    ];
    for (headers, want) in allowed {
        let r = env.exchange_form(
            &[
                ("grant_type", TE),
                ("subject_token", &t),
                ("subject_token_type", JWT),
            ],
            &headers,
        );
        ensure!(r.status == 200, "{headers:?}: {}", r.raw);
        let c = issued_claims(env, &jwks, &r)?;
        ensure!(
            c["req_wl"] == want && c["rctx"]["req_wl"] == want,
            "{headers:?}: req_wl {c}"
        );
    }
    let team = env.token("alpha", "team-a", "job");
    /// (case, subject token, headers)
    type Refused<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let refused: [Refused; 6] = [
        (
            "another workload",
            &t,
            vec![("X-Txbridge-Workload", "alpha:payments:admin")],
        ),
        (
            "another cluster's id",
            &t,
            vec![("X-Txbridge-Workload", "beta:payments:checkout")],
        ),
        (
            "a comma (a forged chain)",
            &t,
            vec![(
                "X-Txbridge-Workload",
                "payments/checkout-a,payments/checkout-b",
            )],
        ),
        (
            "two headers",
            &t,
            vec![
                ("X-Txbridge-Workload", "payments/checkout-web"),
                ("X-Txbridge-Workload", "payments/checkout-web"),
            ],
        ),
        (
            "both header names",
            &t,
            vec![
                ("X-Txbridge-Workload", "payments/checkout-web"),
                ("X-Kontxt-Workload", "payments/checkout-web"),
            ],
        ),
        (
            "a name of another subject's policy",
            &team,
            vec![("X-Txbridge-Workload", "payments/checkout-web")],
        ),
    ];
    for (name, token, headers) in refused {
        if name == "two headers" && env.f.shell == Shell::Lambda {
            // cargo lambda watch keeps one of two equal headers; AWS joins them with a comma
            // (payload 2.0), which the comma row covers (and functions/lambda/tests/events.rs).
            continue;
        }
        let r = env.exchange_form(
            &[
                ("grant_type", TE),
                ("subject_token", token),
                ("subject_token_type", JWT),
            ],
            &headers,
        );
        expect_error(&r, 400, "invalid_request", name)?;
        ensure!(
            r.body["error_description"] == "workload not authorized",
            "{name}: {}",
            r.raw
        );
    }
    Ok(())
}

/// The kontxt quickstart's caller, unchanged, against a cluster whose `workload_id` renders the
/// SPIFFE id it sends.
fn kontxt_quickstart_caller(env: &Env) -> anyhow::Result<()> {
    let token = env.token("beta", "payments", "checkout");
    let spiffe = "spiffe://example.test/ns/payments/sa/checkout";
    let r = env.send(
        env.http
            .post(format!("{}/token_endpoint", env.f.base_url))
            .header("X-Kontxt-Workload", spiffe)
            .form(&[
                ("grant_type", TE),
                ("subject_token", token.as_str()),
                ("subject_token_type", JWT),
                ("requested_token_type", TXN),
                ("scope", "orders:read orders:write"),
                ("request_details", r#"{"namespace":"payments","taskType":"container"}"#),
                (
                    "request_context",
                    r#"{"purpose":"mit-license-check","source":"kubernetes-projected-service-account"}"#,
                ),
            ]),
    );
    ensure!(r.status == 200, "kontxt caller: {}", r.raw);
    let c = issued_claims(env, &env.jwks(), &r)?;
    ensure!(c["req_wl"] == spiffe, "req_wl {c}");
    ensure!(
        c["tctx"]["taskType"] == "container" && c["tctx"]["cluster"] == "beta",
        "tctx {c}"
    );
    // The same SPIFFE id from another service account is refused.
    let other = env.token("beta", "team-a", "job");
    let r = env.exchange(&other, &[]);
    ensure!(r.status == 400, "team-a on beta has no policy: {}", r.raw);
    let r = env.exchange_form(
        &[
            ("grant_type", TE),
            ("subject_token", &token),
            ("subject_token_type", JWT),
        ],
        &[(
            "X-Kontxt-Workload",
            "spiffe://example.test/ns/payments/sa/admin",
        )],
    );
    expect_error(&r, 400, "invalid_request", "another SPIFFE id")
}

/// Replacement TxTokens: a TxToken as the subject token, the replacing workload authenticated
/// by its own SA token (`actor_token`), gets a narrower one with the same txn, sub and tctx, an
/// exp no later than the original's, and the actor appended to the `req_wl` chain.
fn replacement(env: &Env) -> anyhow::Result<()> {
    let jwks = env.jwks();
    let sa = env.token("alpha", "payments", "checkout");
    let r = env.exchange(
        &sa,
        &[
            ("scope", "orders:read orders:write"),
            ("request_details", r#"{"order":"7"}"#),
        ],
    );
    ensure!(r.status == 200, "original: {}", r.raw);
    let original = r.body["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned();
    let (_, before) = verify(&jwks, &original, &env.f.issuer, &env.f.issuer)?;
    let actor = env.actor_token();
    let replace = |scope: &str, actor: Option<&str>, headers: &[(&str, &str)]| {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", original.as_str()),
            ("subject_token_type", TXN),
            ("requested_token_type", TXN),
            ("scope", scope),
        ];
        if let Some(a) = actor {
            form.push(("actor_token", a));
            form.push(("actor_token_type", JWT));
        }
        env.exchange_form(&form, headers)
    };
    let r = replace(
        "orders:read",
        Some(&actor),
        &[("X-Txbridge-Workload", "orders-worker")],
    );
    ensure!(r.status == 200, "replacement: {}", r.raw);
    ensure!(
        r.body["issued_token_type"] == TXN && r.body["scope"] == "orders:read",
        "replacement response {}",
        r.raw
    );
    let token = r.body["access_token"].as_str().context("access_token")?;
    let (h, after) = verify(&jwks, token, &env.f.issuer, &env.f.issuer)?;
    ensure!(h.typ.as_deref() == Some("txntoken+jwt"), "typ {:?}", h.typ);
    for claim in ["txn", "sub", "tctx", "aud", "iss"] {
        ensure!(after[claim] == before[claim], "{claim} changed: {after}");
    }
    ensure!(after["scope"] == "orders:read", "scope {after}");
    let (exp0, exp1) = (before["exp"].as_u64(), after["exp"].as_u64());
    ensure!(
        exp1.is_some() && exp1 <= exp0,
        "exp extended: {exp0:?} -> {exp1:?}"
    );
    ensure!(
        after["req_wl"] == format!("{},orders-worker", before["req_wl"].as_str().unwrap_or("")),
        "req_wl keeps the call chain: {after}"
    );
    // Without a header the actor's own workload id is the new hop.
    let r = replace("orders:read", Some(&actor), &[]);
    ensure!(r.status == 200, "replacement, no header: {}", r.raw);
    let c = issued_claims(env, &jwks, &r)?;
    ensure!(
        c["req_wl"]
            .as_str()
            .is_some_and(|w| w.ends_with(",alpha:orders:worker")),
        "actor id appended: {c}"
    );
    expect_error(
        &replace("orders:read admin", Some(&actor), &[]),
        400,
        "invalid_scope",
        "wider scope on replacement",
    )?;
    expect_error(
        &replace("orders:read", None, &[]),
        400,
        "invalid_request",
        "replacement without an actor token",
    )?;
    expect_error(
        &replace(
            "orders:read",
            Some(&env.token("alpha", "default", "web")),
            &[],
        ),
        400,
        "invalid_request",
        "an actor no policy allows",
    )?;
    expect_error(
        &replace("orders:read", Some(&original), &[]),
        400,
        "invalid_request",
        "a TxToken as the actor token",
    )?;
    let r = replace(
        "orders:read",
        Some(&actor),
        &[("X-Txbridge-Workload", "payments/checkout-web")],
    );
    expect_error(
        &r,
        400,
        "invalid_request",
        "the actor claims the subject's workload name",
    )?;
    // An actor token on an exchange of an SA token stays refused.
    let r = env.exchange(&sa, &[("actor_token", &actor), ("actor_token_type", JWT)]);
    expect_error(
        &r,
        400,
        "invalid_request",
        "actor_token on a plain exchange",
    )?;
    Ok(())
}

/// Only the active key's TxTokens are replaced (a rotated service still publishes the previous
/// key for consumers, but never re-signs its tokens), and never an expired one.
fn replacement_after_rotation_and_expiry(env: &Env) -> anyhow::Result<()> {
    let r = env.exchange(
        &env.token("alpha", "payments", "checkout"),
        &[("scope", "orders:read")],
    );
    ensure!(r.status == 200, "original: {}", r.raw);
    let old = r.body["access_token"].as_str().context("token")?.to_owned();
    let active = env.jwks()["keys"][0].clone();
    let previous = format!(
        "{{kty = \"EC\", crv = \"P-256\", x = {}, y = {}, kid = {}}}",
        active["x"], active["y"], active["kid"]
    );
    let config = env
        .f
        .config
        .replacen(
            "[signer]\nkind = \"local\"\n",
            &format!("[signer]\nkind = \"local\"\nprevious_public_keys = [{previous}]\n"),
            1,
        )
        .replacen("token_lifetime = \"5m\"", "token_lifetime = \"1s\"", 1);
    ensure!(
        config.contains("previous_public_keys") && config.contains("\"1s\""),
        "{config}"
    );
    let key = txbridge_signer::LocalSigner::generate()
        .to_pkcs8_pem()?
        .to_string();
    let peer = env.start_peer(&config, &key)?;
    let jwks = env
        .send(
            env.http
                .get(format!("{}/.well-known/jwks.json", peer.base_url)),
        )
        .body;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    ensure!(
        kids.len() == 2 && kids[1] == active["kid"],
        "the previous key stays published: {jwks}"
    );
    // Consumers still verify the old token with the published previous key ...
    verify(&jwks, &old, &env.f.issuer, &env.f.issuer)?;
    let actor = env.actor_token();
    let replace = |token: &str| {
        env.exchange_at(
            &peer.base_url,
            &[
                ("grant_type", TE),
                ("subject_token", token),
                ("subject_token_type", TXN),
                ("actor_token", &actor),
                ("actor_token_type", JWT),
            ],
            &[],
        )
    };
    // ... but the rotated service never re-signs it.
    let r = replace(&old);
    expect_error(&r, 400, "invalid_request", "a token of the previous key")?;
    ensure!(
        r.body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("active key")),
        "{}",
        r.raw
    );
    // A token of the active key, expired (lifetime 1 s, no leeway for replacement).
    let sa = env.token("alpha", "payments", "checkout");
    let r = env.exchange_sa_at(&peer.base_url, &sa, &[]);
    ensure!(
        r.status == 200 && r.body["expires_in"] == 1,
        "short-lived token: {}",
        r.raw
    );
    let short = r.body["access_token"].as_str().context("token")?.to_owned();
    std::thread::sleep(Duration::from_millis(2100));
    expect_error(
        &replace(&short),
        400,
        "invalid_request",
        "an expired TxToken",
    )?;
    Ok(())
}

/// After everything: no token, key or 16-character piece of one in any log (the functions ran at
/// trace level, peers included) or in the harness log.
pub fn leak_check(env: &Env) -> anyhow::Result<()> {
    const W: usize = 16;
    let mut windows: HashSet<&[u8]> = HashSet::new();
    let mut texts = Vec::new();
    let peers = env
        .peer_logs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for path in env
        .f
        .logs
        .iter()
        .chain(&peers)
        .chain(std::iter::once(&env.harness.log))
    {
        texts.push(std::fs::read(path).unwrap_or_default());
    }
    for t in &texts {
        for w in t.windows(W) {
            windows.insert(w);
        }
    }
    let secrets = env.secrets.lock().unwrap_or_else(|e| e.into_inner());
    for s in secrets.iter() {
        // Keys: check the base64 body lines; tokens: every window.
        let s: String = s.lines().filter(|l| !l.starts_with("-----")).collect();
        for w in s.as_bytes().windows(W) {
            if windows.contains(w) {
                bail!("a {W}-character piece of a token or key appears in the logs");
            }
        }
    }
    ensure!(
        texts.iter().any(|t| !t.is_empty()),
        "no logs captured at all"
    );
    let logged = texts
        .iter()
        .map(|t| String::from_utf8_lossy(t).to_string())
        .collect::<String>();
    ensure!(logged.contains("\"txn\""), "the function logs txn ids");
    Ok(())
}

/// Appends a line to `target/e2e-timings.txt`, which `.ci/run` prints.
pub fn append_timing(line: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let path = crate::workspace_root().join("target/e2e-timings.txt");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())?;
    Ok(())
}

/// Mean wall time of `n` warm exchanges over loopback (a sanity figure, not a benchmark).
/// Appended to `target/e2e-timings.txt`, which `.ci/run` prints.
fn record_timing(env: &Env, label: &str) -> anyhow::Result<()> {
    let token = env.token("alpha", "payments", "checkout");
    for _ in 0..5 {
        ensure!(env.exchange(&token, &[]).status == 200, "warm-up");
    }
    let n = 100;
    let started = std::time::Instant::now();
    for _ in 0..n {
        ensure!(env.exchange(&token, &[]).status == 200, "timed exchange");
    }
    let mean = started.elapsed() / n;
    append_timing(&format!(
        "{label}: {n} warm exchanges over loopback, mean {mean:?}\n"
    ))
}

/// A config that lists a private key among the previous public keys is refused at start-up:
/// the function answers 503 (no token, nothing about the config in the body), and the private
/// member's value reaches no log line (the leak check knows it).
fn private_key_in_the_public_keys(env: &Env) -> anyhow::Result<()> {
    let d = "c2VjcmV0LXByaXZhdGUta2V5LW1lbWJlci1vZi1hLWp3aw";
    env.remember(d);
    let active = env.jwks()["keys"][0].clone();
    let previous = format!(
        "{{kty = \"EC\", crv = \"P-256\", x = {}, y = {}, d = \"{d}\"}}",
        active["x"], active["y"]
    );
    let config = env.f.config.replacen(
        "[signer]\nkind = \"local\"\n",
        &format!("[signer]\nkind = \"local\"\nprevious_public_keys = [{previous}]\n"),
        1,
    );
    ensure!(config.contains(d), "{config}");
    let peer = env.start_peer_failing(&config, &env.signing_key)?;
    let sa = env.token("alpha", "payments", "checkout");
    let r = env.exchange_sa_at(&peer.base_url, &sa, &[]);
    expect_error(
        &r,
        503,
        "temporarily_unavailable",
        "a private key in the config",
    )?;
    ensure!(
        !r.raw.contains("previous_public_keys") && !r.raw.contains(&d[..16]),
        "{}",
        r.raw
    );
    let jwks = env.send(
        env.http
            .get(format!("{}/.well-known/jwks.json", peer.base_url)),
    );
    ensure!(
        jwks.status == 503,
        "no JWKS from a refused config: {}",
        jwks.raw
    );
    Ok(())
}

/// Policy conditions (CEL) on the shell: a pod-name condition over the SA token's claims; a
/// request_details + scope condition; an evaluation error counts as false. Same answers on the
/// Lambda and the Worker (one evaluator).
fn policy_conditions(env: &Env) -> anyhow::Result<()> {
    let pod = |name: &str| {
        env.harness
            .token_in_pod("alpha", "conditional", "pods", name)
    };
    let r = env.exchange(&pod("checkout-6b7f9")?, &[]);
    ensure!(r.status == 200, "a checkout pod: {} {}", r.status, r.raw);
    let claims = issued_claims(env, &env.jwks(), &r)?;
    ensure!(claims["scope"] == "orders:read", "{claims}");
    let r = env.exchange(&pod("admin-0")?, &[]);
    expect_error(&r, 400, "invalid_request", "another pod")?;
    ensure!(
        r.body["error_description"] == "subject not authorized",
        "{}",
        r.raw
    );
    // A token bound to no pod: `pod` is missing, an evaluation error, hence false.
    let r = env.exchange(&env.token("alpha", "conditional", "pods"), &[]);
    expect_error(&r, 400, "invalid_request", "no pod claim")?;

    let ticketed = env.token("alpha", "conditional", "ticketed");
    let ok = [
        vec![("scope", "orders:read")],
        vec![
            ("scope", "orders:write"),
            ("request_details", r#"{"ticket":"INC-7"}"#),
        ],
    ];
    for extra in ok {
        let r = env.exchange(&ticketed, &extra);
        ensure!(r.status == 200, "{extra:?}: {} {}", r.status, r.raw);
    }
    let refused = [
        vec![
            ("scope", "orders:write"),
            ("request_details", r#"{"ticket":"CHG-1"}"#),
        ],
        // No ticket: an evaluation error (a missing key) counts as false.
        vec![("scope", "orders:write")],
        vec![
            ("scope", "orders:write"),
            ("request_details", r#"{"ticket":7}"#),
        ],
    ];
    for extra in refused {
        let r = env.exchange(&ticketed, &extra);
        expect_error(&r, 400, "invalid_request", &format!("{extra:?}"))?;
    }
    Ok(())
}

/// The one log line per exchange (both shells, the same members in the same types), with its
/// metrics: on every shell a valid CloudWatch EMF record, labelled only by outcome, error,
/// cluster, kind and policy; an incoming W3C traceparent's trace id beside the txn.
fn exchange_log_line_and_metrics(env: &Env) -> anyhow::Result<()> {
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let form = [
        ("grant_type", TE),
        ("subject_token_type", JWT),
        ("scope", "orders:read"),
    ];
    let token = env.token("alpha", "payments", "checkout");
    let mut pairs: Vec<(&str, &str)> = form.to_vec();
    pairs.push(("subject_token", &token));
    let r = env.exchange_form(&pairs, &[("traceparent", &traceparent)]);
    ensure!(r.status == 200, "{} {}", r.status, r.raw);
    let txn = issued_claims(env, &env.jwks(), &r)?["txn"]
        .as_str()
        .context("txn")?
        .to_owned();
    // A malformed traceparent is ignored; the request is served.
    let r = env.exchange_form(&pairs, &[("traceparent", "00-not-a-trace")]);
    ensure!(
        r.status == 200,
        "a malformed traceparent: {} {}",
        r.status,
        r.raw
    );
    // A rejection has a line too.
    let bad = env.exchange(&env.token("alpha", "nowhere", "nobody"), &[]);
    expect_error(&bad, 400, "invalid_request", "no policy")?;

    let lines = wait_for_lines(env, |v| v["txn"] == txn.as_str())?;
    let line = &lines[0];
    for (member, want) in [
        ("message", "token exchange"),
        ("outcome", "issued"),
        ("error", ""),
        ("cluster", "alpha"),
        ("kind", "exchange"),
        ("policy", "policies[0]"),
        ("trace_id", trace),
    ] {
        ensure!(line[member] == want, "{member}: {line}");
    }
    ensure!(line["latency_ms"].is_u64(), "latency_ms: {line}");
    ensure!(
        line["subject_digest"]
            .as_str()
            .is_some_and(|d| d.len() == 16),
        "subject_digest: {line}"
    );
    assert_emf(line)?;
    let dims = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
    for never in ["namespace", "service_account", "sub", "txn", "trace_id"] {
        ensure!(
            !dims.contains(&format!("\"{never}\"")),
            "{never} is a dimension: {dims}"
        );
    }
    let rejected = wait_for_lines(env, |v| {
        v["message"] == "token exchange"
            && v["outcome"] == "rejected"
            && v["cluster"] == "alpha"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("not authorized"))
    })?;
    let rejected = rejected.last().context("rejected line")?;
    ensure!(
        rejected["error"] == "invalid_request" && rejected["policy"] == "",
        "{rejected}"
    );
    assert_emf(rejected)?;
    // The same members, in the same types, on every exchange line of this shell.
    let shape = |v: &Value| -> Vec<(String, &'static str)> {
        let mut members: Vec<(String, &'static str)> = v
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            match v {
                                Value::String(_) => "string",
                                Value::Number(_) => "number",
                                Value::Bool(_) => "bool",
                                Value::Object(_) => "object",
                                Value::Array(_) => "array",
                                Value::Null => "null",
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort();
        members
    };
    ensure!(
        shape(line) == shape(rejected),
        "issued and rejected lines differ: {line} vs {rejected}"
    );
    let fetches = wait_for_lines(env, |v| {
        v["message"] == "issuer keys fetched" && v["cluster"] == "alpha"
    })?;
    assert_emf(&fetches[0])?;
    ensure!(fetches[0]["result"] == "ok", "{}", fetches[0]);
    Ok(())
}

/// The function's log lines (JSON) that satisfy `pick`, waiting a moment for them to be written.
fn wait_for_lines(env: &Env, pick: impl Fn(&Value) -> bool) -> anyhow::Result<Vec<Value>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut found = Vec::new();
        for path in &env.f.logs {
            for text in std::fs::read_to_string(path).unwrap_or_default().lines() {
                // The Lambda's lines may come prefixed by cargo lambda's own output.
                let Some(start) = text.find('{') else {
                    continue;
                };
                if let Ok(v) = serde_json::from_str::<Value>(&text[start..])
                    && pick(&v)
                {
                    found.push(v);
                }
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
        ensure!(std::time::Instant::now() < deadline, "no such log line");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The CloudWatch Embedded Metric Format rules: `_aws.Timestamp` in milliseconds;
/// `CloudWatchMetrics` directives with a Namespace, Dimensions (arrays of the names of top-level
/// string members) and Metrics (Name and Unit, each a top-level number).
pub fn assert_emf(line: &Value) -> anyhow::Result<()> {
    let aws = line["_aws"].as_object().context("no _aws")?;
    ensure!(
        aws["Timestamp"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "Timestamp: {line}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .context("CloudWatchMetrics")?;
    ensure!(!directives.is_empty(), "{line}");
    for d in directives {
        ensure!(
            d["Namespace"].as_str().is_some_and(|n| !n.is_empty()),
            "Namespace: {line}"
        );
        for set in d["Dimensions"].as_array().context("Dimensions")? {
            let set = set.as_array().context("a dimension set")?;
            ensure!(!set.is_empty() && set.len() <= 30, "{line}");
            for name in set {
                let name = name.as_str().context("a dimension name")?;
                ensure!(
                    line[name].as_str().is_some_and(|v| !v.is_empty()),
                    "dimension {name} is not a top-level string: {line}"
                );
            }
        }
        for m in d["Metrics"].as_array().context("Metrics")? {
            let name = m["Name"].as_str().context("Name")?;
            ensure!(m["Unit"].is_string(), "Unit: {line}");
            ensure!(
                line[name].is_number(),
                "metric {name} is not a top-level number: {line}"
            );
        }
    }
    Ok(())
}

/// Contract v3: the service never issues a TxToken longer than the 8 KiB it (and the verifier)
/// accepts: a 12,000-character request_details gets invalid_request "transaction token too
/// large", and untrusted issuers cannot be told from bad signatures by the description.
fn oversized_txtoken_and_generic_descriptions(env: &Env) -> anyhow::Result<()> {
    let sa = env.token("alpha", "payments", "checkout");
    let details = json!({ "blob": "x".repeat(12_000) }).to_string();
    let r = env.exchange(&sa, &[("request_details", details.as_str())]);
    expect_error(
        &r,
        400,
        "invalid_request",
        "a 12,000-character request_details",
    )?;
    ensure!(
        r.body["error_description"] == "transaction token too large",
        "{}",
        r.raw
    );
    // A 4,000-character one fits, and the token verifies.
    let details = json!({ "blob": "x".repeat(4_000) }).to_string();
    let r = env.exchange(&sa, &[("request_details", details.as_str())]);
    ensure!(
        r.status == 200,
        "a 4,000-character request_details: {} {}",
        r.status,
        r.raw
    );
    let token = r.body["access_token"].as_str().context("token")?;
    ensure!(token.len() <= 8 * 1024, "{} bytes", token.len());

    let mut claims = claims_template(env, "alpha");
    claims["sub"] = json!("system:serviceaccount:payments:checkout");
    let mut untrusted = claims.clone();
    untrusted["iss"] = json!("https://untrusted.example.test");
    let kid = alpha_kid(env);
    let forged = env.sign(
        "alpha",
        json!({"alg": "RS256", "kid": kid}),
        claims,
        "foreign",
    );
    let stranger = env.sign(
        "alpha",
        json!({"alg": "RS256", "kid": kid}),
        untrusted,
        "active",
    );
    let (a, b) = (env.exchange(&forged, &[]), env.exchange(&stranger, &[]));
    expect_error(&a, 400, "invalid_request", "a forged signature")?;
    expect_error(&b, 400, "invalid_request", "an untrusted issuer")?;
    ensure!(
        a.body["error_description"] == b.body["error_description"],
        "the descriptions tell a trusted issuer from an untrusted one: {} vs {}",
        a.raw,
        b.raw
    );
    Ok(())
}

/// Contract v3: a config error names the key path and line, never the value, on both shells:
/// a JWK pasted as a string into `previous_public_keys` (its `d` must not reach any log), and
/// two clusters rendering the same workload ids (refused, naming both and
/// `shared_workload_ids`, unless that is set).
fn config_errors_quote_no_value(env: &Env) -> anyhow::Result<()> {
    let sa = env.token("alpha", "payments", "checkout");
    let refused = |config: &str, what: &str, needles: &[&str]| -> anyhow::Result<()> {
        let peer = env.start_peer_failing(config, &env.signing_key)?;
        let r = env.exchange_sa_at(&peer.base_url, &sa, &[]);
        expect_error(&r, 503, "temporarily_unavailable", what)?;
        // The Lambda logs the refusal at start, the Worker on the request: give both a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(&peer.log).unwrap_or_default();
            if needles.iter().all(|n| log.contains(n)) {
                return Ok(());
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "{what}: the log does not name {needles:?}:\n{}",
                log.lines()
                    .filter(|l| l.contains("config"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    let d = "c2VjcmV0LWQtb2YtYS1qd2stcGFzdGVkLWFzLWEtc3RyaW5n";
    env.remember(d);
    let pasted = format!(
        r#"previous_public_keys = ["{{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\",\"d\":\"{d}\"}}"]"#
    );
    let config = env.f.config.replacen(
        "[signer]\nkind = \"local\"\n",
        &format!("[signer]\nkind = \"local\"\n{pasted}\n"),
        1,
    );
    ensure!(config.contains(d), "{config}");
    refused(
        &config,
        "a JWK pasted as a string",
        &["signer.previous_public_keys", "line "],
    )?;

    // alpha renders the same SPIFFE ids as beta: refused, unless shared_workload_ids = true.
    let colliding = env.f.config.replacen(
        "name = \"alpha\"\n",
        &format!("name = \"alpha\"\nworkload_id = \"{BETA_WORKLOAD_ID}\"\n"),
        1,
    );
    ensure!(colliding != env.f.config, "no alpha in the config");
    refused(
        &colliding,
        "colliding workload-id templates",
        // JSON log lines escape the quotes around the cluster names.
        &["shared_workload_ids", "alpha", "beta", "].workload_id"],
    )?;
    let shared = format!("shared_workload_ids = true\n{colliding}");
    let peer = env.start_peer(&shared, &env.signing_key)?;
    let r = env.exchange_sa_at(&peer.base_url, &sa, &[]);
    ensure!(
        r.status == 200,
        "shared_workload_ids = true: {} {}",
        r.status,
        r.raw
    );
    Ok(())
}

/// The Worker verifies subject tokens through WebCrypto: every key it fetched was imported.
fn crypto_backend(env: &Env) -> anyhow::Result<()> {
    if env.f.shell != Shell::Worker {
        return Ok(());
    }
    let mut fetches = 0;
    for path in &env.f.logs {
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v["message"] != "issuer keys fetched" {
                continue;
            }
            fetches += 1;
            ensure!(
                v["imported"] == v["keys"] && v["keys"].as_u64().unwrap_or(0) > 0,
                "not every key was imported into WebCrypto: {line}"
            );
        }
    }
    ensure!(fetches > 0, "no key fetch logged");
    Ok(())
}

/// A case of a suite: a name and a check against the function under test.
pub type Case = (&'static str, fn(&Env) -> anyhow::Result<()>);

/// The suites of one test binary run in parallel. Each case, and each start of a function,
/// holds this lock shared; a measurement that needs the machine to itself takes it exclusively
/// ([`quiet`]), so the other suites pause between their cases meanwhile.
static CASES: RwLock<()> = RwLock::new(());

thread_local! {
    /// This thread's shared hold of [`CASES`] while it runs a case.
    static HELD: RefCell<Option<RwLockReadGuard<'static, ()>>> = const { RefCell::new(None) };
}

fn shared() -> RwLockReadGuard<'static, ()> {
    CASES.read().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` while no other suite of this process runs a case or starts a function (for timing
/// comparisons: the 2 cores of a CI machine are otherwise shared with them).
pub fn quiet<T>(f: impl FnOnce() -> T) -> T {
    let held = HELD.with(|h| h.borrow_mut().take());
    let was_held = held.is_some();
    drop(held);
    let out = {
        let _alone = CASES.write().unwrap_or_else(PoisonError::into_inner);
        f()
    };
    if was_held {
        HELD.with(|h| *h.borrow_mut() = Some(shared()));
    }
    out
}

/// Runs every case, printing each outcome; returns the failures.
pub fn run_cases(env: &Env, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, case) in cases {
        let started = std::time::Instant::now();
        HELD.with(|h| *h.borrow_mut() = Some(shared()));
        let outcome = case(env);
        HELD.with(|h| h.borrow_mut().take());
        match outcome {
            Ok(()) => eprintln!("ok   {name} ({:?})", started.elapsed()),
            Err(e) => {
                eprintln!("FAIL {name}: {e:#}");
                failures.push(format!("{name}: {e:#}"));
            }
        }
    }
    failures
}

/// Runs every case and fails with all failures at once.
pub fn run_all(env: &Env, cases: &[Case]) {
    let failures = run_cases(env, cases);
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The cases a cross-built Lambda runs under emulation (`tests/lambda_arm64.rs`): the cross build
/// is correct, not slower or faster (emulated timings mean nothing). Healthz, metadata and the
/// JWKS; an RS256 (alpha) and an ES256 (beta) exchange verified against the JWKS; refusals; a
/// replacement; no secret in the trace-level logs.
pub const CROSS_BUILD_CASES: &[Case] = &[
    ("metadata documents", metadata_documents),
    ("happy path, two clusters", happy_path_two_clusters),
    ("unknown cluster and policy", unknown_cluster_and_policy),
    ("replacement TxTokens", replacement),
    ("leak check", leak_check),
];

/// Runs every case; reports all failures at once. `label` names the target in the timing line.
pub fn run(env: &Env, label: &str) {
    let cases: &[Case] = &[
        ("happy path, two clusters", happy_path_two_clusters),
        ("metadata documents", metadata_documents),
        ("mirror case", mirror_case),
        ("unknown cluster and policy", unknown_cluster_and_policy),
        ("scope ceiling", scope_ceiling),
        ("each error code", each_error_code),
        (
            "oversized TxToken, generic descriptions",
            oversized_txtoken_and_generic_descriptions,
        ),
        ("attacks", attacks),
        ("workload binding", workload_binding),
        ("policy conditions", policy_conditions),
        (
            "exchange log line and metrics",
            exchange_log_line_and_metrics,
        ),
        ("kontxt quickstart caller", kontxt_quickstart_caller),
        ("upstream fault and recovery", upstream_fault_and_recovery),
        ("key rotation without restart", key_rotation_without_restart),
        ("a key published late", key_published_late),
        ("replacement TxTokens", replacement),
        (
            "replacement after rotation and expiry",
            replacement_after_rotation_and_expiry,
        ),
        (
            "a private key in the public keys",
            private_key_in_the_public_keys,
        ),
        ("config errors quote no value", config_errors_quote_no_value),
        ("crypto backend", crypto_backend),
        ("leak check", leak_check),
    ];
    let mut failures = run_cases(env, cases);
    if let Err(e) = record_timing(env, label) {
        failures.push(format!("timing: {e:#}"));
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
