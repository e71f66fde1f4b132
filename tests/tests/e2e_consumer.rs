//! Consumer-side interop: a TxToken issued by the Lambda under `cargo lambda watch` (real
//! emulator, real harness issuer) verified by the `txbridge` CLI, with `--jwks URL` and through
//! the service's discovery document. The Lambda's configured issuer is the URL it is reachable
//! at (`lambda_base_url`), so `<issuer>/.well-known/openid-configuration` is its metadata.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use txbridge_tests::procs::{Harness, lambda_base_url, start_lambda};
use txbridge_tests::suite::{CLUSTERS, JWT, TE, TXN};
use txbridge_tests::workspace_root;

/// Builds the CLI (the harness and the Lambda are built by `start_lambda`).
fn cli_bin() -> PathBuf {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args(["build", "-q", "-p", "txbridge-cli"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the txbridge CLI failed");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("debug/txbridge")
}

fn cli(bin: &PathBuf, args: &[&str], token: &str) -> (i32, String, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(token.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn exchange(base: &str, form: &[(&str, &str)]) -> Value {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/token"))
        .form(form)
        .send()
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().unwrap();
    assert!(
        status.is_success(),
        "exchange: {status} {} {}",
        body["error"],
        body["error_description"]
    );
    body
}

#[test]
fn lambda_tokens_verify_with_the_cli() {
    let bin = cli_bin();
    let harness = Harness::start(&CLUSTERS).unwrap();
    let port = txbridge_tests::free_port();
    let issuer = lambda_base_url(port);
    let (config, key) = harness.config(&issuer).unwrap();
    let (running, _log, _dir) = start_lambda(port, &config, &key, &[]).unwrap();

    let sa = harness
        .token("alpha", "payments", "checkout", &["txbridge"], 600)
        .unwrap();
    let body = exchange(
        &running.base_url,
        &[
            ("grant_type", TE),
            ("subject_token", &sa),
            ("subject_token_type", JWT),
            ("requested_token_type", TXN),
            ("scope", "orders:read orders:write"),
            ("request_details", r#"{"order":"42"}"#),
        ],
    );
    let token = body["access_token"].as_str().unwrap().to_owned();

    let jwks_url = format!("{issuer}/.well-known/jwks.json");
    let base = ["verify", "--issuer", &issuer, "--audience", &issuer];
    let with_jwks: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--jwks", &jwks_url, "--insecure-allow-http-loopback"])
        .collect();
    let with_discovery: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--insecure-allow-http-loopback"])
        .collect();
    let mut txn = String::new();
    let mut req_wl = String::new();
    for (mode, args) in [("--jwks URL", &with_jwks), ("discovery", &with_discovery)] {
        let (code, stdout, stderr) = cli(&bin, args, &token);
        assert_eq!(code, 0, "{mode}: {stderr}");
        let claims: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(claims["iss"], issuer.as_str(), "{mode}");
        assert_eq!(
            claims["sub"], "alpha:system:serviceaccount:payments:checkout",
            "{mode}"
        );
        assert_eq!(claims["tctx"]["order"], "42", "{mode}");
        txn = claims["txn"].as_str().unwrap().to_owned();
        req_wl = claims["req_wl"].as_str().unwrap().to_owned();
        assert!(!stdout.contains(&token) && !stderr.contains(&token));
    }

    // The wrong trust domain, and an http issuer without the dev flag: exit 1, one line.
    let wrong_aud = [
        "verify",
        "--issuer",
        &issuer,
        "--audience",
        "https://other.example",
    ];
    let mut args = wrong_aud.to_vec();
    args.push("--insecure-allow-http-loopback");
    let (code, _, stderr) = cli(&bin, &args, &token);
    assert_eq!((code, stderr.lines().count()), (1, 1), "{stderr}");
    let (code, _, stderr) = cli(&bin, &base, &token);
    assert_eq!(code, 1, "http issuer needs the flag: {stderr}");

    // A replacement by the Lambda verifies too, with the same txn and a narrower scope; the
    // replacing workload authenticates with its own SA token.
    let actor = harness
        .token("alpha", "orders", "worker", &["txbridge"], 600)
        .unwrap();
    let body = exchange(
        &running.base_url,
        &[
            ("grant_type", TE),
            ("subject_token", &token),
            ("subject_token_type", TXN),
            ("requested_token_type", TXN),
            ("scope", "orders:read"),
            ("actor_token", &actor),
            ("actor_token_type", JWT),
        ],
    );
    let replaced = body["access_token"].as_str().unwrap();
    let (code, stdout, stderr) = cli(&bin, &with_discovery, replaced);
    assert_eq!(code, 0, "replacement: {stderr}");
    let claims: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(claims["txn"], txn.as_str());
    assert_eq!(claims["scope"], serde_json::json!(["orders:read"]));
    let chain = claims["req_wl"].as_str().unwrap();
    assert!(
        chain.starts_with(&format!("{req_wl},")) && chain.split(',').count() == 2,
        "the actor joins the call chain: {chain}"
    );
    drop(running);
}
