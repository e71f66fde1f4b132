//! Thundering herd: 1,000 concurrent first requests for one cold cluster cause exactly one
//! discovery and one JWKS fetch, counted at the issuer (the harness's `/admin/stats`).
//!
//! In-process: the Lambda's own `TxBridge` (`txbridge_lambda::build`: local signer, the real
//! reqwest client, the system clock) against a real harness on loopback, driven by a tokio
//! multi-thread runtime. BENCHMARKS.md records the figure (`bash bench/run.sh` runs this test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use txbridge_tests::procs::Harness;
use txbridge_tests::suite::{JWT, TE, TXN};

const REQUESTS: usize = 1_000;

#[test]
fn thousand_cold_requests_fetch_keys_once() {
    let harness = Harness::start(&["name=alpha,alg=RS256"]).unwrap();
    let (config, key) = harness.config("https://tts.example.test").unwrap();
    let config = txbridge_core::Config::from_toml_str(&config).unwrap();
    assert!(
        config.clusters()[0].discovery_url.is_some() && config.clusters()[0].jwks_url.is_none(),
        "the herd must go through discovery, then the JWKS"
    );
    let token = harness
        .token("alpha", "payments", "checkout", &["txbridge"], 3600)
        .unwrap();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", TE),
            ("subject_token", token.as_str()),
            ("subject_token_type", JWT),
            ("requested_token_type", TXN),
        ])
        .finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bridge = Arc::new(
        rt.block_on(txbridge_lambda::build(config, Some(&key)))
            .unwrap(),
    );
    reset_stats(&harness);
    let before = harness.stats().unwrap();
    assert_eq!(before["clusters"]["alpha"]["discovery"], 0);
    assert_eq!(before["clusters"]["alpha"]["jwks"], 0);

    let started = Instant::now();
    let statuses: Vec<u16> = rt.block_on(async {
        // Every request is created before any runs: all 1,000 find the cache cold.
        let barrier = Arc::new(tokio::sync::Barrier::new(REQUESTS));
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|_| {
                let (bridge, barrier, body) = (bridge.clone(), barrier.clone(), body.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let req = http::Request::post("/token")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body.into_bytes())
                        .unwrap();
                    bridge.handle(req).await.status().as_u16()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(REQUESTS);
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let elapsed = started.elapsed();

    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, REQUESTS, "statuses other than 200: {:?}", {
        let mut bad: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
        bad.dedup();
        bad
    });
    let stats = harness.stats().unwrap();
    let alpha = &stats["clusters"]["alpha"];
    println!(
        "thundering herd: {REQUESTS} concurrent cold requests -> {ok} x 200, discovery fetches {}, \
         JWKS fetches {}, {elapsed:?} in all",
        alpha["discovery"], alpha["jwks"]
    );
    assert_eq!(alpha["discovery"], 1, "discovery fetches: {alpha}");
    assert_eq!(alpha["jwks"], 1, "JWKS fetches: {alpha}");
}

fn reset_stats(harness: &Harness) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/admin/stats/reset", harness.base_url))
        .send()
        .unwrap();
    assert!(resp.status().is_success());
}
