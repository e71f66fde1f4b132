//! The end-to-end suite, written once and run against every shell (Lambda under
//! `cargo lambda watch`, Worker under workerd): real harness issuer, real HTTP.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
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

/// The function under test.
#[derive(Debug)]
pub struct Function {
    /// Where requests go.
    pub base_url: String,
    /// The configured issuer (`iss` of TxTokens).
    pub issuer: String,
    /// Files holding everything the function logged.
    pub logs: Vec<PathBuf>,
}

/// One run's context: the harness, the function, and every secret seen (for the leak check).
#[allow(missing_debug_implementations)]
pub struct Env {
    pub harness: Harness,
    pub f: Function,
    pub signing_key: String,
    http: reqwest::blocking::Client,
    secrets: RefCell<Vec<String>>,
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
            secrets: RefCell::new(Vec::new()),
        };
        env.secrets.borrow_mut().push(env.signing_key.clone());
        env
    }

    fn remember(&self, secret: &str) {
        self.secrets.borrow_mut().push(secret.to_owned());
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
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let mut req = self
            .http
            .post(format!("{}/token", self.f.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req)
    }

    pub fn exchange(&self, token: &str, extra: &[(&str, &str)]) -> Resp {
        let mut pairs = vec![
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("requested_token_type", TXN),
        ];
        pairs.extend_from_slice(extra);
        self.exchange_form(&pairs, &[])
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
    let harness = Harness::start(clusters)?;
    let port = crate::free_port();
    let issuer = crate::procs::lambda_base_url(port);
    let (toml, key) = harness.config(&issuer)?;
    let (running, log, dir) =
        crate::procs::start_lambda(port, &config(&toml), &key, &[("RUST_LOG", "trace")])?;
    let f = Function {
        base_url: running.base_url.clone(),
        issuer,
        logs: vec![log],
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
    let harness = Harness::start(clusters)?;
    let issuer = "https://txbridge-worker.example.test".to_owned();
    let (toml, key) = harness.config(&issuer)?;
    let running = crate::worker::start(&config(&toml), &key)?;
    let port = running.base_url.rsplit(':').next().unwrap_or_default();
    let log = crate::workspace_root().join(format!("target/tmp/txbridge-worker-{port}.log"));
    let f = Function {
        base_url: running.base_url.clone(),
        issuer,
        logs: vec![log],
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

/// Verifies a TxToken with jsonwebtoken on the published JWKS; returns header and claims.
pub fn verify(
    jwks: &Value,
    token: &str,
    issuer: &str,
    aud: &str,
) -> anyhow::Result<(jsonwebtoken::Header, Value)> {
    let header = jsonwebtoken::decode_header(token)?;
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

fn key_rotation_without_restart(env: &Env) -> anyhow::Result<()> {
    ensure!(
        env.exchange(&env.token("alpha", "payments", "checkout"), &[])
            .status
            == 200,
        "before"
    );
    env.harness.rotate("alpha", true)?;
    let r = env.exchange(&env.token("alpha", "payments", "checkout"), &[]);
    ensure!(r.status == 200, "token of the new key: {}", r.raw);
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
            "jku to attacker",
            json!({"alg": "RS256", "kid": "evil", "jku": "http://127.0.0.1:1/jwks"}),
            base.clone(),
            "foreign",
        ),
        (
            "x5u to attacker",
            json!({"alg": "RS256", "kid": "evil", "x5u": "http://127.0.0.1:1/x5u"}),
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
    Ok(())
}

/// Replacement TxTokens: a TxToken as the subject token gets a narrower one with the same
/// txn, sub and tctx and an exp no later than the original's; a wider scope is refused.
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
    let replace = |scope: &str| {
        env.exchange_form(
            &[
                ("grant_type", TE),
                ("subject_token", &original),
                ("subject_token_type", TXN),
                ("requested_token_type", TXN),
                ("scope", scope),
            ],
            &[("X-Txbridge-Workload", "orders-worker")],
        )
    };
    let r = replace("orders:read");
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
        after["req_wl"]
            .as_str()
            .is_some_and(|w| w.ends_with(",orders-worker")),
        "req_wl keeps the call chain: {after}"
    );
    expect_error(
        &replace("orders:read admin"),
        400,
        "invalid_scope",
        "wider scope on replacement",
    )?;
    Ok(())
}

/// After everything: no token, key or 24+ character piece of one in any log or error body.
pub fn leak_check(env: &Env) -> anyhow::Result<()> {
    const W: usize = 24;
    let mut windows: HashSet<&[u8]> = HashSet::new();
    let mut texts = Vec::new();
    for path in env.f.logs.iter().chain(std::iter::once(&env.harness.log)) {
        texts.push(std::fs::read(path).unwrap_or_default());
    }
    for t in &texts {
        for w in t.windows(W) {
            windows.insert(w);
        }
    }
    let secrets = env.secrets.borrow();
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
    let line = format!("{label}: {n} warm exchanges over loopback, mean {mean:?}\n");
    let path = crate::workspace_root().join("target/e2e-timings.txt");
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())?;
    Ok(())
}

/// Runs every case; reports all failures at once. `label` names the target in the timing line.
pub fn run(env: &Env, label: &str) {
    type Case = (&'static str, fn(&Env) -> anyhow::Result<()>);
    let cases: &[Case] = &[
        ("happy path, two clusters", happy_path_two_clusters),
        ("metadata documents", metadata_documents),
        ("mirror case", mirror_case),
        ("unknown cluster and policy", unknown_cluster_and_policy),
        ("scope ceiling", scope_ceiling),
        ("each error code", each_error_code),
        ("attacks", attacks),
        ("upstream fault and recovery", upstream_fault_and_recovery),
        ("key rotation without restart", key_rotation_without_restart),
        ("replacement TxTokens", replacement),
        ("leak check", leak_check),
    ];
    let mut failures = Vec::new();
    for (name, case) in cases {
        let started = std::time::Instant::now();
        match case(env) {
            Ok(()) => eprintln!("ok   {name} ({:?})", started.elapsed()),
            Err(e) => {
                eprintln!("FAIL {name}: {e:#}");
                failures.push(format!("{name}: {e:#}"));
            }
        }
    }
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
