//! Key cache behaviour through the handler: TTL, stale-while-revalidate, unknown-kid refresh
//! (one per interval, no burst), single flight, upstream faults, back-off, recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::executor::block_on;
use serde_json::json;
use txbridge_test_support::*;

fn exchange_status(w: &World, token: &str) -> (u16, String, Option<String>) {
    let (s, b, h) = block_on(w.exchange(&pairs(&form(token))));
    let retry = h.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (s, b["error"].as_str().unwrap_or("").to_owned(), retry)
}

fn retry_after(h: &Option<String>) -> u64 {
    h.as_deref().unwrap().parse().unwrap()
}

#[test]
fn keys_past_the_ttl_are_served_at_once_and_refreshed_in_the_background() {
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
    assert_eq!(w.runtime.pending(), 0, "fresh keys: no refresh");
    // Past the TTL: answered at once from the cached keys; one refresh in the background.
    w.set_now(NOW + 301);
    for _ in 0..3 {
        assert_eq!(exchange_status(&w, &t).0, 200);
    }
    assert_eq!(
        w.http.hits(ALPHA_JWKS),
        1,
        "no request waited on the upstream"
    );
    assert_eq!(w.runtime.pending(), 1, "one background refresh");
    assert_eq!(w.runtime.run_background(), 1);
    assert_eq!(w.http.hits(ALPHA_JWKS), 2);
    assert_eq!(exchange_status(&w, &t).0, 200);
    assert_eq!(w.runtime.pending(), 0, "fresh again");
    assert_eq!(w.http.hits(BETA_JWKS), 0, "other clusters untouched");
}

#[test]
fn unknown_kid_one_refresh_per_interval_no_burst() {
    let w = World::new();
    let t = w.alpha_token("payments", "checkout");
    assert_eq!(exchange_status(&w, &t).0, 200);
    // Rotation: the issuer publishes a new key; a token with the new kid arrives at once.
    let a2 = rsa_key(1);
    w.routes.set(
        ALPHA_JWKS,
        Upstream::Json(json!({"keys": [w.alpha.public_jwk("a1"), a2.public_jwk("a2")]})),
    );
    let signed = |kid: &str, key: &TestKey, now: u64| {
        let mut claims = sa_claims(ALPHA_ISS, "payments", "checkout");
        claims["iat"] = json!(now - 10);
        craft(&json!({"alg": "RS256", "kid": kid}), &claims, key)
    };
    assert_eq!(
        exchange_status(&w, &signed("a2", &a2, NOW)).0,
        200,
        "the first unknown kid refreshes at once"
    );
    assert_eq!(w.http.hits(ALPHA_JWKS), 2);

    // A bogus kid within the interval: no refresh allowed yet, a retryable 503.
    w.set_now(NOW + 1);
    let (s, code, retry) = exchange_status(&w, &signed("same", &a2, NOW + 1));
    assert_eq!((s, code.as_str()), (503, "temporarily_unavailable"));
    assert_eq!(retry_after(&retry), 9);
    assert_eq!(w.http.hits(ALPHA_JWKS), 2);
    // Once a refresh is allowed it is fetched once; still unknown: a definite 400.
    w.set_now(NOW + 10);
    assert_eq!(
        exchange_status(&w, &signed("same", &a2, NOW + 10)).1,
        "invalid_request"
    );
    assert_eq!(w.http.hits(ALPHA_JWKS), 3);
    // The same bogus kid again within the interval: a retryable 503, no fetch (the miss counts
    // as the interval's refresh); once the interval has passed, one refresh again (contract v3:
    // a missed kid is never remembered for the ttl, so a key published late is picked up).
    for now in [NOW + 11, NOW + 12, NOW + 15, NOW + 19] {
        w.set_now(now);
        let (s, code, retry) = exchange_status(&w, &signed("same", &a2, now));
        assert_eq!(
            (s, code.as_str()),
            (503, "temporarily_unavailable"),
            "+{}",
            now - NOW
        );
        assert_eq!(retry_after(&retry), NOW + 20 - now);
    }
    assert_eq!(w.http.hits(ALPHA_JWKS), 3, "one fetch per interval");
    w.set_now(NOW + 20);
    assert_eq!(
        exchange_status(&w, &signed("same", &a2, NOW + 20)).1,
        "invalid_request"
    );
    assert_eq!(w.http.hits(ALPHA_JWKS), 4);

    // A flood of random kids: one refresh for the first, 503 + Retry-After for the rest.
    w.set_now(NOW + 30);
    for i in 0..50 {
        let (s, code, retry) = exchange_status(&w, &signed(&format!("x{i}"), &a2, NOW + 30));
        if i == 0 {
            assert_eq!((s, code.as_str()), (400, "invalid_request"), "x0");
        } else {
            assert_eq!((s, code.as_str()), (503, "temporarily_unavailable"), "x{i}");
            assert_eq!(retry_after(&retry), 10, "x{i}");
        }
    }
    assert_eq!(w.http.hits(ALPHA_JWKS), 5, "no burst of refreshes");

    // A real rotation right after the bogus kids: 503s (never a 400), then 200 within the
    // interval.
    let a3 = rsa_key(2);
    w.routes.set(
        ALPHA_JWKS,
        Upstream::Json(json!({"keys": [a2.public_jwk("a2"), a3.public_jwk("a3")]})),
    );
    for now in [NOW + 31, NOW + 35, NOW + 39] {
        w.set_now(now);
        let (s, code, retry) = exchange_status(&w, &signed("a3", &a3, now));
        assert_eq!(
            (s, code.as_str()),
            (503, "temporarily_unavailable"),
            "at +{}",
            now - NOW
        );
        assert_eq!(retry_after(&retry), NOW + 40 - now);
    }
    w.set_now(NOW + 40);
    assert_eq!(exchange_status(&w, &signed("a3", &a3, NOW + 40)).0, 200);
    assert_eq!(w.http.hits(ALPHA_JWKS), 6);
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
    w.routes.set(ALPHA_DISCOVERY, Upstream::Status(500));
    w.set_now(NOW + 400); // past the TTL
    assert_eq!(exchange_status(&w, &t).0, 200, "stale keys keep serving");
    assert_eq!(w.runtime.run_background(), 1, "the refresh runs, and fails");
    assert_eq!(
        exchange_status(&w, &t).0,
        200,
        "still served after the failure"
    );
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
    // Recovery when the upstream heals (after the back-off).
    w.routes.set(
        ALPHA_DISCOVERY,
        Upstream::Json(json!({"issuer": ALPHA_ISS, "jwks_uri": ALPHA_JWKS})),
    );
    w.set_now(far + retry_after(&retry));
    assert_eq!(exchange_status(&w, &t2).0, 200);
}

#[test]
fn a_kid_the_cached_keys_lack_is_503_while_the_issuer_fails() {
    let w = World::new();
    let t = w.alpha_token("payments", "checkout");
    assert_eq!(exchange_status(&w, &t).0, 200);
    w.routes.set(ALPHA_JWKS, Upstream::Status(500));
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
    // Healed: once the back-off (three failures: 4 s) and the unknown-kid interval (the last
    // such refresh at +400) have passed, the kid really is unknown: a definite rejection.
    w.routes.set(
        ALPHA_JWKS,
        Upstream::Json(json!({"keys": [w.alpha.public_jwk("a1")]})),
    );
    w.set_now(NOW + 406);
    let (s, code, retry) = exchange_status(&w, &rotated(NOW + 406));
    assert_eq!((s, code.as_str()), (503, "temporarily_unavailable"));
    assert_eq!(retry_after(&retry), 4);
    w.set_now(NOW + 410);
    let (s, code, _) = exchange_status(&w, &rotated(NOW + 410));
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
        w.routes.set(url, fault);
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
