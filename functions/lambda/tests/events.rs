//! Handler-level tests from lambda_http event fixtures: Function URL (payload 2.0), API Gateway
//! HTTP API (v2, base64 body) and REST API (v1, stage prefix, base64 body). The fixtures carry
//! placeholders for the form body, filled with a real subject token signed by an in-test key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use txbridge_core::{Clock, Config, HttpClient, HttpError, KeySet, TxBridge};
use txbridge_signer::LocalSigner;

const ISS: &str = "https://issuer.example.test";
const JWKS: &str = "https://issuer.example.test/openid/v1/jwks";

struct Issuer(Value);

#[async_trait::async_trait]
impl HttpClient for Issuer {
    async fn execute(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        assert_eq!(req.uri().to_string(), JWKS);
        Ok(http::Response::new(serde_json::to_vec(&self.0).unwrap()))
    }
}

struct Now(u64);
impl Clock for Now {
    fn now(&self) -> u64 {
        self.0
    }
}

fn world() -> (TxBridge, String, Value) {
    let now = 1_800_000_000;
    let sk = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let mut jwk: Value = serde_json::from_str(&sk.public_key().to_jwk_string()).unwrap();
    jwk["kid"] = json!("k1");
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
"#
    ))
    .unwrap();
    let signer = Arc::new(LocalSigner::generate());
    let keys = KeySet::new(signer, vec![]).unwrap();
    let jwks = keys.jwks();
    let bridge = TxBridge::new(
        config,
        keys,
        Arc::new(Issuer(json!({"keys": [jwk]}))),
        Arc::new(Now(now)),
    );
    let header = B64.encode(br#"{"alg":"ES256","kid":"k1"}"#);
    let claims = B64.encode(serde_json::to_vec(&json!({
        "iss": ISS, "sub": "system:serviceaccount:payments:checkout", "aud": ["txbridge"],
        "exp": now + 600, "iat": now - 5, "nbf": now - 5,
        "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "checkout", "uid": "u"}}
    })).unwrap());
    let sig: p256::ecdsa::Signature =
        p256::ecdsa::SigningKey::from(&sk).sign(format!("{header}.{claims}").as_bytes());
    let token = format!("{header}.{claims}.{}", B64.encode(sig.to_bytes()));
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

fn event(name: &str, form: &str) -> lambda_http::Request {
    let path = format!("{}/tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("__FORM_B64__", &STANDARD.encode(form))
        .replace("__FORM__", form);
    lambda_http::request::from_str(&text).unwrap()
}

fn claims_of(body: &Value) -> Value {
    let token = body["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
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
    let c = claims_of(&body);
    assert_eq!(c["rctx"]["req_ip"], "198.51.100.23");
    assert_eq!(c["req_wl"], "payments/checkout-web");
    assert_eq!(c["sub"], "prod:system:serviceaccount:payments:checkout");
}

#[tokio::test]
async fn api_gateway_v2_base64_body() {
    let (bridge, form, _) = world();
    let (status, body) = run(&bridge, event("apigw-v2-base64.json", &form)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(claims_of(&body)["rctx"]["req_ip"], "203.0.113.9");
}

#[tokio::test]
async fn api_gateway_v1_stage_and_base64_body() {
    let (bridge, form, jwks) = world();
    let (status, body) = run(&bridge, event("apigw-v1-stage.json", &form)).await;
    assert_eq!(status, 200, "{body}");
    let c = claims_of(&body);
    assert_eq!(c["rctx"]["req_ip"], "192.0.2.44");
    assert_eq!(c["req_wl"], "spiffe://example/ns/payments/sa/web");
    let (status, doc) = run(&bridge, event("apigw-v1-get-jwks.json", "")).await;
    assert_eq!(status, 200);
    assert_eq!(doc, jwks);
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
