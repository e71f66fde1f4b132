//! The end-to-end suite against the Lambda under `cargo lambda watch` (real emulator, real
//! HTTP, real harness issuer). Function logs are captured at trace level for the leak check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use txbridge_tests::faults;
use txbridge_tests::suite::{self, CLUSTERS};

#[test]
fn lambda_end_to_end() {
    let started = suite::start_lambda_env(&CLUSTERS, suite::config).unwrap();
    suite::run(&started.env, "lambda (cargo lambda watch, debug build)");
}

#[test]
fn lambda_upstream_faults() {
    let started = suite::start_lambda_env(&faults::CLUSTERS, faults::config).unwrap();
    faults::run(&started.env);
}

/// The same concurrency cases as the Worker's (parity).
#[test]
fn lambda_concurrent_requests() {
    let started = suite::start_lambda_env(
        &txbridge_tests::concurrency::CLUSTERS,
        txbridge_tests::concurrency::config,
    )
    .unwrap();
    txbridge_tests::concurrency::run(&started.env);
}
