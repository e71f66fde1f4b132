//! Concurrent requests against one function instance, run against every shell. A Worker isolate
//! serves many requests at once and forbids awaiting another request's I/O, so the key cache's
//! single flight must hold without sharing futures between requests:
//! - 8, then 64 concurrent cold requests for one cluster: all 200, exactly one discovery and one
//!   JWKS fetch at the issuer;
//! - the same with a slow (0.5 s) upstream;
//! - keys expiring (ttl 10 s) under concurrent load: every request 200, one refresh per expiry;
//! - a failing upstream under concurrency: every request 503 with `Retry-After`, never a 500;
//! - a client that disconnects while its request fetches a cold cluster's keys: the next
//!   request for that cluster is served normally (no wait for an abandoned fetch, no back-off).
//!
//! Each case uses a cluster of its own, so each starts cold.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use crate::suite::{Env, JWT, Resp, TE, TXN};

/// One cluster per case.
pub const CLUSTERS: [&str; 6] = [
    "name=herd-a,alg=RS256",
    "name=herd-b,alg=ES256,mirror",
    "name=slow,alg=RS256",
    "name=expiring,alg=ES256",
    "name=down,alg=RS256",
    "name=abandoned,alg=RS256",
];

/// The key cache TTL of a concurrency run (the smallest allowed); must match [`config`].
const TTL: Duration = Duration::from_secs(10);

/// The harness's config with a short key-cache TTL.
pub fn config(harness_config: &str) -> String {
    format!("{harness_config}\n[key_cache]\nttl = \"10s\"\n")
}

/// `n` exchanges of `token`, released together from `n` threads; their answers.
fn together(env: &Env, token: &str, n: usize) -> Vec<Resp> {
    let barrier = Arc::new(Barrier::new(n));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    env.exchange_form(
                        &[
                            ("grant_type", TE),
                            ("subject_token", token),
                            ("subject_token_type", JWT),
                            ("requested_token_type", TXN),
                        ],
                        &[],
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    })
}

fn fetches(env: &Env, cluster: &str) -> anyhow::Result<(u64, u64)> {
    let stats = env.harness.stats()?;
    let c = &stats["clusters"][cluster];
    Ok((
        c["discovery"].as_u64().context("discovery count")?,
        c["jwks"].as_u64().context("jwks count")?,
    ))
}

/// Every answer is a JSON body; a summary of the statuses for messages.
fn statuses(answers: &[Resp]) -> anyhow::Result<String> {
    let mut counts = std::collections::BTreeMap::new();
    for r in answers {
        ensure!(
            r.body.is_object(),
            "a non-JSON answer: {} {}",
            r.status,
            r.raw
        );
        *counts.entry(r.status).or_insert(0usize) += 1;
    }
    Ok(format!("{counts:?}"))
}

fn all_ok(answers: &[Resp], what: &str) -> anyhow::Result<()> {
    let summary = statuses(answers)?;
    ensure!(
        answers
            .iter()
            .all(|r| r.status == 200 && r.body["access_token"].is_string()),
        "{what}: statuses {summary}; first failure: {}",
        answers
            .iter()
            .find(|r| r.status != 200)
            .map(|r| r.raw.as_str())
            .unwrap_or("")
    );
    Ok(())
}

fn cold_herds(env: &Env) -> anyhow::Result<()> {
    for (cluster, n) in [("herd-a", 8), ("herd-b", 64)] {
        let token = env.token(cluster, "payments", "checkout");
        ensure!(fetches(env, cluster)? == (0, 0), "{cluster} starts cold");
        let answers = together(env, &token, n);
        all_ok(&answers, &format!("{n} cold requests ({cluster})"))?;
        let f = fetches(env, cluster)?;
        ensure!(
            f == (1, 1),
            "{n} cold requests ({cluster}): {} discovery and {} JWKS fetches, want one each",
            f.0,
            f.1
        );
    }
    Ok(())
}

fn cold_herd_slow_upstream(env: &Env) -> anyhow::Result<()> {
    let token = env.token("slow", "payments", "checkout");
    env.harness.fault("slow", "both", "slow")?;
    let started = Instant::now();
    let answers = together(env, &token, 64);
    let took = started.elapsed();
    env.harness.fault("slow", "both", "none")?;
    all_ok(&answers, "64 cold requests, slow upstream")?;
    let f = fetches(env, "slow")?;
    ensure!(
        f == (1, 1),
        "slow upstream: {} discovery and {} JWKS fetches",
        f.0,
        f.1
    );
    ensure!(
        took >= Duration::from_millis(1000),
        "the upstream was slow for both documents, yet {took:?}"
    );
    Ok(())
}

fn expiring_keys_under_load(env: &Env) -> anyhow::Result<()> {
    let token = env.token("expiring", "payments", "checkout");
    let warm = env.exchange(&token, &[]);
    ensure!(warm.status == 200, "warm: {}", warm.raw);
    let warmed = Instant::now();
    // Concurrent load across the expiry: 8 clients until 3 s past the TTL.
    let until = TTL + Duration::from_secs(3);
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while warmed.elapsed() < until {
                        out.push(env.exchange(&token, &[]));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("load thread"))
            .collect()
    });
    all_ok(&answers, "keys expiring under concurrent load")?;
    // Give a background refresh (Worker: waitUntil, after a response) a moment to land.
    std::thread::sleep(Duration::from_millis(300));
    let f = fetches(env, "expiring")?;
    ensure!(
        f == (2, 2),
        "{} requests across one expiry: {} discovery and {} JWKS fetches, want two each",
        answers.len(),
        f.0,
        f.1
    );
    Ok(())
}

fn failing_upstream_under_concurrency(env: &Env) -> anyhow::Result<()> {
    let token = env.token("down", "payments", "checkout");
    env.harness.fault("down", "both", "status500")?;
    let answers = together(env, &token, 64);
    env.harness.fault("down", "both", "none")?;
    let summary = statuses(&answers)?;
    for r in &answers {
        ensure!(
            r.status == 503 && r.body["error"] == "temporarily_unavailable",
            "failing upstream: statuses {summary}: {}",
            r.raw
        );
        ensure!(
            r.body.get("access_token").is_none(),
            "a token from a failing upstream"
        );
        let retry: u64 = r
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .context("503 without a numeric Retry-After")?;
        ensure!((1..=10).contains(&retry), "Retry-After {retry}");
    }
    let f = fetches(env, "down")?;
    ensure!(
        f.0 == 1,
        "single flight: {} discovery fetches for 64 concurrent requests",
        f.0
    );
    Ok(())
}

/// Sends a token request on a raw connection and closes it at once, without reading the answer
/// (a client that gives up, or a pod killed mid-request).
fn send_and_hang_up(env: &Env, token: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let url = url::Url::parse(&env.f.base_url)?;
    let host = url.host_str().context("host")?;
    let port = url.port_or_known_default().context("port")?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
        ])
        .finish();
    let path = format!("{}/token", url.path().trim_end_matches('/'));
    let mut conn = std::net::TcpStream::connect((host, port))?;
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()?;
    conn.shutdown(std::net::Shutdown::Both)?;
    Ok(())
}

/// A client disconnects while its request fetches a cold cluster's keys (the upstream is slow,
/// so the fetch is in flight when it goes). Other requests for that cluster must not be held
/// for the abandoned fetch (until its deadline, then a 503) nor start the failure back-off: the
/// next request is served normally and promptly.
fn client_gone_during_a_cold_fetch(env: &Env) -> anyhow::Result<()> {
    let token = env.token("abandoned", "payments", "checkout");
    env.harness.fault("abandoned", "both", "slow")?;
    send_and_hang_up(env, &token)?;
    // Let the abandoned request reach the upstream first.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = env.exchange(&token, &[]);
    let took = started.elapsed();
    env.harness.fault("abandoned", "both", "none")?;
    ensure!(
        r.status == 200 && r.body["access_token"].is_string(),
        "after a client hung up mid-fetch: {} {} (after {took:?})",
        r.status,
        r.raw
    );
    // Discovery and JWKS each take 0.5 s: an answer well before the 6 s fetch deadline shows
    // nobody waited out an abandoned claim.
    ensure!(
        took < Duration::from_secs(3),
        "the next request took {took:?}: it waited for the abandoned fetch"
    );
    let again = env.exchange(&token, &[]);
    ensure!(
        again.status == 200,
        "and again: {} {}",
        again.status,
        again.raw
    );
    let f = fetches(env, "abandoned")?;
    ensure!(
        f.0 <= 2 && f.1 <= 2,
        "{} discovery and {} JWKS fetches",
        f.0,
        f.1
    );
    Ok(())
}

/// Runs every case; reports all failures at once.
pub fn run(env: &Env) {
    let cases: &[crate::suite::Case] = &[
        ("8 and 64 concurrent cold requests", cold_herds),
        (
            "64 concurrent cold requests, slow upstream",
            cold_herd_slow_upstream,
        ),
        (
            "keys expiring under concurrent load",
            expiring_keys_under_load,
        ),
        (
            "failing upstream under concurrency",
            failing_upstream_under_concurrency,
        ),
        (
            "a client gone during a cold fetch",
            client_gone_during_a_cold_fetch,
        ),
        ("leak check", crate::suite::leak_check),
    ];
    crate::suite::run_all(env, cases);
}
