//! The Lambda built for arm64 (Graviton), run under `qemu-aarch64` behind cargo-lambda's Runtime
//! API, through the cross-build subset of the end-to-end suite. `.ci/run` cross-builds it and
//! names it in `TXBRIDGE_ARM64_BOOTSTRAP`; without that variable the test is skipped (and says
//! so). With it, a bootstrap that is missing, not aarch64 or not answering fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Instant;

use txbridge_tests::procs::ARM64_BOOTSTRAP_VAR;
use txbridge_tests::suite::{self, CLUSTERS, CROSS_BUILD_CASES};

#[test]
fn lambda_arm64_under_qemu() {
    let Some(bootstrap) = std::env::var_os(ARM64_BOOTSTRAP_VAR).filter(|v| !v.is_empty()) else {
        eprintln!(
            "SKIPPED lambda_arm64_under_qemu: {ARM64_BOOTSTRAP_VAR} is not set \
             (.ci/run sets it after `bash functions/lambda/build.sh arm64 --profile ci-arm64`)"
        );
        return;
    };
    let bootstrap = PathBuf::from(bootstrap);
    // The native harness (and the native Lambda, which this test does not run) first: not part of
    // the emulated run's time.
    txbridge_tests::procs::ensure_built();
    let started = Instant::now();
    let run = suite::start_lambda_emulated_env(&bootstrap, &CLUSTERS, suite::config)
        .unwrap_or_else(|e| {
            panic!(
                "{ARM64_BOOTSTRAP_VAR}={} does not run under qemu: {e:#}",
                bootstrap.display()
            )
        });
    eprintln!(
        "arm64 bootstrap answering under qemu after {:?}",
        started.elapsed()
    );
    suite::run_all(&run.env, CROSS_BUILD_CASES);
    // Wall time of the emulated run, for the CI log: how long this step takes, not how fast arm64 is.
    let line = format!(
        "lambda arm64 under qemu: {} cases passed, {:.1} s wall with the start (emulated; not an arm64 timing)\n",
        CROSS_BUILD_CASES.len(),
        started.elapsed().as_secs_f64()
    );
    eprint!("{line}");
    if let Err(e) = suite::append_timing(&line) {
        eprintln!("(not recorded in target/e2e-timings.txt: {e:#})");
    }
}
