//! The tower middleware in front of an axum router, driven with `ServiceExt::oneshot`: enforce
//! (401/403/503, the inner service not called) and audit (everything through, the would-deny
//! decision logged with txn and reason, never the token).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use serde_json::json;
use tower::ServiceExt as _;
use txbridge_test_support::*;
use txbridge_verifier::layer::{Mode, TxnTokenLayer, WouldDeny};
use txbridge_verifier::{Requirements, TxTokenClaims, Verifier};

/// Answers with the verified txn from the request extensions, or "none", and in audit mode the
/// reason the request would have been denied.
async fn whoami(req: Request) -> String {
    let who = req
        .extensions()
        .get::<TxTokenClaims>()
        .map_or_else(|| "none".to_owned(), |c| c.txn.clone());
    match req.extensions().get::<WouldDeny>() {
        Some(WouldDeny(reason)) => format!("{who} WOULD-DENY: {reason}"),
        None => who,
    }
}

async fn issue(w: &World) -> (String, String) {
    let mut f = form(&w.beta_token("payments", "checkout"));
    f.push(("scope", "orders:read".into()));
    f.push(("request_details", r#"{"order":"42"}"#.into()));
    let (status, body, _) = w.exchange(&pairs(&f)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let v = static_verifier(w).await;
    let txn = v.verify(&token).await.unwrap().txn;
    (token, txn)
}

async fn static_verifier(w: &World) -> Verifier {
    let req = http::Request::get("/.well-known/jwks.json")
        .body(Vec::new())
        .unwrap();
    let jwks = w.bridge.handle(req).await.into_body();
    Verifier::builder(TD, TD)
        .clock(w.clock.clone())
        .build_static(&jwks)
        .unwrap()
}

async fn call(app: Router, headers: &[&str]) -> (u16, String) {
    let mut req = http::Request::get("/");
    for h in headers {
        req = req.header("txn-token", *h);
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn app(verifier: Arc<Verifier>, reqs: Requirements, mode: Mode) -> Router {
    Router::new()
        .route("/", get(whoami))
        .layer(TxnTokenLayer::new(verifier, reqs, mode))
}

struct Case {
    name: &'static str,
    headers: Vec<String>,
    reqs: Requirements,
    enforce_status: u16,
}

fn cases(token: &str) -> Vec<Case> {
    let read = || Requirements::new().scope("orders:read");
    let case = |name, headers: Vec<String>, reqs, enforce_status| Case {
        name,
        headers,
        reqs,
        enforce_status,
    };
    vec![
        case("valid", vec![token.into()], read(), 200),
        case(
            "valid, tctx constraint holds",
            vec![token.into()],
            read().tctx("order", json!("42")),
            200,
        ),
        case("missing", vec![], read(), 401),
        case("garbage", vec!["a.b.c".into()], read(), 401),
        case("two headers", vec![token.into(), token.into()], read(), 401),
        case(
            "tampered",
            vec![format!("{}x", &token[..token.len() - 1])],
            read(),
            401,
        ),
        case(
            "scope missing",
            vec![token.into()],
            Requirements::new().scope("orders:write"),
            403,
        ),
        case(
            "tctx mismatch",
            vec![token.into()],
            read().tctx("order", json!("43")),
            403,
        ),
    ]
}

#[tokio::test]
async fn enforce_mode() {
    let w = World::new();
    let (token, txn) = issue(&w).await;
    let verifier = Arc::new(static_verifier(&w).await);
    for c in cases(&token) {
        let headers: Vec<&str> = c.headers.iter().map(String::as_str).collect();
        let (status, body) = call(app(verifier.clone(), c.reqs, Mode::Enforce), &headers).await;
        assert_eq!(status, c.enforce_status, "{}", c.name);
        if status == 200 {
            assert_eq!(body, txn, "{}: claims reach the handler", c.name);
        } else {
            assert!(body.is_empty(), "{}: inner service not called", c.name);
        }
    }
}

#[tokio::test]
async fn enforce_mode_keys_unavailable_is_503() {
    let w = World::new();
    let (token, _) = issue(&w).await;
    w.routes.set(
        "https://tts.example.test/.well-known/openid-configuration",
        Upstream::Fail,
    );
    let remote = Verifier::builder(TD, TD)
        .clock(w.clock.clone())
        .runtime(w.runtime.clone())
        .build(w.http.clone())
        .unwrap();
    let (status, _) = call(
        app(Arc::new(remote), Requirements::new(), Mode::Enforce),
        &[&token],
    )
    .await;
    assert_eq!(status, 503);
}

/// Collects everything the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn audit_mode_lets_everything_through_and_logs_the_decision() {
    let w = World::new();
    let (token, txn) = issue(&w).await;
    let verifier = Arc::new(static_verifier(&w).await);
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for c in cases(&token) {
        let before = logs.0.lock().unwrap().len();
        let headers: Vec<&str> = c.headers.iter().map(String::as_str).collect();
        let (status, body) = call(app(verifier.clone(), c.reqs, Mode::Audit), &headers).await;
        assert_eq!(status, 200, "{}: audit never blocks", c.name);
        let logged = String::from_utf8(logs.0.lock().unwrap()[before..].to_vec()).unwrap();
        match c.enforce_status {
            200 => {
                assert_eq!(body, txn, "{}", c.name);
                assert!(logged.is_empty(), "{}: nothing to report: {logged}", c.name);
            }
            403 => {
                // Genuine claims still reach the handler, marked as not an authorization, with
                // the requirement they failed; the log names the txn.
                assert!(
                    body.starts_with(&format!("{txn} WOULD-DENY: ")),
                    "{}: {body}",
                    c.name
                );
                assert!(
                    body.contains("scope") || body.contains("context"),
                    "{}: the failed requirement: {body}",
                    c.name
                );
                assert!(logged.contains("would be denied"), "{}: {logged}", c.name);
                assert!(logged.contains(&txn), "{}: txn logged: {logged}", c.name);
            }
            _ => {
                assert!(
                    body.starts_with("none WOULD-DENY: "),
                    "{}: no claims for an invalid token, and the reason: {body}",
                    c.name
                );
                assert!(logged.contains("would be denied"), "{}: {logged}", c.name);
                assert!(logged.contains("reason="), "{}: {logged}", c.name);
            }
        }
    }
    let all = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for part in token.split('.') {
        assert!(!all.contains(part), "a piece of the token was logged");
    }
}
