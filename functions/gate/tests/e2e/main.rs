//! txbridge-gate end to end: the real binary behind the real proxies (nginx `auth_request`,
//! Envoy HTTP and gRPC ext_authz, Caddy `forward_auth`), each in front of a recording upstream,
//! with real TxTokens and the issuer's discovery and JWKS on loopback; and the gate on its own
//! (config errors at start, keys unavailable, unknown kids, key rotation, metrics, logs).
//! Every test starts its own processes on free loopback ports, so they run concurrently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod lambda;
mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use support::*;
use txbridge_signer::{LocalSigner, Signer as _};

/// Every token a test used, to check that no log line carries one.
#[derive(Default)]
struct Tokens(Vec<String>);

impl Tokens {
    fn keep(&mut self, t: String) -> String {
        self.0.push(t.clone());
        t
    }

    fn assert_absent_from(&self, log: &str, what: &str) {
        assert!(!log.is_empty(), "{what}: empty log");
        for t in &self.0 {
            for part in t.split('.').filter(|p| p.len() >= 16) {
                assert!(!log.contains(part), "{what}: a token part is in the log");
            }
        }
    }
}

/// The cases every proxy must get right: the status the client gets, and whether (and with
/// what) the upstream was reached.
fn proxy_cases(
    proxy: &str,
    front: SocketAddr,
    issuer: &Issuer,
    upstream: &Upstream,
    unavailable_status: u16,
) -> Tokens {
    let mut tokens = Tokens::default();
    let stranger = LocalSigner::generate();

    // Keys cold and the issuer down: the gate's 503, as the proxy passes it on (nginx's
    // auth_request turns it into 500); a bad token is still 401. Then the issuer comes back.
    *issuer.mode.lock().unwrap() = JwksMode::Fail;
    let token = tokens.keep(issuer.token("orders:read"));
    let r = request(front, "GET", "/orders/1", &[("Txn-Token", &token)]);
    assert_eq!(
        r.status, unavailable_status,
        "{proxy}: issuer down: {}",
        r.body
    );
    let r = request(front, "GET", "/orders/1", &[("Txn-Token", "garbage")]);
    assert_eq!(r.status, 401, "{proxy}: issuer down, bad token: {}", r.body);
    assert_eq!(upstream.count(), 0, "{proxy}: upstream not reached");
    *issuer.mode.lock().unwrap() = JwksMode::Serve;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while request(front, "GET", "/orders/1", &[("Txn-Token", &token)]).status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "{proxy}: keys never came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Allowed: the upstream sees the X-Txbridge-* headers (the client's own forged ones
    // overwritten) and the original Txn-Token, unmodified.
    let claims = issuer.claims("orders:read orders:list");
    let token = tokens.keep(issuer.sign(&claims));
    let before = upstream.count();
    let r = request(
        front,
        "GET",
        "/orders/42?expand=items",
        &[
            ("Txn-Token", &token),
            ("X-Txbridge-Sub", "forged-admin"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
    );
    assert_eq!(r.status, 200, "{proxy}: allow: {}", r.body);
    assert_eq!(
        upstream.count(),
        before + 1,
        "{proxy}: upstream reached once"
    );
    let seen = upstream.last();
    let h = map(&seen.headers);
    assert_eq!(
        seen.one("txn-token"),
        Some(token.as_str()),
        "{proxy}: Txn-Token unmodified: {h:?}"
    );
    assert_eq!(
        seen.one("x-txbridge-txn"),
        claims["txn"].as_str(),
        "{proxy}: {h:?}"
    );
    assert_eq!(
        seen.one("x-txbridge-sub"),
        claims["sub"].as_str(),
        "{proxy}: sub overwritten: {h:?}"
    );
    assert_eq!(
        seen.one("x-txbridge-scope"),
        Some("orders:read orders:list"),
        "{proxy}: {h:?}"
    );
    assert_eq!(
        seen.one("x-txbridge-req-wl"),
        claims["req_wl"].as_str(),
        "{proxy}: {h:?}"
    );
    assert!(
        seen.target.starts_with("/orders/42"),
        "{proxy}: {}",
        seen.target
    );

    // The token header's name is case-insensitive.
    let t = tokens.keep(issuer.token("orders:read"));
    let r = request(front, "GET", "/orders/7", &[("TXN-TOKEN", &t)]);
    assert_eq!(r.status, 200, "{proxy}: upper-case header name");

    let now = now();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = issuer.claims("orders:read");
        f(&mut c);
        c
    };
    let hdr = |f: &dyn Fn(&mut Value)| {
        let mut h = issuer.header();
        f(&mut h);
        h
    };
    let s = &issuer.signer;
    let good = issuer.claims("orders:read");
    let invalid: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("not-a-token".into())),
        (
            "forged signature",
            Some(Issuer::sign_with(&stranger, &issuer.header(), &good)),
        ),
        (
            "alg none",
            Some(Issuer::sign_with(
                s,
                &hdr(&|h| h["alg"] = json!("none")),
                &good,
            )),
        ),
        (
            "unknown kid",
            Some(Issuer::sign_with(
                &stranger,
                &hdr(&|h| h["kid"] = json!(stranger.key_id())),
                &good,
            )),
        ),
        (
            "expired",
            Some(issuer.sign(&with(&|c| {
                c["iat"] = json!(now - 900);
                c["exp"] = json!(now - 600);
            }))),
        ),
        (
            "wrong audience",
            Some(issuer.sign(&with(&|c| c["aud"] = json!("https://other.example.test")))),
        ),
        (
            "wrong issuer",
            Some(issuer.sign(&with(&|c| c["iss"] = json!("https://evil.example.test")))),
        ),
        (
            "wrong typ",
            Some(Issuer::sign_with(
                s,
                &hdr(&|h| h["typ"] = json!("JWT")),
                &good,
            )),
        ),
        (
            "no txn",
            Some(issuer.sign(&with(&|c| {
                c.as_object_mut().unwrap().remove("txn");
            }))),
        ),
    ];
    for (name, token) in invalid {
        let before = upstream.count();
        let token = token.map(|t| tokens.keep(t));
        let headers: Vec<(&str, &str)> = token.iter().map(|t| ("Txn-Token", t.as_str())).collect();
        let r = request(front, "GET", "/orders/42", &headers);
        assert_eq!(r.status, 401, "{proxy}: {name}: {}", r.body);
        if !proxy.starts_with("nginx") {
            // nginx answers with its own page; the others pass the gate's body and challenge.
            assert_eq!(
                r.json()["error"],
                "invalid_token",
                "{proxy}: {name}: {}",
                r.body
            );
            assert!(r.header("www-authenticate").is_some(), "{proxy}: {name}");
        }
        assert_eq!(
            upstream.count(),
            before,
            "{proxy}: {name}: upstream not reached"
        );
    }

    // Valid tokens failing their route: 403.
    let read_only = tokens.keep(issuer.token("orders:read"));
    let other_tenant = tokens.keep(issuer.sign(&with(&|c| c["tctx"]["tenant"] = json!("globex"))));
    let wrong_caller = tokens.keep(issuer.sign(&with(&|c| {
        c["req_wl"] = json!(
            "spiffe://example.test/ns/payments/sa/checkout,spiffe://example.test/ns/web/sa/front"
        )
    })));
    let forbidden: Vec<(&str, &str, &str, &str)> = vec![
        (
            "scope missing for the method",
            "POST",
            "/orders/42",
            &read_only,
        ),
        (
            "path glob's segment rule",
            "GET",
            "/orders/42/items",
            &read_only,
        ),
        ("no route, default deny", "GET", "/elsewhere", &read_only),
        ("tctx mismatch", "GET", "/tenants/acme/x", &other_tenant),
        (
            "workload: the last req_wl entry",
            "GET",
            "/payments/1",
            &wrong_caller,
        ),
    ];
    for (name, method, path, token) in forbidden {
        let before = upstream.count();
        let r = request(front, method, path, &[("Txn-Token", token)]);
        assert_eq!(r.status, 403, "{proxy}: {name}: {}", r.body);
        if !proxy.starts_with("nginx") {
            assert_eq!(
                r.json()["error"],
                "insufficient_scope",
                "{proxy}: {name}: {}",
                r.body
            );
        }
        assert_eq!(
            upstream.count(),
            before,
            "{proxy}: {name}: upstream not reached"
        );
    }

    // The same routes allow what they should.
    let writer = tokens.keep(issuer.token("orders:write"));
    for (name, method, path, token) in [
        (
            "scope for the method",
            "POST",
            "/orders/42",
            writer.as_str(),
        ),
        ("tctx match", "GET", "/tenants/acme/x", read_only.as_str()),
        (
            "workload match",
            "GET",
            "/payments/1/refunds",
            read_only.as_str(),
        ),
    ] {
        let r = request(front, method, path, &[("Txn-Token", token)]);
        assert_eq!(r.status, 200, "{proxy}: {name}: {}", r.body);
        assert_eq!(upstream.last().method, method, "{proxy}: {name}");
    }
    tokens
}

fn checked_log(gate: &GateProc, tokens: &Tokens, proxy: &str) {
    let log = gate.log_text();
    tokens.assert_absent_from(&log, proxy);
    let denial = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["decision"] == "deny" && l["route"] == "orders-write")
        .unwrap_or_else(|| panic!("{proxy}: no denial line for orders-write in:\n{log}"));
    assert!(
        denial["txn"]
            .as_str()
            .is_some_and(|t| t.starts_with("txn-")),
        "{denial}"
    );
    assert!(
        denial["reason"]
            .as_str()
            .is_some_and(|r| r.contains("scope")),
        "{denial}"
    );
    for reason in [
        "token is expired",
        "signature is invalid",
        "no transaction token",
    ] {
        assert!(
            log.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|l| l["decision"] == "invalid" && l["reason"] == reason),
            "{proxy}: no invalid line with reason {reason:?}"
        );
    }
    let allowed = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["decision"] == "allow" && l["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        allowed.is_some(),
        "{proxy}: the traceparent's trace id is logged"
    );
}

#[test]
fn nginx_auth_request() {
    let Some(nginx) = proxy_binary("TXBRIDGE_NGINX", &on_path("nginx")) else {
        return;
    };
    let issuer = Issuer::start();
    let upstream = Upstream::start();
    let gate = GateProc::start(&gate_config(&issuer, ""), "trace");
    let (_nginx, front, _dir) = start_nginx(&nginx, gate.http, upstream.server.addr);
    let tokens = proxy_cases("nginx", front, &issuer, &upstream, 500);
    checked_log(&gate, &tokens, "nginx");
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExtAuthz {
    Http,
    Grpc,
}

fn envoy_config(mode: ExtAuthz, front: SocketAddr, gate: &GateProc, up: SocketAddr) -> String {
    let authz = match mode {
        ExtAuthz::Http => r#"
              # A 5xx of the gate (no keys at all) is an error to Envoy: answer it as 503.
              status_on_error: { code: ServiceUnavailable }
              http_service:
                server_uri: { uri: "http://gate", cluster: gate, timeout: 5s }
                path_prefix: /ext_authz
                authorization_request:
                  allowed_headers:
                    patterns: [ { exact: txn-token, ignore_case: true }, { exact: traceparent } ]
                authorization_response:
                  allowed_upstream_headers:
                    patterns: [ { prefix: x-txbridge- } ]
                  allowed_client_headers:
                    patterns: [ { exact: www-authenticate }, { exact: content-type }, { exact: retry-after } ]"#
            .to_owned(),
        ExtAuthz::Grpc => r#"
              grpc_service:
                envoy_grpc: { cluster_name: gate }
                timeout: 5s"#
            .to_owned(),
    };
    let (gate_addr, h2) = match mode {
        ExtAuthz::Http => (gate.http, false),
        ExtAuthz::Grpc => (gate.grpc, true),
    };
    let filter = format!(
        r#"
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false{authz}"#
    );
    support::envoy_config(front, &filter, up, gate_addr, h2)
}

fn envoy(mode: ExtAuthz) {
    let Some(envoy) = proxy_binary("TXBRIDGE_ENVOY", &envoy_candidates()) else {
        return;
    };
    let name = match mode {
        ExtAuthz::Http => "envoy (HTTP ext_authz)",
        ExtAuthz::Grpc => "envoy (gRPC ext_authz)",
    };
    let issuer = Issuer::start();
    let upstream = Upstream::start();
    let gate = GateProc::start(&gate_config(&issuer, ""), "trace");
    let dir = TempDir::new("envoy");
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(
        &path,
        envoy_config(mode, front, &gate, upstream.server.addr),
    )
    .unwrap();
    // A distinct base id per concurrent Envoy (its shared-memory region).
    let base_id = (std::process::id() % 10_000) * 10 + if mode == ExtAuthz::Http { 1 } else { 2 };
    let _envoy = start_proxy(
        name,
        Command::new(envoy)
            .arg("-c")
            .arg(&path)
            .args(["--log-level", "warn", "--base-id", &base_id.to_string()])
            .args(["--concurrency", "1", "--disable-hot-restart"]),
        front,
        &dir.path().join("envoy.out"),
    );
    let tokens = proxy_cases(name, front, &issuer, &upstream, 503);
    checked_log(&gate, &tokens, name);
}

#[test]
fn envoy_http_ext_authz() {
    envoy(ExtAuthz::Http);
}

#[test]
fn envoy_grpc_ext_authz() {
    envoy(ExtAuthz::Grpc);
}

#[test]
fn caddy_forward_auth() {
    let Some(caddy) = proxy_binary("TXBRIDGE_CADDY", &on_path("caddy")) else {
        return;
    };
    let issuer = Issuer::start();
    let upstream = Upstream::start();
    let gate = GateProc::start(&gate_config(&issuer, ""), "trace");
    let dir = TempDir::new("caddy");
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let w = dir.path().display();
    let conf = format!(
        r#"{{
	admin off
	auto_https off
	storage file_system {w}/storage
}}

http://{front} {{
	forward_auth {gate} {{
		uri /auth
		copy_headers X-Txbridge-Txn X-Txbridge-Sub X-Txbridge-Scope X-Txbridge-Req-Wl
	}}
	reverse_proxy {up}
}}
"#,
        gate = gate.http,
        up = upstream.server.addr,
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, conf).unwrap();
    let _caddy = start_proxy(
        "caddy",
        Command::new(caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config")),
        front,
        &dir.path().join("caddy.out"),
    );
    let tokens = proxy_cases("caddy", front, &issuer, &upstream, 503);
    checked_log(&gate, &tokens, "caddy");
}

// ---------------------------------------------------------------------------------------------
// The gate on its own.

fn auth(gate: &GateProc, method: &str, uri: &str, token: Option<&str>) -> Resp {
    let mut h = vec![("X-Original-Method", method), ("X-Original-URI", uri)];
    if let Some(t) = token {
        h.push(("Txn-Token", t));
    }
    request(gate.http, "GET", "/auth", &h)
}

#[test]
fn gate_endpoints_answers_and_metrics() {
    let issuer = Issuer::start();
    let gate = GateProc::start(&gate_config(&issuer, ""), "info");
    let token = issuer.token("orders:read");

    let r = request(gate.http, "GET", "/healthz", &[]);
    assert_eq!(r.status, 200);

    // Forward-auth: X-Original-* or X-Forwarded-*; without them 403.
    let r = auth(&gate, "GET", "/orders/1?q=1", Some(&token));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-txbridge-scope"), Some("orders:read"));
    assert!(
        r.header("x-txbridge-txn")
            .is_some_and(|t| t.starts_with("txn-"))
    );
    let r = request(
        gate.http,
        "POST",
        "/auth",
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/orders/1"),
            ("txn-token", &token),
        ],
    );
    assert_eq!(r.status, 200, "X-Forwarded-*: {}", r.body);
    let r = request(gate.http, "GET", "/auth", &[("Txn-Token", &token)]);
    assert_eq!(r.status, 403, "no original method and URI");
    assert_eq!(r.json()["error"], "insufficient_scope");

    // Envoy's HTTP ext_authz shape: the method and path are the request's own.
    let r = request(
        gate.http,
        "GET",
        "/ext_authz/orders/1?x=y",
        &[("Txn-Token", &token)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = request(
        gate.http,
        "POST",
        "/ext_authz/orders/1",
        &[("Txn-Token", &token)],
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "insufficient_scope");

    // 401 answers: JSON body and WWW-Authenticate.
    let r = auth(&gate, "GET", "/orders/1", None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_token");
    assert!(r.json()["error_description"].is_string());
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.contains("invalid_token"))
    );
    // Two token headers: refused.
    let r = request(
        gate.http,
        "GET",
        "/auth",
        &[
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/orders/1"),
            ("Txn-Token", &token),
            ("Txn-Token", &token),
        ],
    );
    assert_eq!(r.status, 401, "duplicate token headers");
    // A path that could mean another upstream: refused.
    let r = auth(&gate, "GET", "/payments/../orders/1", Some(&token));
    assert_eq!(r.status, 403);
    let r = auth(&gate, "GET", "/%6Frders/1", Some(&token));
    assert_eq!(
        r.status, 200,
        "unreserved escapes are decoded before matching"
    );

    // Metrics moved.
    assert_eq!(
        gate.metric("txbridge_gate_decisions_total{decision=\"allow\",route=\"orders-read\"}"),
        4
    );
    assert_eq!(
        gate.metric("txbridge_gate_decisions_total{decision=\"invalid\",route=\"orders-read\"}"),
        2
    );
    assert_eq!(
        gate.metric("txbridge_gate_decisions_total{decision=\"deny\",route=\"\"}"),
        2
    );
    assert_eq!(
        gate.metric("txbridge_gate_decisions_total{decision=\"deny\",route=\"orders-write\"}"),
        1,
        "POST with a read-only token"
    );
    assert_eq!(
        gate.metric("txbridge_gate_decision_duration_seconds_count{decision=\"allow\"}"),
        4
    );
    assert_eq!(
        gate.metric("txbridge_key_fetches_total{cluster=\"txtoken-service\",result=\"ok\"}"),
        1,
        "one key fetch for all of it"
    );
    let r = request(gate.http, "GET", "/metrics", &[]);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    assert!(
        r.body
            .contains("# TYPE txbridge_gate_decision_duration_seconds histogram")
    );
}

#[test]
fn default_verify_allows_any_valid_token() {
    let issuer = Issuer::start();
    let gate = GateProc::start(&gate_config(&issuer, "default = \"verify\""), "info");
    let token = issuer.token("nothing:special");
    assert_eq!(
        auth(&gate, "DELETE", "/anything/at/all", Some(&token)).status,
        200
    );
    assert_eq!(auth(&gate, "GET", "/anything", Some("garbage")).status, 401);
    // A matching route still decides.
    assert_eq!(auth(&gate, "GET", "/orders/1", Some(&token)).status, 403);
}

#[test]
fn keys_unavailable_is_503_never_500_and_bad_tokens_stay_401() {
    let issuer = Issuer::start();
    *issuer.mode.lock().unwrap() = JwksMode::Fail;
    let gate = GateProc::start(&gate_config(&issuer, ""), "info");
    let token = issuer.token("orders:read");
    let r = auth(&gate, "GET", "/orders/1", Some(&token));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(r.header("retry-after").is_some());
    let r = request(
        gate.http,
        "GET",
        "/ext_authz/orders/1",
        &[("Txn-Token", &token)],
    );
    assert_eq!(r.status, 503);
    // A bad token is refused before any key is needed: never a 5xx.
    for bad in ["garbage", "a.b.c"] {
        assert_eq!(
            auth(&gate, "GET", "/orders/1", Some(bad)).status,
            401,
            "{bad}"
        );
    }
    assert_eq!(auth(&gate, "GET", "/orders/1", None).status, 401);
    assert!(
        gate.metric(
            "txbridge_gate_decisions_total{decision=\"unavailable\",route=\"orders-read\"}"
        ) >= 2
    );

    assert!(
        gate.metric("txbridge_key_fetches_total{cluster=\"txtoken-service\",result=\"status\"}")
            >= 1
    );

    // The issuer comes back: after the back-off, keys are had and the token passes.
    *issuer.mode.lock().unwrap() = JwksMode::Serve;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = auth(&gate, "GET", "/orders/1", Some(&token));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(std::time::Instant::now() < deadline, "keys never came back");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn unknown_kids_in_a_row_are_401_never_503_and_a_rotated_key_is_found() {
    let issuer = Issuer::start();
    let gate = GateProc::start(&gate_config(&issuer, ""), "info");
    assert_eq!(
        auth(
            &gate,
            "GET",
            "/orders/1",
            Some(&issuer.token("orders:read"))
        )
        .status,
        200
    );
    let hits = issuer.jwks_hits.load(Ordering::SeqCst);
    for i in 0..6 {
        let k = LocalSigner::generate();
        let header = json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": k.key_id()});
        let t = Issuer::sign_with(&k, &header, &issuer.claims("orders:read"));
        let r = auth(&gate, "GET", "/orders/1", Some(&t));
        assert_eq!(r.status, 401, "unknown kid #{i}: {}", r.body);
    }
    assert!(
        issuer.jwks_hits.load(Ordering::SeqCst) <= hits + 1,
        "at most one refresh per interval for unknown kids"
    );
    assert_eq!(
        gate.metric(
            "txbridge_gate_decisions_total{decision=\"unavailable\",route=\"orders-read\"}"
        ),
        0
    );

    // The issuer rotates to a new key: once the refresh interval (10 s) has passed since the
    // last unknown-kid refresh, its tokens verify.
    let next = LocalSigner::generate();
    issuer
        .published
        .lock()
        .unwrap()
        .push(serde_json::to_value(next.public_jwk()).unwrap());
    let header = json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": next.key_id()});
    let t = Issuer::sign_with(&next, &header, &issuer.claims("orders:read"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    loop {
        let r = auth(&gate, "GET", "/orders/1", Some(&t));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated key was never found"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn a_bad_config_refuses_to_start_naming_key_and_line_not_value() {
    let dir = TempDir::new("badconfig");
    let secret = "s3cr3t-do-not-print";
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "issuer = \"https://tts.example.test\"\n\n[[routes]]\npath = \"{secret}\"\nscopes = [\"a b\"]\n"
        ),
    )
    .unwrap();
    for via_env in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_txbridge-gate"));
        if via_env {
            cmd.env("TXBRIDGE_GATE_CONFIG", &cfg);
        } else {
            cmd.arg("--config").arg(&cfg);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("routes[0].path") && err.contains("(line 4)"),
            "{err}"
        );
        assert!(
            err.contains("routes[0].scopes[0]") && err.contains("(line 5)"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "the value is echoed: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_txbridge-gate"))
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
