//! Key cache behaviour through the handler: TTL, unknown-kid refresh (rate limited),
//! single flight, stale-on-error grace, upstream faults, recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use futures::executor::block_on;
use serde_json::json;

fn exchange_status(w: &World, token: &str) -> (u16, String, Option<String>) {
    let (s, b, h) = block_on(w.exchange(&pairs(&form(token))));
    let retry = h.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (s, b["error"].as_str().unwrap_or("").to_owned(), retry)
}

#[test]
fn keys_are_cached_for_the_ttl_then_refetched() {
    let w = World::new();
    let t = w.alpha_token("payments", "checkout");
    for _ in 0..5 {
        assert_eq!(exchange_status(&w, &t).0, 200);
    }
    assert_eq!(
        (w.http.hits(ALPHA_DISCOVERY), w.http.hits(ALPHA_JWKS)),
        (1, 1)
    );
    w.set_now(NOW + 299);
    assert_eq!(exchange_status(&w, &t).0, 200);
    assert_eq!(w.http.hits(ALPHA_JWKS), 1);
    w.set_now(NOW + 301);
    assert_eq!(exchange_status(&w, &t).0, 200);
    assert_eq!(w.http.hits(ALPHA_JWKS), 2);
    assert_eq!(w.http.hits(BETA_JWKS), 0, "other clusters untouched");
}

#[test]
fn unknown_kid_triggers_one_rate_limited_refresh() {
    let w = World::new();
    let t = w.alpha_token("payments", "checkout");
    assert_eq!(exchange_status(&w, &t).0, 200);
    // Rotation: the issuer publishes a new key; a token with the new kid arrives at once.
    let new_key = rsa_key(1);
    w.http.set(
        ALPHA_JWKS,
        Upstream::Json(json!({"keys": [w.alpha.public_jwk("a1"), new_key.public_jwk("a2")]})),
    );
    let rotated = craft(
        &json!({"alg": "RS256", "kid": "a2"}),
        &sa_claims(ALPHA_ISS, "payments", "checkout"),
        &new_key,
    );
    assert_eq!(
        exchange_status(&w, &rotated).0,
        200,
        "first unknown kid refreshes at once"
    );
    assert_eq!(w.http.hits(ALPHA_JWKS), 2);
    // The same bogus kid again and again: one refresh for it, then remembered as missing.
    let bogus = |kid: &str| {
        craft(
            &json!({"alg": "RS256", "kid": kid}),
            &sa_claims(ALPHA_ISS, "payments", "checkout"),
            &new_key,
        )
    };
    for _ in 0..5 {
        assert_eq!(exchange_status(&w, &bogus("same")).1, "invalid_request");
    }
    assert_eq!(w.http.hits(ALPHA_JWKS), 3, "a missed kid is not refetched");
    // A flood of random kids: the burst budget (10, one already used by the rotation and one
    // by "same") is spent, then no more fetches within the interval.
    for i in 0..50 {
        assert_eq!(
            exchange_status(&w, &bogus(&format!("x{i}"))).1,
            "invalid_request"
        );
    }
    assert_eq!(
        w.http.hits(ALPHA_JWKS),
        11,
        "unknown-kid refreshes are rate limited"
    );
    // One refresh becomes available per interval.
    w.set_now(NOW + 10);
    for i in 0..5 {
        assert_eq!(
            exchange_status(&w, &bogus(&format!("y{i}"))).1,
            "invalid_request"
        );
    }
    assert_eq!(w.http.hits(ALPHA_JWKS), 12, "one more after the interval");
}

#[test]
fn concurrent_cold_requests_fetch_once() {
    let w = World::new();
    let t = w.alpha_token("payments", "checkout");
    let f = form(&t);
    let p = pairs(&f);
    let futs: Vec<_> = (0..200).map(|_| w.exchange(&p)).collect();
    let results = block_on(futures::future::join_all(futs));
    assert!(results.iter().all(|(s, _, _)| *s == 200));
    assert_eq!(
        (w.http.hits(ALPHA_DISCOVERY), w.http.hits(ALPHA_JWKS)),
        (1, 1)
    );
}

#[test]
fn stale_keys_serve_within_grace_when_the_issuer_fails() {
    let w = World::new();
    let t = w.alpha_token("payments", "checkout");
    assert_eq!(exchange_status(&w, &t).0, 200);
    w.http.set(ALPHA_DISCOVERY, Upstream::Status(500));
    w.set_now(NOW + 400); // past the TTL
    assert_eq!(exchange_status(&w, &t).0, 200, "stale keys keep serving");
    // Past TTL + grace: no more keys.
    let far = NOW + 300 + 3600 + 5;
    w.set_now(far);
    let mut claims = sa_claims(ALPHA_ISS, "payments", "checkout");
    claims["iat"] = json!(far - 10);
    claims["exp"] = json!(far + 600);
    let t2 = craft(&json!({"alg": "RS256", "kid": "a1"}), &claims, &w.alpha);
    let (s, code, retry) = exchange_status(&w, &t2);
    assert_eq!((s, code.as_str()), (503, "temporarily_unavailable"));
    assert!(retry.is_some(), "503 carries Retry-After");
    // Recovery when the upstream heals (after the short failure back-off).
    w.http.set(
        ALPHA_DISCOVERY,
        Upstream::Json(json!({"issuer": ALPHA_ISS, "jwks_uri": ALPHA_JWKS})),
    );
    w.set_now(far + 2);
    assert_eq!(exchange_status(&w, &t2).0, 200);
}

#[test]
fn a_kid_the_cached_keys_lack_is_503_while_the_issuer_fails() {
    let w = World::new();
    let t = w.alpha_token("payments", "checkout");
    assert_eq!(exchange_status(&w, &t).0, 200);
    w.http.set(ALPHA_JWKS, Upstream::Status(500));
    let rotated = |now: u64| {
        let mut claims = sa_claims(ALPHA_ISS, "payments", "checkout");
        claims["iat"] = json!(now - 10);
        claims["exp"] = json!(now + 600);
        craft(&json!({"alg": "RS256", "kid": "a2"}), &claims, &w.alpha)
    };
    // Fresh keys, a new kid, the refresh fails: the key may well exist, so not "unknown key".
    let (s, code, retry) = exchange_status(&w, &rotated(NOW));
    assert_eq!((s, code.as_str()), (503, "temporarily_unavailable"));
    assert!(retry.is_some());
    assert_eq!(exchange_status(&w, &t).0, 200, "known kid still served");
    // Stale keys (past the TTL, within the grace), the issuer still failing: the same.
    w.set_now(NOW + 400);
    let (s, code, _) = exchange_status(&w, &rotated(NOW + 400));
    assert_eq!((s, code.as_str()), (503, "temporarily_unavailable"));
    w.set_now(NOW + 402);
    assert_eq!(
        exchange_status(&w, &t).0,
        200,
        "stale keys serve their kids"
    );
    let (s, _, _) = exchange_status(&w, &rotated(NOW + 402));
    assert_eq!(s, 503, "within the failure back-off, still 503");
    // Healed: the kid really is unknown now, a definite rejection.
    w.http.set(
        ALPHA_JWKS,
        Upstream::Json(json!({"keys": [w.alpha.public_jwk("a1")]})),
    );
    w.set_now(NOW + 405);
    let (s, code, _) = exchange_status(&w, &rotated(NOW + 405));
    assert_eq!((s, code.as_str()), (400, "invalid_request"));
}

#[test]
fn upstream_faults_give_503_and_leave_other_clusters_alone() {
    let faults: Vec<(&str, Upstream, &str)> = vec![
        ("500", Upstream::Status(500), ALPHA_DISCOVERY),
        (
            "garbage",
            Upstream::Body(b"<html>".to_vec()),
            ALPHA_DISCOVERY,
        ),
        (
            "too large",
            Upstream::Body(vec![b' '; 256 * 1024 + 1]),
            ALPHA_JWKS,
        ),
        ("connection failure", Upstream::Fail, ALPHA_JWKS),
        ("redirect status", Upstream::Status(302), ALPHA_DISCOVERY),
        (
            "issuer mismatch",
            Upstream::Json(json!({"issuer": "https://evil", "jwks_uri": ALPHA_JWKS})),
            ALPHA_DISCOVERY,
        ),
        (
            "jwks_uri over http",
            Upstream::Json(
                json!({"issuer": ALPHA_ISS, "jwks_uri": "http://alpha.example.test/jwks"}),
            ),
            ALPHA_DISCOVERY,
        ),
        (
            "jwks without usable keys",
            Upstream::Json(json!({"keys": [{"kty": "oct", "k": "AA"}]})),
            ALPHA_JWKS,
        ),
    ];
    for (name, fault, url) in faults {
        let w = World::new();
        w.http.set(url, fault);
        let (s, code, retry) = exchange_status(&w, &w.alpha_token("payments", "checkout"));
        assert_eq!(
            (s, code.as_str()),
            (503, "temporarily_unavailable"),
            "{name}"
        );
        assert!(retry.is_some(), "{name}");
        assert_eq!(
            exchange_status(&w, &w.beta_token("payments", "checkout")).0,
            200,
            "{name}: beta unaffected"
        );
        // Back-off: an immediate retry does not hit the upstream again.
        let before = w.http.hits(url);
        assert_eq!(
            exchange_status(&w, &w.alpha_token("payments", "checkout")).0,
            503
        );
        assert_eq!(w.http.hits(url), before, "{name}: backs off");
    }
}
