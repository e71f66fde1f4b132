//! The end-to-end suite against the Lambda under `cargo lambda watch` (real emulator, real
//! HTTP, real harness issuer). Function logs are captured at trace level for the leak check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use txbridge_tests::faults;
use txbridge_tests::procs::{Harness, lambda_base_url, start_lambda};
use txbridge_tests::suite::{self, CLUSTERS, Env, Function};

#[test]
fn lambda_end_to_end() {
    let harness = Harness::start(&CLUSTERS).unwrap();
    let port = txbridge_tests::free_port();
    let issuer = lambda_base_url(port);
    let (config, key) = harness.config(&issuer).unwrap();
    let (running, log, _dir) = start_lambda(port, &config, &key, &[("RUST_LOG", "trace")]).unwrap();
    let env = Env::new(
        harness,
        Function {
            base_url: running.base_url.clone(),
            issuer,
            logs: vec![log],
        },
        key,
    );
    suite::run(&env, "lambda (cargo lambda watch, debug build)");
    drop(running);
}

#[test]
fn lambda_upstream_faults() {
    let harness = Harness::start(&faults::CLUSTERS).unwrap();
    let port = txbridge_tests::free_port();
    let issuer = lambda_base_url(port);
    let (config, key) = harness.config(&issuer).unwrap();
    let config = faults::config(&config);
    let (running, log, _dir) = start_lambda(port, &config, &key, &[("RUST_LOG", "trace")]).unwrap();
    let env = Env::new(
        harness,
        Function {
            base_url: running.base_url.clone(),
            issuer,
            logs: vec![log],
        },
        key,
    );
    faults::run(&env);
    drop(running);
}
