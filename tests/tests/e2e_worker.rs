//! The same end-to-end suite against the Worker running in the real Workers runtime (workerd).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use txbridge_tests::faults;
use txbridge_tests::suite::{self, CLUSTERS};

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
