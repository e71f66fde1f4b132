//! The verifier against TxTokens the core handler really issues (in-process round trip), keys
//! from a static JWKS and through discovery (via the core's key cache), and every rejection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use futures::executor::block_on;
use serde_json::{Value, json};
use txbridge_signer::{LocalSigner, Signer as _};
use txbridge_test_support::*;
use txbridge_verifier::{
    Error, Requirements, TokenError as E, Verifier, decode_unverified, json_digest, rctx_digest,
    require_scope, require_tctx, tctx_digest,
};

const DISCOVERY: &str = "https://tts.example.test/.well-known/openid-configuration";
const JWKS: &str = "https://tts.example.test/.well-known/jwks.json";

fn get(w: &World, path: &str) -> Value {
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    serde_json::from_slice(block_on(w.bridge.handle(req)).body()).unwrap()
}

/// A TxToken issued by the core handler for beta/payments/checkout.
fn issue(w: &World) -> String {
    let mut f = form(&w.beta_token("payments", "checkout"));
    f.push(("scope", "orders:read orders:write".into()));
    f.push(("request_details", r#"{"order":"42"}"#.into()));
    f.push(("request_context", r#"{"purpose":"test"}"#.into()));
    let (status, body, _) = block_on(w.exchange_with(&pairs(&f), |req| {
        req.headers_mut()
            .insert("x-txbridge-workload", "web".parse().unwrap());
    }));
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn static_verifier(w: &World) -> Verifier {
    let jwks = serde_json::to_vec(&get(w, "/.well-known/jwks.json")).unwrap();
    Verifier::builder(TD, TD)
        .clock(w.clock.clone())
        .build_static(&jwks)
        .unwrap()
}

/// Serves the bridge's own metadata and JWKS through the fake HTTP client.
fn remote_verifier(w: &World) -> Verifier {
    w.routes.set(
        DISCOVERY,
        Upstream::Json(get(w, "/.well-known/openid-configuration")),
    );
    w.routes
        .set(JWKS, Upstream::Json(get(w, "/.well-known/jwks.json")));
    Verifier::builder(TD, TD)
        .clock(w.clock.clone())
        .runtime(w.runtime.clone())
        .build(w.http.clone())
        .unwrap()
}

#[test]
fn round_trip_issue_then_verify() {
    let w = World::new();
    let token = issue(&w);
    for (mode, v) in [
        ("static", static_verifier(&w)),
        ("discovery", remote_verifier(&w)),
    ] {
        let c = block_on(v.verify(&token)).unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(c.iss, TD);
        assert_eq!(c.aud, TD);
        assert_eq!((c.iat, c.exp), (NOW, NOW + 300));
        assert_eq!(c.sub, "beta:system:serviceaccount:payments:checkout");
        assert_eq!(c.scope, ["orders:read", "orders:write"]);
        assert!(c.txn.len() >= 22);
        assert_eq!(c.req_wl.as_deref(), Some("web"));
        let tctx = json!({"order": "42", "cluster": "beta", "namespace": "payments", "service_account": "checkout"});
        assert_eq!(Value::Object(c.tctx.clone()), tctx);
        assert_eq!(c.rctx["purpose"], "test");

        require_scope(&c, "orders:read").unwrap();
        assert_eq!(require_scope(&c, "admin"), Err(Error::ScopeMissing));
        require_tctx(&c, "order", &json!("42")).unwrap();
        assert_eq!(
            require_tctx(&c, "order", &json!(42)),
            Err(Error::TctxMismatch)
        );
        let reqs = Requirements::new()
            .scope("orders:write")
            .tctx("namespace", json!("payments"));
        reqs.check(&c).unwrap();
        assert_eq!(
            reqs.clone().tctx("cluster", json!("alpha")).check(&c),
            Err(Error::TctxMismatch)
        );
        assert_eq!(tctx_digest(&c), json_digest(&tctx));
        assert_eq!(rctx_digest(&c).len(), 64);
    }
    // Discovery and JWKS were fetched once each, and the second verify used the cache.
    assert_eq!((w.http.hits(DISCOVERY), w.http.hits(JWKS)), (1, 1));
    let v = remote_verifier(&w);
    block_on(v.verify(&token)).unwrap();
    block_on(v.verify(&token)).unwrap();
    assert_eq!((w.http.hits(DISCOVERY), w.http.hits(JWKS)), (2, 2));
}

/// Signs exactly `header`/`claims` with `signer` (attack tests need bad tokens).
fn craft_txtoken(signer: &LocalSigner, header: &Value, claims: &Value) -> String {
    craft_with(header, claims, |input| {
        if header["alg"] == "none" {
            Vec::new()
        } else {
            block_on(signer.sign(input)).unwrap()
        }
    })
}

#[test]
fn every_rejection() {
    let w = World::new();
    let kid = w.signer.key_id().to_owned();
    let header = json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": kid});
    let claims = json!({
        "iss": TD, "aud": TD, "iat": NOW - 10, "exp": NOW + 290, "txn": "t-1",
        "sub": "beta:system:serviceaccount:payments:checkout", "scope": "orders:read",
        "req_wl": "web", "tctx": {"order": "42"}, "rctx": {"req_wl": "web"},
    });
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        f(&mut c);
        c
    };
    let hdr = |f: &dyn Fn(&mut Value)| {
        let mut h = header.clone();
        f(&mut h);
        h
    };
    let remove = |k: &'static str| {
        move |v: &mut Value| {
            v.as_object_mut().unwrap().remove(k);
        }
    };
    let foreign = LocalSigner::generate();
    let good = craft_txtoken(&w.signer, &header, &claims);
    let (h, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let tampered = format!(
        "{h}.{}.{sig}",
        B64.encode(
            serde_json::to_vec(&with(&|c| c["scope"] = json!("orders:read admin"))).unwrap()
        )
    );

    let s = &w.signer;
    let ok: Vec<(&str, String)> = vec![
        ("valid", good.clone()),
        (
            "aud as an array",
            craft_txtoken(s, &header, &with(&|c| c["aud"] = json!(["x", TD]))),
        ),
        (
            "expired within the leeway",
            craft_txtoken(
                s,
                &header,
                &with(&|c| {
                    c["exp"] = json!(NOW - 20);
                    c["iat"] = json!(NOW - 300);
                }),
            ),
        ),
        (
            "no tctx, rctx, scope",
            craft_txtoken(
                s,
                &header,
                &with(&|c| {
                    for k in ["tctx", "rctx", "scope", "req_wl"] {
                        c.as_object_mut().unwrap().remove(k);
                    }
                }),
            ),
        ),
    ];
    let bad: Vec<(&str, String, E)> = vec![
        (
            "wrong aud",
            craft_txtoken(
                s,
                &header,
                &with(&|c| c["aud"] = json!("https://other.example")),
            ),
            E::WrongAudience,
        ),
        (
            "aud array without the trust domain",
            craft_txtoken(s, &header, &with(&|c| c["aud"] = json!(["x"]))),
            E::WrongAudience,
        ),
        (
            "missing aud",
            craft_txtoken(s, &header, &with(&remove("aud"))),
            E::MissingAudience,
        ),
        (
            "wrong iss",
            craft_txtoken(
                s,
                &header,
                &with(&|c| c["iss"] = json!("https://evil.example")),
            ),
            E::WrongIssuer,
        ),
        (
            "missing iss",
            craft_txtoken(s, &header, &with(&remove("iss"))),
            E::WrongIssuer,
        ),
        (
            "expired",
            craft_txtoken(s, &header, &with(&|c| c["exp"] = json!(NOW - 30))),
            E::Expired,
        ),
        (
            "issued in the future",
            craft_txtoken(s, &header, &with(&|c| c["iat"] = json!(NOW + 31))),
            E::IssuedInFuture,
        ),
        (
            "missing exp",
            craft_txtoken(s, &header, &with(&remove("exp"))),
            E::MissingExpiry,
        ),
        (
            "missing iat",
            craft_txtoken(s, &header, &with(&remove("iat"))),
            E::MissingIssuedAt,
        ),
        (
            "missing txn",
            craft_txtoken(s, &header, &with(&remove("txn"))),
            E::MissingTxn,
        ),
        (
            "empty txn",
            craft_txtoken(s, &header, &with(&|c| c["txn"] = json!(""))),
            E::MissingTxn,
        ),
        (
            "missing sub",
            craft_txtoken(s, &header, &with(&remove("sub"))),
            E::MissingSubject,
        ),
        (
            "tctx not an object",
            craft_txtoken(s, &header, &with(&|c| c["tctx"] = json!("x"))),
            E::BadClaims,
        ),
        (
            "wrong typ",
            craft_txtoken(s, &hdr(&|h| h["typ"] = json!("JWT")), &claims),
            E::WrongType,
        ),
        (
            "missing typ",
            craft_txtoken(s, &hdr(&remove("typ")), &claims),
            E::WrongType,
        ),
        (
            "alg RS256",
            craft_txtoken(s, &hdr(&|h| h["alg"] = json!("RS256")), &claims),
            E::AlgorithmNotAllowed,
        ),
        (
            "alg HS256",
            craft_txtoken(s, &hdr(&|h| h["alg"] = json!("HS256")), &claims),
            E::AlgorithmNotAllowed,
        ),
        (
            "alg none",
            craft_txtoken(s, &hdr(&|h| h["alg"] = json!("none")), &claims),
            E::AlgorithmNotAllowed,
        ),
        (
            "crit",
            craft_txtoken(s, &hdr(&|h| h["crit"] = json!(["exp"])), &claims),
            E::CritHeader,
        ),
        (
            "foreign key, real kid",
            craft_txtoken(&foreign, &header, &claims),
            E::BadSignature,
        ),
        (
            "unknown kid",
            craft_txtoken(s, &hdr(&|h| h["kid"] = json!("nope")), &claims),
            E::UnknownKey,
        ),
        (
            "missing kid",
            craft_txtoken(s, &hdr(&remove("kid")), &claims),
            E::MissingKeyId,
        ),
        ("tampered claims", tampered, E::BadSignature),
        (
            "another signature",
            format!(
                "{}.{}",
                good.rsplit_once('.').unwrap().0,
                B64.encode([7u8; 64])
            ),
            E::BadSignature,
        ),
        (
            "two parts",
            format!("{h}.{}", rest.split_once('.').unwrap().0),
            E::Malformed,
        ),
        ("garbage", "not a token".into(), E::Malformed),
    ];

    for (mode, v) in [
        ("static", static_verifier(&w)),
        ("discovery", remote_verifier(&w)),
    ] {
        for (name, token) in &ok {
            block_on(v.verify(token)).unwrap_or_else(|e| panic!("{mode} {name}: {e}"));
        }
        for (name, token, want) in &bad {
            let err = block_on(v.verify(token)).expect_err(name);
            assert_eq!(err, Error::Invalid(*want), "{mode} {name}");
            let text = format!("{err} {err:?}");
            for part in token.split('.').filter(|p| p.len() >= 8) {
                assert!(!text.contains(part), "{mode} {name}: token echoed");
            }
        }
    }
}

#[test]
fn unknown_kid_refreshes_once_then_finds_a_rotated_key() {
    let w = World::new();
    let v = remote_verifier(&w);
    let token = issue(&w);
    block_on(v.verify(&token)).unwrap();
    assert_eq!(w.http.hits(JWKS), 1);

    // A token of a key the JWKS does not have: one refresh, a definite "unknown key" right after
    // it, then the same "unknown key" (invalid: 401, never 503) until the next refresh is allowed,
    // with no fetch meanwhile.
    let stranger = LocalSigner::generate();
    let header = json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": stranger.key_id()});
    let claims = txbridge_verifier::decode_unverified(&token).unwrap().1;
    let t = craft_txtoken(&stranger, &header, &claims);
    assert_eq!(block_on(v.verify(&t)), Err(Error::Invalid(E::UnknownKey)));
    for _ in 0..3 {
        let err = block_on(v.verify(&t)).unwrap_err();
        assert_eq!(
            err,
            Error::Invalid(E::UnknownKey),
            "rate-limited refresh: an unknown key, not unavailable keys"
        );
        assert!(err.is_unauthenticated());
    }
    // Other made-up kids within the interval: the same, and still no fetch.
    for _ in 0..3 {
        let other = LocalSigner::generate();
        let header = json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": other.key_id()});
        let t = craft_txtoken(&other, &header, &claims);
        assert_eq!(block_on(v.verify(&t)), Err(Error::Invalid(E::UnknownKey)));
    }
    assert_eq!(w.http.hits(JWKS), 2, "one refresh for the unknown kid");

    // The service publishes that key only now: once the refresh interval has passed, one
    // refresh, and its tokens verify (a missed kid is never remembered for the keys' TTL).
    let mut jwks = get(&w, "/.well-known/jwks.json");
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::to_value(stranger.public_jwk()).unwrap());
    w.routes.set(JWKS, Upstream::Json(jwks));
    w.set_now(NOW + 10);
    block_on(v.verify(&t)).unwrap();
    assert_eq!(w.http.hits(JWKS), 3);
}

#[test]
fn keys_unavailable_and_no_fetch_for_garbage() {
    let w = World::new();
    w.routes.set(DISCOVERY, Upstream::Status(500));
    let v = Verifier::builder(TD, TD)
        .clock(w.clock.clone())
        .runtime(w.runtime.clone())
        .build(w.http.clone())
        .unwrap();
    assert_eq!(
        block_on(v.verify("garbage")),
        Err(Error::Invalid(E::Malformed))
    );
    let wrong_typ = {
        let t = issue(&w);
        let (_, rest) = t.split_once('.').unwrap();
        format!("{}.{rest}", B64.encode(br#"{"alg":"ES256","kid":"k"}"#))
    };
    assert_eq!(
        block_on(v.verify(&wrong_typ)),
        Err(Error::Invalid(E::WrongType))
    );
    assert_eq!(
        w.http.hits(DISCOVERY),
        0,
        "header checks come before any fetch"
    );
    let err = block_on(v.verify(&issue(&w))).unwrap_err();
    assert!(matches!(err, Error::KeysUnavailable(_)), "{err}");
    assert!(!err.is_unauthenticated() && !err.is_forbidden());
}

#[test]
fn builder_checks_urls_and_jwks() {
    let http = Arc::new(FnHttp::routes(Arc::default()));
    let runtime = Arc::new(TestRuntime::new(Arc::default()));
    let cases: &[(&str, Option<&str>, bool, bool)] = &[
        ("https://tts.example", None, false, true),
        ("http://tts.example", None, false, false),
        ("http://127.0.0.1:8080/x", None, false, false),
        ("http://127.0.0.1:8080/x", None, true, true),
        ("http://tts.example", None, true, false),
        (
            "https://tts.example",
            Some("http://evil.example/jwks"),
            false,
            false,
        ),
        (
            "https://tts.example",
            Some("https://keys.example/jwks"),
            false,
            true,
        ),
        ("not a url", None, false, false),
    ];
    for (issuer, jwks, loopback, ok) in cases {
        let mut b = Verifier::builder(issuer, "td")
            .insecure_allow_http_loopback(*loopback)
            .runtime(runtime.clone());
        if let Some(u) = jwks {
            b = b.jwks_url(u);
        }
        assert_eq!(
            b.build(http.clone()).is_ok(),
            *ok,
            "{issuer} {jwks:?} {loopback}"
        );
    }
    assert!(
        Verifier::builder("https://x", "")
            .runtime(runtime.clone())
            .build(http.clone())
            .is_err()
    );
    for bad in [&b"{}"[..], br#"{"keys":[{"kty":"oct","k":"AA"}]}"#, b"nope"] {
        assert!(
            Verifier::builder("https://x", "td")
                .build_static(bad)
                .is_err()
        );
    }
    // An RS256-only JWKS cannot verify TxTokens.
    let rsa = rsa_key(0).public_jwk("r1");
    let doc = serde_json::to_vec(&json!({"keys": [rsa]})).unwrap();
    assert!(
        Verifier::builder("https://x", "td")
            .build_static(&doc)
            .is_err()
    );
}

#[test]
fn decode_does_not_verify() {
    let w = World::new();
    let (header, claims) = decode_unverified(&issue(&w)).unwrap();
    assert_eq!(header["typ"], "txntoken+jwt");
    assert_eq!(claims["iss"], TD);
}
