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

// ---------------------------------------------------------------------------------------------
// txbridge policy check | explain

const POLICY_CONFIG: &str = r#"issuer = "https://tts.example.com"

[[clusters]]
name = "prod"
issuer = "https://oidc.example.com/prod"
audiences = ["txbridge"]

[[policies]]
id = "checkout-orders"
cluster = "prod"
namespace = "payments"
service_account = "checkout"
scopes = ["orders:read", "orders:write"]
workloads = ["checkout-web"]
condition = 'subject.claims["kubernetes.io"].pod.name.startsWith("checkout-") && (!("orders:write" in request.scope) || request.request_details.ticket.startsWith("INC-"))'

[[policies]]
cluster = "*"
namespace = "team-*"
service_account = "*"
scopes = ["reports:read"]
"#;

/// A temp file removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("txbridge-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An unsigned ServiceAccount token of prod/payments/checkout in pod `pod`.
fn sa_token(pod: &str) -> String {
    let header = B64.encode(br#"{"alg":"RS256","kid":"k"}"#);
    let claims = json!({
        "iss": "https://oidc.example.com/prod", "sub": "system:serviceaccount:payments:checkout",
        "aud": ["txbridge"], "iat": 1, "exp": 2,
        "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "checkout", "uid": "u"},
            "pod": {"name": pod, "uid": "p"}}
    });
    format!(
        "{header}.{}.{}",
        B64.encode(claims.to_string()),
        B64.encode(b"not-a-signature")
    )
}

#[test]
fn policy_check_reports_every_problem_with_its_line_and_no_value() {
    let good = TempFile::new("good.toml", POLICY_CONFIG);
    let out = run(&["policy", "check", "--config", good.path()], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("valid"), "{}", out.stdout);

    let secret = "c2VjcmV0LWtleS1pbi10aGUtd3JvbmctZmllbGQ";
    let bad = POLICY_CONFIG
        .replace("name = \"prod\"", "name = \"Prod\"")
        .replace("startsWith(\"INC-\"))'", "startsWith(\"INC-\")) &&'")
        .replace(
            "audiences = [\"txbridge\"]",
            &format!("audiences = [\"txbridge\"]\nworkload_id = \"{secret},x\""),
        );
    let bad = TempFile::new("bad.toml", &bad);
    let out = run(&["policy", "check", "--config", bad.path()], "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    for want in [
        ":4: clusters[0].name",
        ":7: clusters[0].workload_id",
        "policies[0].condition of policy \"checkout-orders\" is not a valid CEL expression (column",
        "policies[0].cluster names no configured cluster",
    ] {
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
    }
    assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret));
    assert!(
        !out.stderr.contains("INC-"),
        "no part of the expression: {}",
        out.stderr
    );

    let out = run(
        &["policy", "check", "--config", "/nonexistent/txbridge.toml"],
        "",
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = run(&["policy", "check"], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn policy_explain_says_which_policy_and_why() {
    let config = TempFile::new("explain.toml", POLICY_CONFIG);
    let c = config.path();
    // A token of a checkout pod, asking for orders:write with a ticket: allowed.
    let out = run(
        &[
            "policy",
            "explain",
            "--config",
            c,
            "--token",
            "-",
            "--scope",
            "orders:write",
            "--request-details",
            r#"{"ticket":"INC-7"}"#,
            "--workload",
            "checkout-web",
        ],
        &sa_token("checkout-5f7c"),
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("NOT VERIFIED"), "{}", out.stderr);
    assert!(
        out.stdout.contains("policy checkout-orders: applies"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("policy policies[1]: does not apply: the namespace does not match"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("\"orders:write\" and req_wl checkout-web"),
        "{}",
        out.stdout
    );

    // Another pod: the condition is false; no ticket: an evaluation error counts as false.
    let out = run(
        &["policy", "explain", "--config", c, "--token", "-"],
        &sa_token("admin-1"),
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("the condition is false"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("refused: invalid_request (subject not authorized)"),
        "{}",
        out.stdout
    );
    let out = run(
        &[
            "policy",
            "explain",
            "--config",
            c,
            "--token",
            "-",
            "--scope",
            "orders:write",
            "--json",
        ],
        &sa_token("checkout-1"),
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["signature_checked"], false);
    assert_eq!(v["answer"], "refuse");
    assert_eq!(v["policies"][0]["id"], "checkout-orders");
    assert!(
        v["policies"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("could not be evaluated")
    );

    // Named subjects: a scope beyond the ceiling; a workload no policy allows.
    let out = run(
        &[
            "policy",
            "explain",
            "--config",
            c,
            "--subject",
            "prod/team-a/job",
            "--scope",
            "orders:read",
        ],
        "",
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("refused: invalid_scope"),
        "{}",
        out.stdout
    );
    let out = run(
        &[
            "policy",
            "explain",
            "--config",
            c,
            "--subject",
            "prod/team-a/job",
            "--workload",
            "checkout-web",
        ],
        "",
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("workload not authorized"),
        "{}",
        out.stdout
    );
    let out = run(
        &[
            "policy",
            "explain",
            "--config",
            c,
            "--subject",
            "prod/team-a/job",
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    // The token itself is never printed.
    let token = sa_token("checkout-1");
    let out = run(
        &["policy", "explain", "--config", c, "--token", "-", "--json"],
        &token,
    );
    assert!(!out.stdout.contains(token.split('.').nth(1).unwrap()));

    // Usage: neither or both of --token and --subject; a bad subject or request_details.
    for args in [
        vec!["policy", "explain", "--config", c],
        vec![
            "policy",
            "explain",
            "--config",
            c,
            "--token",
            "-",
            "--subject",
            "a/b/c",
        ],
        vec!["policy", "explain", "--config", c, "--subject", "a/b"],
        vec![
            "policy",
            "explain",
            "--config",
            c,
            "--subject",
            "a/b/c",
            "--request-details",
            "[1]",
        ],
    ] {
        let out = run(&args, "");
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
}
