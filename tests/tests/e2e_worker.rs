//! The same end-to-end suite against the Worker running in the real Workers runtime (workerd).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use txbridge_tests::faults;
use txbridge_tests::procs::Harness;
use txbridge_tests::suite::{self, CLUSTERS, Env, Function};

#[test]
fn worker_end_to_end() {
    let harness = Harness::start(&CLUSTERS).unwrap();
    // The Worker's port is chosen at start; its issuer is a name, not where it is served.
    let issuer = "https://txbridge-worker.example.test".to_owned();
    let (config, key) = harness.config(&issuer).unwrap();
    let running = txbridge_tests::worker::start(&config, &key).unwrap();
    let port = running.base_url.rsplit(':').next().unwrap().to_owned();
    let log =
        txbridge_tests::workspace_root().join(format!("target/tmp/txbridge-worker-{port}.log"));
    let env = Env::new(
        harness,
        Function {
            base_url: running.base_url.clone(),
            issuer,
            logs: vec![log],
        },
        key,
    );
    suite::run(&env, "worker (workerd, release-wasm build)");
    drop(running);
}

#[test]
fn worker_upstream_faults() {
    let harness = Harness::start(&faults::CLUSTERS).unwrap();
    let issuer = "https://txbridge-worker.example.test".to_owned();
    let (config, key) = harness.config(&issuer).unwrap();
    let running = txbridge_tests::worker::start(&faults::config(&config), &key).unwrap();
    let port = running.base_url.rsplit(':').next().unwrap().to_owned();
    let log =
        txbridge_tests::workspace_root().join(format!("target/tmp/txbridge-worker-{port}.log"));
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
