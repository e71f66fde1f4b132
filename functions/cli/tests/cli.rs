//! The built `txbridge` binary: exit codes 0/1/2, output on the right stream, never the token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use txbridge_signer::{LocalSigner, Signer as _};

const ISS: &str = "https://tts.example.test";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], stdin: &str) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_txbridge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The process may exit (usage error) before reading stdin: ignore a broken pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(signer: &LocalSigner, claims: &Value) -> String {
    let header = json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": signer.key_id()});
    let input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(&header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = futures::executor::block_on(signer.sign(input.as_bytes())).unwrap();
    format!("{input}.{}", B64.encode(sig))
}

fn claims(exp_in: i64) -> Value {
    let now = now();
    json!({
        "iss": ISS, "aud": ISS, "iat": now - 5, "exp": (now as i64 + exp_in) as u64,
        "txn": "txn-cli-1", "sub": "alpha:system:serviceaccount:payments:checkout",
        "scope": "orders:read", "req_wl": "web", "tctx": {"order": "42"}, "rctx": {},
    })
}

/// A temp JWKS file holding the signer's public key.
struct Jwks(std::path::PathBuf);

impl Jwks {
    fn new(signer: &LocalSigner) -> Jwks {
        let path = std::env::temp_dir().join(format!(
            "txbridge-cli-test-{}-{}.json",
            std::process::id(),
            signer.key_id()
        ));
        std::fs::write(&path, json!({"keys": [signer.public_jwk()]}).to_string()).unwrap();
        Jwks(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn assert_no_token(out: &Out, token: &str, what: &str) {
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(
            !out.stdout.contains(part) && !out.stderr.contains(part),
            "{what}: a part of the token was printed"
        );
    }
}

#[test]
fn verify_exit_codes() {
    let signer = LocalSigner::generate();
    let jwks = Jwks::new(&signer);
    let good = sign(&signer, &claims(300));
    let verify = [
        "verify",
        "--issuer",
        ISS,
        "--audience",
        ISS,
        "--jwks",
        jwks.path(),
    ];

    let out = run(&verify, &format!("{good}\n"));
    assert_eq!(out.code, 0, "valid: {}", out.stderr);
    let c: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(c["txn"], "txn-cli-1");
    assert_eq!(c["scope"], json!(["orders:read"]));
    assert_eq!(c["tctx"]["order"], "42");
    assert!(out.stderr.is_empty());
    assert_no_token(&out, &good, "valid");

    let expired = sign(&signer, &claims(-60));
    let foreign = sign(&LocalSigner::generate(), &claims(300));
    let invalid: &[(&str, Vec<&str>, &str, &str)] = &[
        ("expired", verify.to_vec(), &expired, "expired"),
        (
            "within the leeway",
            {
                let mut a = verify.to_vec();
                a.extend(["--leeway", "0s"]);
                a
            },
            &sign(&signer, &claims(-1)),
            "expired",
        ),
        ("foreign key", verify.to_vec(), &foreign, "key"),
        (
            "wrong audience",
            vec![
                "verify",
                "--issuer",
                ISS,
                "--audience",
                "https://other",
                "--jwks",
                jwks.path(),
            ],
            &good,
            "audience",
        ),
        (
            "wrong issuer",
            vec![
                "verify",
                "--issuer",
                "https://other",
                "--audience",
                ISS,
                "--jwks",
                jwks.path(),
            ],
            &good,
            "issuer",
        ),
        ("garbage", verify.to_vec(), "not-a-token", "compact JWS"),
        ("empty stdin", verify.to_vec(), "", "no token"),
        (
            "missing JWKS file",
            vec![
                "verify",
                "--issuer",
                ISS,
                "--audience",
                ISS,
                "--jwks",
                "/nonexistent/jwks.json",
            ],
            &good,
            "JWKS file",
        ),
        (
            "unreachable JWKS URL",
            vec![
                "verify",
                "--issuer",
                ISS,
                "--audience",
                ISS,
                "--jwks",
                "http://127.0.0.1:1/jwks.json",
                "--insecure-allow-http-loopback",
            ],
            &good,
            "unavailable",
        ),
        (
            "http issuer without the insecure flag",
            vec![
                "verify",
                "--issuer",
                "http://127.0.0.1:1",
                "--audience",
                ISS,
            ],
            &good,
            "issuer",
        ),
    ];
    for (name, args, stdin, reason) in invalid {
        let out = run(args, stdin);
        assert_eq!(out.code, 1, "{name}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{name}: {}", out.stdout);
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "{name}: one line: {}",
            out.stderr
        );
        assert!(out.stderr.contains(reason), "{name}: {}", out.stderr);
        assert_no_token(&out, stdin, name);
    }
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["verify"],
        &["verify", "--issuer", ISS],
        &["verify", "--audience", ISS],
        &["verify", "--issuer", "not a url", "--audience", ISS],
        &[
            "verify",
            "--issuer",
            ISS,
            "--audience",
            ISS,
            "--leeway",
            "soon",
        ],
        &["verify", "--issuer", ISS, "--audience", ISS, "--bogus"],
        &["decode", "extra"],
    ];
    for args in cases {
        let out = run(args, "x.y.z");
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(run(&["--help"], "").code, 0);
    assert_eq!(run(&["--version"], "").code, 0);
}

#[test]
fn decode_says_not_verified() {
    let signer = LocalSigner::generate();
    let token = sign(&signer, &claims(-600));
    let out = run(&["decode"], &token);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("NOT VERIFIED"), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["header"]["typ"], "txntoken+jwt");
    assert_eq!(v["claims"]["txn"], "txn-cli-1");
    assert_no_token(&out, &token, "decode");

    let out = run(&["decode"], "garbage");
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}
