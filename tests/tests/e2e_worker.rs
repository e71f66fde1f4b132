//! The same end-to-end suite against the Worker running in the real Workers runtime (workerd).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use txbridge_tests::suite::{self, CLUSTERS};
use txbridge_tests::{concurrency, faults, worker};

#[test]
fn worker_end_to_end() {
    let started = suite::start_worker_env(&CLUSTERS, suite::config).unwrap();
    suite::run(&started.env, "worker (workerd, release-wasm build)");
}

#[test]
fn worker_upstream_faults() {
    let started = suite::start_worker_env(&faults::CLUSTERS, faults::config).unwrap();
    faults::run(&started.env);
}

/// One isolate serving many requests at once: single flight without cross-request awaits.
#[test]
fn worker_concurrent_requests() {
    let started = suite::start_worker_env(&concurrency::CLUSTERS, concurrency::config).unwrap();
    concurrency::run(&started.env);
}

/// A Rust panic (a trapped wasm instance) is answered with the contract's 503 JSON body, never
/// the runtime's plain-text 500, and the next request is served by a fresh instance. Runs the
/// test build (feature `test-panic`: a `/__test/panic` route); the release build has no such
/// route.
#[test]
fn worker_panic_is_a_json_503() {
    let harness = txbridge_tests::procs::Harness::start(&["name=alpha,alg=RS256"]).unwrap();
    let (config, key) = harness
        .config("https://txbridge-worker.example.test")
        .unwrap();
    let running = worker::start_build(worker::Build::TestPanic, &config, &key).unwrap();
    let client = reqwest::blocking::Client::new();
    let url = |path: &str| format!("{}{path}", running.base_url);
    for round in 0..2 {
        let resp = client.get(url("/__test/panic")).send().unwrap();
        assert_eq!(resp.status(), 503, "round {round}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert!(body["error_description"].is_string());
        // The instance that trapped is replaced: the next requests are served.
        let healthz = client.get(url("/healthz")).send().unwrap();
        assert_eq!(
            healthz.status(),
            200,
            "round {round}: healthz after a panic"
        );
        let token = harness
            .token("alpha", "payments", "checkout", &["txbridge"], 600)
            .unwrap();
        let resp = client
            .post(url("/token"))
            .form(&[
                ("grant_type", suite::TE),
                ("subject_token", token.as_str()),
                ("subject_token_type", suite::JWT),
            ])
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "round {round}: exchange after a panic");
    }
    // The release build has no such route.
    let release = worker::start(&config, &key).unwrap();
    let resp = client
        .get(format!("{}/__test/panic", release.base_url))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
}
