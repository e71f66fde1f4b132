//! A bounded load run against each shell on loopback (the Lambda under `cargo lambda watch`, the
//! Worker under workerd): concurrent clients, a mix of valid and invalid requests, every answer
//! checked. Zero 5xx, zero wrong answers, and the function's memory stays flat (the Lambda: its
//! RSS; the Worker: its wasm memory and the JS values it holds, see [`Memory::WorkerLog`]). The
//! figures go to `target/e2e-timings.txt`.
//!
//! Bounds: `TXBRIDGE_LOAD_CLIENTS` (default 8) clients for `TXBRIDGE_LOAD_SECS` (default 10)
//! seconds, at most 20,000 requests per client; `TXBRIDGE_LOAD_ONLY` picks cases by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use txbridge_tests::Running;
use txbridge_tests::load::{self, Case, WorkerMemory};
use txbridge_tests::procs::{Harness, lambda_base_url, start_lambda};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The same token with one signature character changed.
fn tampered(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    format!("{head}.{}", sig.into_iter().collect::<String>())
}

const CLUSTERS: [&str; 2] = ["name=alpha,alg=RS256", "name=beta,alg=ES256"];

/// The request mix: valid exchanges of both clusters and the common ways to get one wrong.
fn cases(harness: &Harness) -> Vec<Case> {
    let alpha = harness
        .token("alpha", "payments", "checkout", &["txbridge"], 3600)
        .unwrap();
    let beta = harness
        .token("beta", "payments", "checkout", &["txbridge"], 3600)
        .unwrap();
    let te = txbridge_tests::suite::TE;
    let jwt = txbridge_tests::suite::JWT;
    vec![
        Case::exchange("alpha RS256", &alpha, &[]).issues(
            "alpha:system:serviceaccount:payments:checkout",
            "orders:read orders:write",
        ),
        Case::exchange("beta ES256, narrowed", &beta, &[("scope", "orders:read")]).issues(
            "beta:system:serviceaccount:payments:checkout",
            "orders:read",
        ),
        Case::exchange("scope escalation", &alpha, &[("scope", "admin")])
            .fails(400, "invalid_scope"),
        Case::exchange("bad signature", &tampered(&alpha), &[]).fails(400, "invalid_request"),
        Case::exchange("malformed token", "not.a.jwt", &[]).fails(400, "invalid_request"),
        Case::exchange(
            "wrong audience",
            &beta,
            &[("audience", "https://other.example")],
        )
        .fails(400, "invalid_target"),
        Case::exchange(
            "details conflict",
            &alpha,
            &[("request_details", r#"{"namespace":"kube-system"}"#)],
        )
        .fails(400, "invalid_request"),
        Case {
            content_type: "application/json",
            ..Case::exchange("wrong content type", &alpha, &[]).fails(400, "invalid_request")
        },
        Case {
            body: format!("grant_type=password&subject_token={beta}&subject_token_type={jwt}"),
            ..Case::exchange("wrong grant type", &beta, &[]).fails(400, "unsupported_grant_type")
        },
        Case {
            body: format!("grant_type={te}&grant_type={te}&subject_token={beta}"),
            ..Case::exchange("duplicate parameter", &beta, &[]).fails(400, "invalid_request")
        },
        Case {
            method: "GET",
            path: "/.well-known/jwks.json",
            ..Case::exchange("jwks", &alpha, &[])
        },
    ]
}

/// How the function's memory is judged.
enum Memory {
    /// The process's resident set after the run is within 8 MiB of what it was a quarter of the
    /// way in (allocator arenas settle; a per-request leak at these counts would not).
    Rss,
    /// The Worker. workerd's RSS says nothing about our code here: V8 sizes its heap and tcmalloc
    /// keeps freed pages by their own heuristics, in steps, for tens of thousands of requests. A
    /// plain JS Worker (no wasm) under the same workerd and mix: 67 MiB -> 285 MiB after 37k
    /// requests -> 322 MiB after 110k, then flat. Ours: 92 -> 223 MiB after 11k -> 268 MiB after
    /// 29k, then 272-279 MiB up to 70k; with a full GC forced every 5 s (inspector) its V8 heap
    /// holds 1.1-1.3 MB live from the first thousand requests to the 190,000th and the RSS stays
    /// at 105-128 MiB. No RSS bound short of minutes of load tells that from a leak, so the RSS is
    /// only reported. What is asserted comes from the Worker's own request log lines (workerd's
    /// log, `path`), which carry `wasm_kib` and `js_refs` (runtime.rs). With N requests (about
    /// 8,500 in the default 10 s):
    /// - the wasm linear memory (the Rust heap, including the state of every wasm-bindgen
    ///   closure; it never shrinks) grows at most 128 KiB (2 pages) after the first quarter. It
    ///   reaches its size (1,344 KiB) within the first requests and has not moved in 70,000;
    ///   a leak of 20 bytes a request over 3/4 of N = 8,500 would cross the bound.
    /// - the live JS values held by Rust (externref slots: the request, env, response and
    ///   promises of the requests in flight, ~12 + 9 per concurrent request, 75 with 8 clients)
    ///   peak at most 32 higher in the last quarter than in the first: the peak is set by
    ///   concurrency (an upstream fetch in flight adds ~15), one value leaked per 200 requests
    ///   would add 32 over 3/4 of N.
    WorkerLog(PathBuf),
}

/// Warms the function, runs the load, records the figures and asserts the bounds. `process` is
/// the name of the function's process among the descendants of `running`.
fn load_and_check(label: &str, running: &Running, process: &str, cases: &[Case], memory: Memory) {
    // `TXBRIDGE_LOAD_ONLY=name,name` narrows the mix (to see which requests cost what).
    let only = std::env::var("TXBRIDGE_LOAD_ONLY").unwrap_or_default();
    let cases: Vec<Case> = cases
        .iter()
        .filter(|c| only.is_empty() || only.split(',').any(|n| n == c.name))
        .cloned()
        .collect();
    let cases = &cases[..];
    // Warm: keys of both clusters cached, the function process started.
    let warm = load::run(
        &running.base_url,
        cases,
        1,
        Duration::from_secs(5),
        cases.len(),
        &|| None,
    );
    assert!(warm.wrong.is_empty(), "warm-up: {:?}", warm.wrong);
    let function_pid = load::find_descendant(running.pid(), process);
    // The Worker's log lines of the warm-up (and of the readiness probes) are not the run's.
    let logged_before = match &memory {
        Memory::WorkerLog(path) => load::worker_memory(path).len(),
        Memory::Rss => 0,
    };

    let clients = env_or("TXBRIDGE_LOAD_CLIENTS", 8) as usize;
    let secs = env_or("TXBRIDGE_LOAD_SECS", 10);
    let report = load::run(
        &running.base_url,
        cases,
        clients,
        Duration::from_secs(secs),
        20_000,
        &|| function_pid.and_then(load::rss_kib),
    );
    let logged = match &memory {
        Memory::WorkerLog(path) => load::worker_memory(path).split_off(logged_before),
        Memory::Rss => Vec::new(),
    };
    // Quarters by request lines: the first quarter's peak against the end's.
    let quarter = logged.len() / 4;
    let peak = |part: &[WorkerMemory], f: fn(&WorkerMemory) -> u64| part.iter().map(f).max();
    let figures = (quarter > 0).then(|| {
        let (first, last) = (&logged[..quarter], &logged[logged.len() - quarter..]);
        [
            peak(first, |m| m.wasm_kib),
            peak(&logged, |m| m.wasm_kib),
            peak(first, |m| m.js_refs),
            peak(last, |m| m.js_refs),
        ]
        .map(Option::unwrap_or_default)
    });
    let worker_figures = match (&memory, figures) {
        (Memory::Rss, _) => String::new(),
        (Memory::WorkerLog(_), None) => format!(", {} request lines logged", logged.len()),
        (Memory::WorkerLog(_), Some([wasm_early, wasm_end, refs_early, refs_late])) => format!(
            ", {} request lines logged, wasm memory {wasm_early} KiB -> {wasm_end} KiB, \
             JS values held (peak) {refs_early} -> {refs_late}",
            logged.len()
        ),
    };
    let line = format!(
        "load ({label}, {clients} clients, {secs} s, {} kinds of request): {report}{worker_figures}\n",
        cases.len()
    );
    eprint!("{line}");
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(txbridge_tests::workspace_root().join("target/e2e-timings.txt"))
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();

    assert!(report.requests >= cases.len() * clients, "{report}");
    assert_eq!(report.server_errors, 0, "{report}");
    let mut wrong = report.wrong.clone();
    wrong.dedup();
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
    // Memory flat: see `Memory`.
    match memory {
        Memory::Rss => {
            let (Some(a), Some(b)) = (report.rss_start_kib, report.rss_end_kib) else {
                panic!("could not read the RSS of {process} (pid {function_pid:?})");
            };
            assert!(b <= a + 8 * 1024, "{process} RSS grew {a} KiB -> {b} KiB");
        }
        Memory::WorkerLog(path) => {
            // Every request of the run logs one line; far fewer means the figures are not there.
            assert!(
                logged.len() * 2 >= report.requests && figures.is_some(),
                "{} of {} request lines with wasm_kib and js_refs in {}",
                logged.len(),
                report.requests,
                path.display()
            );
            let Some([wasm_early, wasm_end, refs_early, refs_late]) = figures else {
                unreachable!("checked above")
            };
            assert!(
                wasm_end <= wasm_early + 128,
                "wasm memory grew {wasm_early} KiB -> {wasm_end} KiB after the first quarter"
            );
            assert!(
                refs_late <= refs_early + 32,
                "JS values held by the Worker peaked at {refs_early} in the first quarter of the \
                 run, {refs_late} in the last"
            );
        }
    }
}

#[test]
fn lambda_under_load() {
    let harness = Harness::start(&CLUSTERS).unwrap();
    let port = txbridge_tests::free_port();
    let issuer = lambda_base_url(port);
    let (config, key) = harness.config(&issuer).unwrap();
    let (running, _log, _dir) = start_lambda(port, &config, &key, &[]).unwrap();
    let cases = cases(&harness);
    load_and_check(
        "lambda, cargo lambda watch, debug build",
        &running,
        "txbridge-lambda",
        &cases,
        Memory::Rss,
    );
    drop(running);
}

#[test]
fn worker_under_load() {
    let harness = Harness::start(&CLUSTERS).unwrap();
    let (config, key) = harness
        .config("https://txbridge-worker.example.test")
        .unwrap();
    let running = txbridge_tests::worker::start(&config, &key).unwrap();
    // Where `worker::start` sends workerd's output, the Worker's console lines included.
    let port = running.base_url.rsplit(':').next().unwrap();
    let log =
        txbridge_tests::workspace_root().join(format!("target/tmp/txbridge-worker-{port}.log"));
    let cases = cases(&harness);
    load_and_check(
        "worker, workerd, release-wasm build",
        &running,
        "workerd",
        &cases,
        Memory::WorkerLog(log),
    );
    drop(running);
}
