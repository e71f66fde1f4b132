//! The whole service: `TxBridge::handle` with a fixed clock and an in-memory issuer serving
//! fixed discovery documents and JWKS for three clusters, checked against response invariants.
//!
//! Input: up to four requests separated by a line `=====`, each written like HTTP/1.1:
//!
//! ```text
//! POST /token
//! content-type: application/x-www-form-urlencoded
//! x-fuzz-upstream: down
//!
//! grant_type=...&subject_token=<<ES256:{"alg":"ES256","kid":"b1"}|{"iss":...}>>&...
//! ```
//!
//! `<<ALG:HEADER|CLAIMS>>` in a body becomes a compact JWS of exactly those header and claims
//! bytes, signed with a cluster key (ES256: beta's `b1`, also gamma's; ES256-ROTATED: beta's
//! `b2`; RS256: alpha's `a1`, also gamma's), so mutated claims still carry a valid signature
//! and reach the claim checks. NOW is 1800000000. Pseudo-headers
//! steer the harness and are not sent: `x-fuzz-clock: <seconds from NOW>`, `x-fuzz-upstream:
//! <mode>` (see [`Mode`]), `x-fuzz-jwks: <JWKS body served for every cluster>`, `x-fuzz-ip:
//! <caller IP>`, `x-fuzz-pad: <bytes appended to the body>`. All requests of one input share
//! one fresh service (so key-cache state carries over between them, and reproduces).
//!
//! Invariants: only 200/400/401/404/405/413/503; 503 carries Retry-After, 405 Allow; every
//! non-HEAD body is JSON, with a known `error` code when >= 400; `access_token` only in a 200
//! exchange, whose subject token must verify independently and whose TxToken must verify
//! against the published key with the configured claims; the response never contains a
//! (JWS-shaped, >= 24 characters) subject token.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Verifier as _;
use serde_json::{Value, json};
use txbridge_core::{ClientIp, Config};
use txbridge_jose::{self as jose, MAX_UPSTREAM_BODY};
use txbridge_signer::{LocalSigner, Signer as _};
use txbridge_test_support::{
    ALPHA_DISCOVERY, ALPHA_ISS, ALPHA_JWKS, BETA_DISCOVERY, BETA_ISS, BETA_JWKS, GAMMA_ISS,
    GAMMA_JWKS, NOW, Pace, TD as ISSUER, TestKey, Upstream, World, config_toml, rsa_key,
    seeded_signer,
};

const LIFETIME: u64 = 300;
const LEEWAY: u64 = 30;
const ALL_SCOPES: [&str; 4] = ["orders:read", "orders:write", "reports:read", "x:read"];

/// What the fuzz target adds to the test world's config: cluster `gamma` (a JWKS URL on
/// plain-HTTP loopback, keys without kid), a policy with a tctx constraint, and a key cache
/// tuned so that a few requests reach refreshes and back-off.
const EXTRA_CONFIG: &str = r#"
[[clusters]]
name = "gamma"
issuer = "http://127.0.0.1:9"
jwks_url = "http://127.0.0.1:9/keys"
audiences = ["txbridge"]
insecure_allow_http_loopback = true

[[policies]]
cluster = "*"
namespace = "*"
service_account = "*-ro"
scopes = ["x:read"]
tctx_constraints = { namespace = "${namespace}" }

[key_cache]
ttl = "60s"
min_refresh_interval = "5s"
stale_grace = "10m"
"#;

/// The fixed keys and documents, built once per process.
struct Fixture {
    /// alpha's `a1` (also gamma's, without kid).
    alpha: TestKey,
    /// beta's `b1` (also gamma's, without kid).
    beta: TestKey,
    /// beta's `b2`.
    rotated: TestKey,
    signer: Arc<LocalSigner>,
    config: Config,
    alpha_jwk: Value,
    beta_jwk: Value,
    rotated_jwk: Value,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (alpha, beta) = (rsa_key(0), World::beta_key());
        let rotated = TestKey::ec_seeded(b"txbridge-fuzz rotated");
        Fixture {
            alpha_jwk: alpha.public_jwk("a1"),
            beta_jwk: beta.public_jwk("b1"),
            rotated_jwk: rotated.public_jwk("b2"),
            alpha,
            beta,
            rotated,
            signer: Arc::new(seeded_signer(b"txbridge-fuzz signer")),
            config: Config::from_toml_str(&config_toml(EXTRA_CONFIG))
                .expect("fuzz config is valid"),
        }
    })
}

/// How the in-memory issuer answers (`x-fuzz-upstream`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Ok,
    Down,
    Timeout,
    TooLarge,
    Status500,
    Garbage,
    WrongIssuer,
    HttpJwksUri,
    Rotated,
    Huge,
    Custom,
}

impl Mode {
    fn parse(v: &[u8]) -> Mode {
        match v {
            b"down" => Mode::Down,
            b"timeout" => Mode::Timeout,
            b"too-large" => Mode::TooLarge,
            b"500" => Mode::Status500,
            b"garbage" => Mode::Garbage,
            b"wrong-issuer" => Mode::WrongIssuer,
            b"http-jwks-uri" => Mode::HttpJwksUri,
            b"rotated" => Mode::Rotated,
            b"huge" => Mode::Huge,
            _ => Mode::Ok,
        }
    }
}

/// Sets what the clusters' discovery and JWKS URLs answer for the next request.
fn serve(world: &World, mode: Mode, custom: &[u8]) {
    let f = fixture();
    let jwks = |keys: &[&Value]| Upstream::Json(json!({ "keys": keys }));
    let discovery =
        |iss: &str, jwks_uri: &str| Upstream::Json(json!({"issuer": iss, "jwks_uri": jwks_uri}));
    let everywhere = match mode {
        Mode::Down => Some(Upstream::Fail),
        Mode::Timeout => Some(Upstream::Timeout),
        Mode::TooLarge => Some(Upstream::TooLarge),
        Mode::Status500 => Some(Upstream::Status(500)),
        Mode::Garbage => Some(Upstream::Body(b"<html>".to_vec())),
        Mode::Huge => Some(Upstream::Body(vec![b' '; MAX_UPSTREAM_BODY + 1])),
        _ => None,
    };
    let documents = [
        (ALPHA_DISCOVERY, discovery(ALPHA_ISS, ALPHA_JWKS)),
        (BETA_DISCOVERY, discovery(BETA_ISS, BETA_JWKS)),
    ];
    let (gamma_beta, gamma_alpha) = (f.beta.bare_jwk(), f.alpha.bare_jwk());
    let key_sets = [
        (ALPHA_JWKS, jwks(&[&f.alpha_jwk])),
        (
            BETA_JWKS,
            if mode == Mode::Rotated {
                jwks(&[&f.rotated_jwk])
            } else {
                jwks(&[&f.beta_jwk, &f.rotated_jwk])
            },
        ),
        (GAMMA_JWKS, jwks(&[&gamma_beta, &gamma_alpha])),
    ];
    for (url, normal) in documents {
        let answer = match mode {
            Mode::WrongIssuer => discovery("https://evil.example", ALPHA_JWKS),
            Mode::HttpJwksUri => discovery(ALPHA_ISS, "http://alpha.example.test/k"),
            _ => normal,
        };
        world.routes.set(url, everywhere.clone().unwrap_or(answer));
    }
    for (url, normal) in key_sets {
        let answer = match mode {
            Mode::Custom => Upstream::Body(custom.to_vec()),
            _ => normal,
        };
        world.routes.set(url, everywhere.clone().unwrap_or(answer));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Signs `input` with the key an `<<ALG:...>>` template names. Signing is slow under coverage
/// instrumentation and mutations often leave the template alone, so recent signatures are
/// remembered (both schemes are deterministic: remembering changes no outcome).
fn sign(alg: &[u8], input: &[u8]) -> Vec<u8> {
    type Memo = HashMap<(Vec<u8>, Vec<u8>), Vec<u8>>;
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let key = (alg.to_vec(), input.to_vec());
    if let Some(sig) = memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return sig;
    }
    let f = fixture();
    let sig = match alg {
        b"ES256" => f.beta.sign(input),
        b"ES256-ROTATED" => f.rotated.sign(input),
        b"RS256" => f.alpha.sign(input),
        _ => Vec::new(),
    };
    if let Ok(mut m) = memo.lock() {
        if m.len() >= 256 {
            m.clear();
        }
        m.insert(key, sig.clone());
    }
    sig
}

/// Replaces each `<<ALG:HEADER|CLAIMS>>` with a JWS signed over exactly those bytes.
fn expand(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 2);
    while let Some(start) = find(body, b"<<") {
        out.extend_from_slice(&body[..start]);
        let rest = &body[start + 2..];
        let (Some(colon), Some(end)) = (find(rest, b":"), find(rest, b">>")) else {
            out.extend_from_slice(&body[start..]);
            return out;
        };
        if colon > end {
            out.extend_from_slice(b"<<");
            body = rest;
            continue;
        }
        let alg = &rest[..colon];
        let inner = &rest[colon + 1..end];
        let (h, c) = match find(inner, b"|") {
            Some(bar) => (&inner[..bar], &inner[bar + 1..]),
            None => (inner, &b""[..]),
        };
        let input = format!("{}.{}", B64.encode(h), B64.encode(c));
        let sig = sign(alg, input.as_bytes());
        out.extend_from_slice(input.as_bytes());
        out.push(b'.');
        out.extend_from_slice(B64.encode(sig).as_bytes());
        body = &rest[end + 2..];
    }
    out.extend_from_slice(body);
    out
}

/// One request of the input, and the harness settings that came with it.
struct Parsed {
    req: http::Request<Vec<u8>>,
    head: bool,
    exchange: bool,
    document: bool,
    clock: u64,
    mode: Mode,
    custom_jwks: Vec<u8>,
}

fn parse_request(text: &[u8]) -> Parsed {
    let (head_part, body) = match find(text, b"\n\n") {
        Some(i) => (&text[..i], &text[i + 2..]),
        None => (text, &b""[..]),
    };
    let mut lines = head_part.split(|b| *b == b'\n');
    let start = lines.next().unwrap_or_default();
    let (method, path) = match find(start, b" ") {
        Some(i) => (&start[..i], &start[i + 1..]),
        None => (start, &b"/"[..]),
    };
    let method = http::Method::from_bytes(method).unwrap_or(http::Method::POST);
    let uri: http::Uri = std::str::from_utf8(path)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| http::Uri::from_static("/token"));
    let mut body = expand(body);
    let mut req = http::Request::new(Vec::new());
    let (mut clock, mut mode, mut custom_jwks) = (NOW, Mode::Ok, Vec::new());
    for line in lines {
        let Some(colon) = find(line, b":") else {
            continue;
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        match name {
            b"x-fuzz-clock" => {
                let off = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
                    .clamp(-1_000_000_000, 1_000_000_000);
                clock = NOW.saturating_add_signed(off);
            }
            b"x-fuzz-upstream" => mode = Mode::parse(value),
            b"x-fuzz-jwks" => {
                mode = Mode::Custom;
                custom_jwks = value.to_vec();
            }
            b"x-fuzz-ip" => {
                if let Some(ip) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                    req.extensions_mut().insert(ClientIp(ip));
                }
            }
            b"x-fuzz-pad" => {
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(70_000);
                body.extend(std::iter::repeat_n(b'a', n));
            }
            _ => {
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(name),
                    http::HeaderValue::from_bytes(value),
                ) {
                    req.headers_mut().append(n, v);
                }
            }
        }
    }
    let path = uri.path().to_owned();
    let exchange = method == http::Method::POST && (path == "/token" || path == "/token_endpoint");
    let document = matches!(method, http::Method::GET | http::Method::HEAD)
        && [
            "/.well-known/jwks.json",
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
            "/healthz",
        ]
        .contains(&path.as_str());
    let head = method == http::Method::HEAD;
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.body_mut() = body;
    Parsed {
        req,
        head,
        exchange,
        document,
        clock,
        mode,
        custom_jwks,
    }
}

fn b64_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&B64.decode(part).ok()?).ok()
}

/// Independent check that a subject token the service accepted really is signed by the key of
/// its cluster (no signature bypass), with claims the service must have required.
fn check_accepted_subject(token: &str, now: u64) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        parts.len(),
        3,
        "accepted subject token is not a compact JWS"
    );
    let header = b64_json(parts[0]).expect("accepted token header is JSON");
    let claims = b64_json(parts[1]).expect("accepted token claims are JSON");
    let sig = B64
        .decode(parts[2])
        .expect("accepted token signature is base64url");
    let input = format!("{}.{}", parts[0], parts[1]);
    let f = fixture();
    let iss = claims["iss"].as_str().expect("accepted token has iss");
    let ok = match header["alg"].as_str() {
        Some("ES256") => {
            assert!(
                iss == BETA_ISS || iss == GAMMA_ISS,
                "ES256 token from {iss}"
            );
            [&f.beta, &f.rotated]
                .iter()
                .any(|k| k.verify(input.as_bytes(), &sig))
        }
        Some("RS256") => {
            assert!(
                iss == ALPHA_ISS || iss == GAMMA_ISS,
                "RS256 token from {iss}"
            );
            f.alpha.verify(input.as_bytes(), &sig)
        }
        other => panic!("accepted a token with alg {other:?}"),
    };
    assert!(
        ok,
        "accepted a subject token whose signature does not verify"
    );
    let exp = claims["exp"]
        .as_f64()
        .expect("accepted token has numeric exp");
    assert!(
        exp + LEEWAY as f64 > now as f64,
        "accepted an expired token"
    );
    assert!(claims["iat"].is_number(), "accepted a token without iat");
    assert!(claims["sub"].is_string() && !claims["aud"].is_null());
}

/// Checks an issued TxToken against the published key and the service's settings.
fn check_issued(body: &Value, now: u64, subject_exp: Option<f64>) {
    let token = body["access_token"]
        .as_str()
        .expect("200 carries access_token");
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:txn_token"
    );
    let scope = body["scope"].as_str().expect("200 carries scope");
    assert!(
        scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| ALL_SCOPES.contains(&s))
    );
    let jws = jose::parse_compact(token).expect("issued token parses");
    assert_eq!(jws.alg, "ES256");
    let signer = &fixture().signer;
    assert_eq!(jws.kid.as_deref(), Some(signer.key_id()));
    let jwk = signer.public_jwk();
    let mut sec1 = vec![4u8];
    sec1.extend(B64.decode(&jwk.x).expect("x"));
    sec1.extend(B64.decode(&jwk.y).expect("y"));
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).expect("published key");
    let sig = p256::ecdsa::Signature::from_slice(&jws.signature).expect("issued signature");
    assert!(
        key.verify(jws.signing_input, &sig).is_ok(),
        "issued token does not verify"
    );
    let claims: Value = serde_json::from_slice(&jws.payload).expect("issued claims JSON");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], ISSUER);
    assert_eq!(claims["iat"], now);
    let exp = claims["exp"].as_u64().expect("issued exp");
    assert!(
        exp > now && exp <= now + LIFETIME,
        "issued exp out of range"
    );
    if let Some(sexp) = subject_exp {
        assert!(
            exp as f64 <= sexp.max(0.0).floor() + 0.5,
            "TxToken outlives its subject"
        );
    }
    assert_eq!(body["expires_in"], exp - now);
    assert_eq!(claims["scope"].as_str(), Some(scope));
    let sub = claims["sub"].as_str().expect("issued sub");
    assert!(
        ["alpha:", "beta:", "gamma:"]
            .iter()
            .any(|c| sub.starts_with(c)),
        "issued sub without cluster"
    );
    assert!(claims["txn"].as_str().is_some_and(|t| t.len() >= 22));
}

const CODES: [&str; 7] = [
    "invalid_request",
    "invalid_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "temporarily_unavailable",
    "server_error",
];

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // Timers complete at once and the issuer answers at once (requests run one after the
    // other); background key refreshes run after the request that started them.
    let world = World::build(f.config.clone(), f.signer.clone(), Pace::Sequential);

    for text in requests(data) {
        let p = parse_request(text);
        world.set_now(p.clock);
        serve(&world, p.mode, &p.custom_jwks);
        let tokens: Vec<String> = url::form_urlencoded::parse(p.req.body())
            .filter(|(k, _)| k == "subject_token")
            .map(|(_, v)| v.into_owned())
            .collect();
        let resp = futures::executor::block_on(world.bridge.handle(p.req));
        world.runtime.run_background();
        let status = resp.status().as_u16();
        if debug() {
            // Status and error code only: never a token.
            let code = serde_json::from_slice::<Value>(resp.body())
                .ok()
                .and_then(|b| b["error"].as_str().map(str::to_owned));
            eprintln!("handler: {status} {}", code.as_deref().unwrap_or("-"));
        }

        assert!(
            [200, 400, 401, 404, 405, 413, 503].contains(&status),
            "unexpected status {status}"
        );
        if status == 503 {
            let ra = resp
                .headers()
                .get("retry-after")
                .expect("503 without Retry-After");
            assert!(ra.to_str().is_ok_and(|v| v.parse::<u32>().is_ok()));
        }
        if status == 405 {
            assert!(resp.headers().contains_key("allow"), "405 without Allow");
        }
        if status == 200 {
            assert!(
                p.exchange || p.document,
                "200 for a request that is no route"
            );
        }
        for t in tokens.iter().filter(|t| jws_shaped(t)) {
            let leaked = find(resp.body(), t.as_bytes()).is_some()
                || resp
                    .headers()
                    .values()
                    .any(|v| find(v.as_bytes(), t.as_bytes()).is_some());
            assert!(!leaked, "the response echoes the subject token");
        }
        if p.head {
            assert!(resp.body().is_empty(), "HEAD response with a body");
            continue;
        }
        let body: Value = serde_json::from_slice(resp.body()).expect("response body is JSON");
        if status >= 400 {
            let code = body["error"].as_str().expect("error body without error");
            assert!(CODES.contains(&code), "unknown error code");
            assert!(body["error_description"].is_string());
        }
        if status != 200 || !p.exchange {
            assert!(
                body.get("access_token").is_none(),
                "access_token with {status}"
            );
        } else {
            let subject = tokens.first().expect("200 exchange without subject_token");
            check_accepted_subject(subject, p.clock);
            let sexp = subject
                .split('.')
                .nth(1)
                .and_then(b64_json)
                .and_then(|c| c["exp"].as_f64());
            check_issued(&body, p.clock, sexp);
        }
    }
});

/// Subject tokens the leak check looks for: compact-JWS-shaped and at least 24 characters.
/// Other text may legitimately occur in a response by chance: the fuzzer learns the fixed error
/// descriptions from the check's own comparisons and sends them as tokens (a base64url run of
/// 24+ characters with two dots occurs in no fixed response text).
fn jws_shaped(t: &str) -> bool {
    t.len() >= 24
        && t.matches('.').count() == 2
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// `TXBRIDGE_FUZZ_DEBUG=1` prints each response's status and error code (to check seeds).
fn debug() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| std::env::var_os("TXBRIDGE_FUZZ_DEBUG").is_some())
}

/// The requests of one input: split on lines `=====`, at most four.
fn requests(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let cur = rest?;
        match find(cur, b"\n=====\n") {
            Some(i) => {
                rest = Some(&cur[i + 7..]);
                Some(&cur[..i])
            }
            None => {
                rest = None;
                Some(cur)
            }
        }
    })
    .take(4)
}
