//! Replacement TxTokens through the core handler (`subject_token_type` txn_token): the rules of
//! `txbridge_core::replace`, one table row per rule, each with its exact OAuth error code. The
//! replacing workload authenticates with its own SA token (`actor_token`): alpha orders/worker,
//! allowed by its own policy (`workloads = ["svc-*"]`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use futures::executor::block_on;
use serde_json::{Value, json};
use txbridge_core::{Config, TxBridge};
use txbridge_signer::KeySet;
use txbridge_signer::{LocalSigner, Signer as _};
use txbridge_test_support::*;

const TXN: &str = "urn:ietf:params:oauth:token-type:txn_token";

/// An SA-token exchange whose TxToken the cases replace: scope orders:read, details, context.
fn original(w: &World) -> (String, Value) {
    let mut f = form(&w.beta_token("payments", "checkout"));
    f.push(("scope", "orders:read".into()));
    f.push(("request_details", r#"{"order":"42"}"#.into()));
    f.push(("request_context", r#"{"purpose":"checkout"}"#.into()));
    let (status, body, _) = block_on(w.exchange_with(&pairs(&f), |req| {
        req.headers_mut()
            .insert("x-txbridge-workload", "web".parse().unwrap());
    }));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&token);
    (token, claims)
}

/// The replacement form for a TxToken, without an actor.
fn bare_replace_form(token: &str) -> Vec<(&'static str, String)> {
    let mut f = form(token);
    f[2].1 = TXN.into();
    f
}

/// The SA token of the replacing workload (`alpha:orders:worker`).
fn actor_token(w: &World) -> String {
    w.alpha_token("orders", "worker")
}

fn with_actor(mut f: Vec<(&'static str, String)>, actor: &str) -> Vec<(&'static str, String)> {
    f.push(("actor_token", actor.into()));
    f.push((
        "actor_token_type",
        "urn:ietf:params:oauth:token-type:jwt".into(),
    ));
    f
}

/// The replacement form for a TxToken, the actor authenticated by its SA token.
fn replace_form(w: &World, token: &str) -> Vec<(&'static str, String)> {
    with_actor(bare_replace_form(token), &actor_token(w))
}

/// POSTs a token request to `bridge`, optionally naming the requesting workload.
async fn post(
    bridge: &TxBridge,
    form: &[(&'static str, String)],
    workload: Option<&str>,
) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs(form))
        .finish();
    let mut req =
        http::Request::post("/token").header("content-type", "application/x-www-form-urlencoded");
    if let Some(wl) = workload {
        req = req.header("x-txbridge-workload", wl);
    }
    let resp = bridge.handle(req.body(body.into_bytes()).unwrap()).await;
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
    )
}

fn jwks(bridge: &TxBridge) -> Value {
    let req = http::Request::get("/.well-known/jwks.json")
        .body(Vec::new())
        .unwrap();
    serde_json::from_slice(block_on(bridge.handle(req)).body()).unwrap()
}

/// Another service instance on the same clock and issuers, with its own config and keys.
fn bridge_with(w: &World, toml: &str, keys: KeySet) -> TxBridge {
    TxBridge::new(
        Config::from_toml_str(toml).unwrap(),
        keys,
        w.http.clone(),
        w.clock.clone(),
        w.runtime.clone(),
    )
}

#[test]
fn replacement_keeps_txn_sub_tctx_and_never_extends_exp() {
    let w = World::new();
    let (token, orig) = original(&w);
    w.set_now(NOW + 100);
    let mut f = replace_form(&w, &token);
    f.push(("scope", "orders:read".into()));
    f.push(("audience", TD.into()));
    let (status, body) = block_on(post(&w.bridge, &f, Some("svc-b")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], TXN);
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["scope"], "orders:read");
    assert_eq!(body["expires_in"], 200, "exp stays the original's");
    let (header, c) = verify_txtoken(&jwks(&w.bridge), body["access_token"].as_str().unwrap());
    assert_eq!(header.typ.as_deref(), Some("txntoken+jwt"));
    assert_eq!(header.kid.as_deref(), Some(w.signer.key_id()));
    for same in ["iss", "aud", "txn", "sub", "tctx", "exp"] {
        assert_eq!(c[same], orig[same], "{same} unchanged");
    }
    assert_eq!(c["iat"], NOW + 100);
    assert_eq!(c["req_wl"], "web,svc-b", "call chain kept");
    assert_eq!(c["rctx"]["req_wl"], "web,svc-b");
    assert_eq!(c["rctx"]["purpose"], "checkout");
    assert_eq!(c["rctx"]["authn"], "urn:ietf:params:oauth:token-type:jwt");

    // A replaced token can be replaced again; every replacement is a hop of the chain. Without
    // a header, the actor's own workload id is recorded.
    let t2 = body["access_token"].as_str().unwrap();
    let (status, body) = block_on(post(&w.bridge, &replace_form(&w, t2), None));
    assert_eq!(status, 200, "{body}");
    let c2 = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        (&c2["txn"], &c2["req_wl"]),
        (&orig["txn"], &json!("web,svc-b,alpha:orders:worker"))
    );
}

/// Contract v3: a replacement chain that grows the token with `request_context` additions ends
/// with invalid_request "transaction token too large", never with a token over the 8 KiB that
/// the service (replacing it) and consumers accept; every token issued on the way is replaceable.
#[test]
fn a_growing_chain_never_issues_an_oversized_token() {
    let w = World::new();
    let (mut token, _) = original(&w);
    for hop in 0.. {
        let mut f = replace_form(&w, &token);
        f.push((
            "request_context",
            json!({ format!("note{hop}"): "n".repeat(1_500) }).to_string(),
        ));
        let (status, body) = block_on(post(&w.bridge, &f, Some("svc-x")));
        if status != 200 {
            assert_eq!(
                (
                    status,
                    body["error"].as_str(),
                    body["error_description"].as_str()
                ),
                (
                    400,
                    Some("invalid_request"),
                    Some("transaction token too large")
                ),
                "hop {hop}: {body}"
            );
            assert!(hop >= 2, "the first replacements fit: hop {hop}");
            break;
        }
        token = body["access_token"].as_str().unwrap().to_owned();
        assert!(token.len() <= 8 * 1024, "hop {hop}: {} bytes", token.len());
        assert!(hop < 16, "the chain should have outgrown the bound");
    }
}

#[test]
fn the_call_chain_is_capped_at_16_entries() {
    let w = World::new();
    let (mut token, _) = original(&w);
    // The original request is entry 1; 15 replacements fill the chain.
    for hop in 2..=16 {
        let (status, body) = block_on(post(&w.bridge, &replace_form(&w, &token), Some("svc-x")));
        assert_eq!(status, 200, "hop {hop}: {body}");
        token = body["access_token"].as_str().unwrap().to_owned();
        let chain = claims_of(&token)["req_wl"].as_str().unwrap().to_owned();
        assert_eq!(chain.split(',').count(), hop);
    }
    let (status, body) = block_on(post(&w.bridge, &replace_form(&w, &token), Some("svc-x")));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
}

#[test]
fn exp_is_capped_by_the_lifetime_too() {
    let w = World::new();
    let (token, orig) = original(&w);
    assert_eq!(orig["exp"], NOW + 300);
    // Now + lifetime is later than the original exp: the original exp wins.
    w.set_now(NOW + 1);
    let (_, body) = block_on(post(&w.bridge, &replace_form(&w, &token), None));
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["exp"],
        NOW + 300
    );
    // A service with a shorter lifetime caps the replacement at now + lifetime.
    let short = bridge_with(
        &w,
        &config_toml("").replace("token_lifetime = \"5m\"", "token_lifetime = \"1m\""),
        KeySet::new(w.signer.clone(), vec![]).unwrap(),
    );
    let (status, body) = block_on(post(&short, &replace_form(&w, &token), None));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 60);
}

#[test]
fn defaults_and_accepted_request_details() {
    let w = World::new();
    let (token, orig) = original(&w);
    let tctx = serde_json::to_string(&orig["tctx"]).unwrap();
    let cases: &[(&str, Vec<(&'static str, String)>)] = &[
        ("no scope, no details", vec![]),
        (
            "the original request_details",
            vec![("request_details", r#"{"order":"42"}"#.into())],
        ),
        ("the tctx itself", vec![("request_details", tctx)]),
        (
            "a new request_context key",
            vec![("request_context", r#"{"hop":"b"}"#.into())],
        ),
    ];
    for (name, extra) in cases {
        let mut f = replace_form(&w, &token);
        f.extend(extra.iter().cloned());
        let (status, body) = block_on(post(&w.bridge, &f, None));
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["scope"], "orders:read", "{name}");
        let c = claims_of(body["access_token"].as_str().unwrap());
        assert_eq!(c["tctx"], orig["tctx"], "{name}");
        assert_eq!(
            c["req_wl"], "web,alpha:orders:worker",
            "{name}: no header, the actor's own workload id is the new hop"
        );
    }
}

/// The reason each rejection must give (by case-name prefix).
const WHY: &[(&str, &str)] = &[
    ("scope", "scope"),
    ("wrong audience", "audience"),
    ("request_details", "transaction context"),
    ("request_context", "reserved claim"),
    ("expired", "expired"),
    ("tampered", "signature is invalid"),
    ("signed by another", "signing key is unknown"),
    ("an SA token", "token type"),
    ("garbage", "compact JWS"),
    ("workload", "workload not authorized"),
    ("no actor", "requires an actor_token"),
    ("actor token", "invalid actor token"),
    ("actor not allowed", "actor not authorized"),
    ("actor type", "actor_token_type"),
    ("a previous key", "not signed by the active key"),
];

#[test]
fn rejections() {
    let w = World::new();
    let (token, orig) = original(&w);
    let (head, payload_sig) = token.split_once('.').unwrap();
    let (_, sig) = payload_sig.split_once('.').unwrap();
    let mut tampered_claims = orig.clone();
    tampered_claims["scope"] = json!("orders:read orders:write");
    let tampered = format!(
        "{head}.{}.{sig}",
        B64.encode(serde_json::to_vec(&tampered_claims).unwrap())
    );
    let foreign = {
        // Same config and claims, another service's key.
        let other = Arc::new(LocalSigner::generate());
        let b = bridge_with(&w, &config_toml(""), KeySet::new(other, vec![]).unwrap());
        let (status, body) = block_on(post(&b, &form(&w.beta_token("payments", "checkout")), None));
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    };
    let sa_token = w.beta_token("payments", "checkout");

    let actor = actor_token(&w);
    let previous_key_token = {
        // This service's token, from before its key rotated (the key is still published).
        let (old, _) = original(&w);
        old
    };
    let rotated = Arc::new(LocalSigner::generate());
    let rotated_bridge = bridge_with(
        &w,
        &config_toml(""),
        KeySet::new(rotated, vec![w.signer.public_jwk().clone()]).unwrap(),
    );

    struct Case {
        name: &'static str,
        token: String,
        extra: Vec<(&'static str, String)>,
        /// The actor_token; none when empty.
        actor: String,
        workload: Option<&'static str>,
        at: u64,
        code: &'static str,
        rotated: bool,
    }
    let case = |name, extra: &[(&'static str, &str)], code| Case {
        name,
        token: token.clone(),
        extra: extra.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        actor: actor.clone(),
        workload: None,
        at: NOW,
        code,
        rotated: false,
    };
    let mut expired_actor = sa_claims(ALPHA_ISS, "orders", "worker");
    expired_actor["exp"] = json!(NOW - 60);
    expired_actor["iat"] = json!(NOW - 600);
    let expired_actor = craft(
        &json!({"alg": "RS256", "kid": "a1"}),
        &expired_actor,
        &w.alpha,
    );
    let cases = vec![
        case(
            "scope beyond the original (and the ceiling)",
            &[("scope", "orders:read admin")],
            "invalid_scope",
        ),
        case(
            "scope within the ceiling but beyond the original",
            &[("scope", "orders:read orders:write")],
            "invalid_scope",
        ),
        case(
            "wrong audience parameter",
            &[("audience", "https://elsewhere.example")],
            "invalid_target",
        ),
        case(
            "request_details changes a value",
            &[("request_details", r#"{"order":"43"}"#)],
            "invalid_request",
        ),
        case(
            "request_details drops a value",
            &[("request_details", r#"{"namespace":"payments"}"#)],
            "invalid_request",
        ),
        case(
            "request_details adds a value",
            &[("request_details", r#"{"order":"42","x":1}"#)],
            "invalid_request",
        ),
        case(
            "request_details names another namespace",
            &[("request_details", r#"{"order":"42","namespace":"other"}"#)],
            "invalid_request",
        ),
        case(
            "request_context replaces an asserted value",
            &[("request_context", r#"{"purpose":"other"}"#)],
            "invalid_request",
        ),
        case(
            "request_context sets a reserved claim",
            &[("request_context", r#"{"req_ip":"192.0.2.1"}"#)],
            "invalid_request",
        ),
        Case {
            at: NOW + 300,
            ..case("expired (exactly at exp)", &[], "invalid_request")
        },
        Case {
            at: NOW + 310,
            ..case("expired (within the leeway)", &[], "invalid_request")
        },
        Case {
            at: NOW + 1000,
            ..case("expired (long ago)", &[], "invalid_request")
        },
        Case {
            token: tampered.clone(),
            ..case("tampered claims", &[], "invalid_request")
        },
        Case {
            token: format!("{head}.{}", payload_sig.replace('.', ".x")),
            ..case("tampered signature", &[], "invalid_request")
        },
        Case {
            token: foreign.clone(),
            ..case("signed by another service's key", &[], "invalid_request")
        },
        Case {
            token: sa_token.clone(),
            ..case("an SA token as a txn_token", &[], "invalid_request")
        },
        Case {
            token: "not-a-token".into(),
            ..case("garbage", &[], "invalid_request")
        },
        Case {
            workload: Some("a,b"),
            ..case("workload name with a comma", &[], "invalid_request")
        },
        Case {
            workload: Some("svc-a,svc-b"),
            ..case(
                "workload names with a comma, each allowed",
                &[],
                "invalid_request",
            )
        },
        Case {
            workload: Some("web"),
            ..case(
                "workload of the original subject, not the actor's",
                &[],
                "invalid_request",
            )
        },
        Case {
            workload: Some("beta:payments:checkout"),
            ..case("workload id of another subject", &[], "invalid_request")
        },
        Case {
            actor: String::new(),
            ..case("no actor token", &[], "invalid_request")
        },
        Case {
            actor: w.alpha_token("default", "web"),
            ..case("actor not allowed by any policy", &[], "invalid_request")
        },
        Case {
            actor: expired_actor.clone(),
            ..case("actor token expired", &[], "invalid_request")
        },
        Case {
            actor: "not-a-token".into(),
            ..case("actor token garbage", &[], "invalid_request")
        },
        Case {
            actor: token.clone(),
            ..case("actor token is a TxToken", &[], "invalid_request")
        },
        case(
            "actor type missing",
            &[("actor_token_type", "")],
            "invalid_request",
        ),
        Case {
            token: previous_key_token.clone(),
            rotated: true,
            ..case("a previous key signed it", &[], "invalid_request")
        },
    ];
    for c in cases {
        w.set_now(c.at);
        let mut f = bare_replace_form(&c.token);
        if !c.actor.is_empty() {
            f = with_actor(f, &c.actor);
        }
        for (k, v) in c.extra {
            f.retain(|(name, _)| *name != k);
            if !v.is_empty() {
                f.push((k, v));
            }
        }
        let bridge = if c.rotated {
            &rotated_bridge
        } else {
            &w.bridge
        };
        let (status, body) = block_on(post(bridge, &f, c.workload));
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(c.code)),
            "{}: {body}",
            c.name
        );
        assert!(body.get("access_token").is_none(), "{}", c.name);
        let why = WHY
            .iter()
            .find(|(prefix, _)| c.name.starts_with(prefix))
            .map(|(_, why)| *why)
            .unwrap();
        assert!(
            body["error_description"].as_str().unwrap().contains(why),
            "{}: {body}",
            c.name
        );
        let text = body.to_string();
        assert!(
            !text.contains(&c.token[..20.min(c.token.len())]) || c.token.len() < 20,
            "{}: token echoed",
            c.name
        );
    }

    // A TxToken presented as an SA token is not one.
    w.set_now(NOW);
    let (status, body, _) = block_on(w.exchange(&pairs(&form(&token))));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // An actor token on an exchange of an SA token stays refused.
    let f = with_actor(form(&w.beta_token("payments", "checkout")), &actor);
    let (status, body, _) = block_on(w.exchange(&pairs(&f)));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
}

#[test]
fn policy_changes_apply_to_replacements() {
    let w = World::new();
    let (token, _) = original(&w);
    let same_key = || KeySet::new(w.signer.clone(), vec![]).unwrap();

    // The subject is no longer allowed at all: revoked.
    let revoked = config_toml("").replace("namespace = \"payments\"", "namespace = \"billing\"");
    let b = bridge_with(&w, &revoked, same_key());
    let (status, body) = block_on(post(&b, &replace_form(&w, &token), None));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    // The ceiling shrank below the original scope: kept scope is cut, asking for it fails.
    let narrowed = config_toml("").replace(
        "scopes = [\"orders:read\", \"orders:write\"]",
        "scopes = [\"orders:write\"]",
    );
    let b = bridge_with(&w, &narrowed, same_key());
    let (status, body) = block_on(post(&b, &replace_form(&w, &token), None));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "");
    let mut f = replace_form(&w, &token);
    f.push(("scope", "orders:read".into()));
    let (status, body) = block_on(post(&b, &f, None));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );

    // A tctx constraint added since the original was issued is checked against the tctx.
    let with_constraint = config_toml("").replace(
        "scopes = [\"orders:read\", \"orders:write\"]",
        "scopes = [\"orders:read\", \"orders:write\"]\ntctx_constraints = { order = \"41\" }",
    );
    let b = bridge_with(&w, &with_constraint, same_key());
    let (status, body) = block_on(post(&b, &replace_form(&w, &token), None));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    // The cluster of the original subject is no longer trusted.
    let no_beta = config_toml("").replace("name = \"beta\"", "name = \"delta\"");
    let b = bridge_with(&w, &no_beta, same_key());
    let (status, body) = block_on(post(&b, &replace_form(&w, &token), None));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    // Another issuer name: the token is not this service's.
    let other_iss = config_toml("").replace(
        "issuer = \"https://tts.example.test\"",
        "issuer = \"https://tts2.example.test\"\ntrust_domain = \"https://tts.example.test\"",
    );
    let b = bridge_with(&w, &other_iss, same_key());
    let (status, body) = block_on(post(&b, &replace_form(&w, &token), None));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

#[test]
fn tokens_of_a_previous_key_are_not_replaced() {
    let w = World::new();
    let (token, orig) = original(&w);
    let rotated = Arc::new(LocalSigner::generate());
    let with_previous = bridge_with(
        &w,
        &config_toml(""),
        KeySet::new(rotated.clone(), vec![w.signer.public_jwk().clone()]).unwrap(),
    );
    // Consumers still verify it: the previous key stays published ...
    let (_, c) = verify_txtoken(&jwks(&with_previous), &token);
    assert_eq!(c["txn"], orig["txn"]);
    // ... but it is never re-signed by the new key.
    let (status, body) = block_on(post(&with_previous, &replace_form(&w, &token), None));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    // Tokens of the active key are replaced as usual.
    let (status, body, _) = block_on(async {
        let f = form(&w.beta_token("payments", "checkout"));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs(&f))
            .finish();
        let req = http::Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.into_bytes())
            .unwrap();
        let resp = with_previous.handle(req).await;
        (
            resp.status().as_u16(),
            serde_json::from_slice::<Value>(resp.body()).unwrap(),
            (),
        )
    });
    assert_eq!(status, 200, "{body}");
    let fresh = body["access_token"].as_str().unwrap();
    let (status, body) = block_on(post(&with_previous, &replace_form(&w, fresh), None));
    assert_eq!(status, 200, "{body}");
    let (header, _) = verify_txtoken(
        &jwks(&with_previous),
        body["access_token"].as_str().unwrap(),
    );
    assert_eq!(header.kid.as_deref(), Some(rotated.key_id()));

    let without = bridge_with(&w, &config_toml(""), KeySet::new(rotated, vec![]).unwrap());
    let (status, body) = block_on(post(&without, &replace_form(&w, &token), None));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

#[test]
fn metadata_lists_txn_token_as_a_subject_token_type() {
    let w = World::new();
    let req = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .unwrap();
    let doc: Value = serde_json::from_slice(block_on(w.bridge.handle(req)).body()).unwrap();
    assert!(
        doc["subject_token_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(TXN)),
        "{doc}"
    );
}
