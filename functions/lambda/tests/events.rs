//! Handler-level tests from lambda_http event fixtures: Function URL (payload 2.0), API Gateway
//! HTTP API (v2, base64 body) and REST API (v1, stage prefix, base64 body). The fixtures carry
//! placeholders for the form body, filled with a real subject token signed by an in-test key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use txbridge_core::{Config, TxBridge};
use txbridge_signer::{KeySet, LocalSigner};
use txbridge_test_support::{FixedClock, FnHttp, TestRuntime, claims_of, craft, ec_key};

const ISS: &str = "https://issuer.example.test";
const JWKS: &str = "https://issuer.example.test/openid/v1/jwks";

fn world() -> (TxBridge, String, Value) {
    let now = 1_800_000_000;
    let key = ec_key();
    let jwks_doc = serde_json::to_vec(&json!({"keys": [key.public_jwk("k1")]})).unwrap();
    let issuer = FnHttp::new(move |req| {
        assert_eq!(req.uri().to_string(), JWKS);
        Ok(http::Response::new(jwks_doc.clone()))
    });
    let config = Config::from_toml_str(&format!(
        r#"issuer = "https://tts.example.test"
[[clusters]]
name = "prod"
issuer = "{ISS}"
jwks_url = "{JWKS}"
audiences = ["txbridge"]
[[policies]]
cluster = "prod"
namespace = "payments"
service_account = "checkout"
scopes = ["orders:read"]
workloads = ["payments/checkout-web", "spiffe://example/ns/payments/sa/*"]
"#
    ))
    .unwrap();
    let signer = Arc::new(LocalSigner::generate());
    let keys = KeySet::new(signer, vec![]).unwrap();
    let jwks = keys.jwks();
    // Keys are fetched cold (no waiting, no background refresh in these tests).
    let bridge = TxBridge::new(
        config,
        keys,
        Arc::new(issuer),
        Arc::new(FixedClock::at(now)),
        Arc::new(TestRuntime::immediate()),
    );
    let token = craft(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({
            "iss": ISS, "sub": "system:serviceaccount:payments:checkout", "aud": ["txbridge"],
            "exp": now + 600, "iat": now - 5, "nbf": now - 5,
            "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "checkout", "uid": "u"}}
        }),
        &key,
    );
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )
        .append_pair("subject_token", &token)
        .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
        .append_pair("scope", "orders:read")
        .finish();
    (bridge, form, jwks)
}

fn event_text(name: &str, form: &str) -> String {
    let path = format!("{}/tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .replace("__FORM_B64__", &STANDARD.encode(form))
        .replace("__FORM__", form)
}

fn event(name: &str, form: &str) -> lambda_http::Request {
    lambda_http::request::from_str(&event_text(name, form)).unwrap()
}

fn claims_of_body(body: &Value) -> Value {
    claims_of(body["access_token"].as_str().unwrap())
}

async fn run(bridge: &TxBridge, req: lambda_http::Request) -> (u16, Value) {
    let resp = txbridge_lambda::handle(bridge, req, None).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
        lambda_http::Body::Binary(b) => serde_json::from_slice(b).unwrap(),
        _ => Value::Null,
    };
    (status, body)
}

#[tokio::test]
async fn function_url_event() {
    let (bridge, form, _) = world();
    let (status, body) = run(&bridge, event("function-url.json", &form)).await;
    assert_eq!(status, 200, "{body}");
    let c = claims_of_body(&body);
    assert_eq!(c["rctx"]["req_ip"], "198.51.100.23");
    assert_eq!(c["req_wl"], "payments/checkout-web");
    assert_eq!(c["sub"], "prod:system:serviceaccount:payments:checkout");
}

#[tokio::test]
async fn api_gateway_v2_base64_body() {
    let (bridge, form, _) = world();
    let (status, body) = run(&bridge, event("apigw-v2-base64.json", &form)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(claims_of_body(&body)["rctx"]["req_ip"], "203.0.113.9");
}

#[tokio::test]
async fn api_gateway_v1_stage_and_base64_body() {
    let (bridge, form, jwks) = world();
    let (status, body) = run(&bridge, event("apigw-v1-stage.json", &form)).await;
    assert_eq!(status, 200, "{body}");
    let c = claims_of_body(&body);
    assert_eq!(c["rctx"]["req_ip"], "192.0.2.44");
    assert_eq!(c["req_wl"], "spiffe://example/ns/payments/sa/web");
    let (status, doc) = run(&bridge, event("apigw-v1-get-jwks.json", "")).await;
    assert_eq!(status, 200);
    assert_eq!(doc, jwks);
}

/// A custom-domain base path mapping (`TXBRIDGE_BASE_PATH`) is stripped on a whole segment only;
/// the query string stays.
#[test]
fn base_path_is_stripped_on_a_whole_segment() {
    let cases = [
        ("/token", None, "/token"),
        ("/tts/token", Some("/tts"), "/token"),
        ("/tts/token", Some("/tts/"), "/token"),
        ("/tts", Some("/tts"), "/"),
        ("/ttsx/token", Some("/tts"), "/ttsx/token"),
        ("/token", Some(""), "/token"),
        (
            "/tts/.well-known/jwks.json?v=2",
            Some("/tts"),
            "/.well-known/jwks.json?v=2",
        ),
        ("/tts?v=2", Some("/tts"), "/?v=2"),
        ("/token?v=2", None, "/token?v=2"),
    ];
    for (path, base, want) in cases {
        let req = lambda_http::http::Request::get(path)
            .body(lambda_http::Body::Empty)
            .unwrap();
        let got = txbridge_lambda::to_core_request(req, base);
        let got = got.uri().path_and_query().map(|p| p.as_str());
        assert_eq!(got, Some(want), "{path} {base:?}");
    }
}

#[tokio::test]
async fn bad_body_through_an_event_is_an_oauth_error() {
    let (bridge, _, _) = world();
    let (status, body) = run(&bridge, event("function-url.json", "grant_type=password")).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "unsupported_grant_type")
    );
}

/// A Function URL (payload 2.0) joins repeated headers with commas: a request that named its
/// workload twice arrives as one comma-separated value, which is refused like a forged chain.
#[tokio::test]
async fn repeated_workload_headers_arrive_joined_and_are_refused() {
    let (bridge, form, _) = world();
    let text = event_text("function-url.json", &form).replace(
        "\"x-txbridge-workload\": \"payments/checkout-web\"",
        "\"x-txbridge-workload\": \"payments/checkout-web,payments/checkout-web\"",
    );
    assert!(text.contains("checkout-web,payments"));
    let (status, body) = run(&bridge, lambda_http::request::from_str(&text).unwrap()).await;
    assert_eq!(
        (
            status,
            body["error"].as_str(),
            body["error_description"].as_str()
        ),
        (
            400,
            Some("invalid_request"),
            Some("workload not authorized")
        ),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
}

/// Built without the `kms` feature (`--no-default-features --features aws-lc`, a `local`-signer
/// deployment), a config naming a KMS signer does not start: a start-up error that names the
/// feature (the function logs it and answers 503), not a panic.
#[cfg(not(feature = "kms"))]
#[tokio::test]
async fn kms_signer_without_the_kms_feature_is_a_startup_error() {
    let config = Config::from_toml_str(&format!(
        r#"issuer = "https://tts.example.test"
[signer]
kind = "kms"
key_id = "alias/txbridge"
[[clusters]]
name = "prod"
issuer = "{ISS}"
jwks_url = "{JWKS}"
audiences = ["txbridge"]
"#
    ))
    .unwrap();
    let err = txbridge_lambda::build(config, None).await.unwrap_err();
    assert!(
        matches!(err, txbridge_lambda::StartupError::Signer(_)),
        "{err}"
    );
    assert!(err.to_string().contains("feature `kms`"), "{err}");
}
