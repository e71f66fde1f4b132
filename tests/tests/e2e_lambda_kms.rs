//! The Lambda under `cargo lambda watch` signing with a KMS key (LocalStack's KMS): TxTokens
//! verify against the published JWKS; a disabled key and an unreachable KMS give 503 and no
//! token; and the latency of one exchange with the KMS signer against the local signer,
//! measured in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use txbridge_tests::procs::{Harness, TempDir, lambda_base_url, start_lambda};
use txbridge_tests::suite::{self, Env, Function, expect_error};
use txbridge_tests::{Running, free_port};

fn localstack_python() -> PathBuf {
    std::env::var_os("TXBRIDGE_LOCALSTACK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tools = std::env::var("TXBRIDGE_TOOLS").unwrap_or_else(|_| {
                format!(
                    "{}/.cache/txbridge",
                    std::env::var("HOME").unwrap_or_default()
                )
            });
            PathBuf::from(tools).join("venv-localstack/bin/python")
        })
}

/// LocalStack (KMS only) on a free loopback port, stopped with its process group on drop.
fn start_localstack(dir: &TempDir) -> (Running, String) {
    let python = localstack_python();
    assert!(
        python.exists(),
        "LocalStack missing: run `bash .ci/localstack.sh install`"
    );
    let port = free_port();
    let log = std::fs::File::create(dir.path("localstack.log")).unwrap();
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "localstack.runtime.main"])
        .env("DISABLE_EVENTS", "1")
        .env("GATEWAY_SERVER", "hypercorn")
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("SERVICES", "kms")
        .env("DNS_ADDRESS", "0")
        .env("LOCALSTACK_VOLUME_DIR", dir.path("volume"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut running = Running::new(endpoint.clone(), cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ok = reqwest::blocking::get(format!("{endpoint}/_localstack/health"))
            .and_then(|r| r.text())
            .is_ok_and(|b| {
                b.contains(r#""kms": "available""#) || b.contains(r#""kms": "running""#)
            });
        if ok {
            return (running, endpoint);
        }
        assert!(running.try_wait().is_none(), "LocalStack exited");
        assert!(Instant::now() < deadline, "LocalStack not ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Runs a boto3 snippet against LocalStack (boto3 ships in LocalStack's venv).
fn kms(endpoint: &str, code: &str) -> String {
    let script = format!(
        "import boto3\nkms = boto3.client('kms', endpoint_url='{endpoint}', region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test')\n{code}"
    );
    let out = Command::new(localstack_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn lambda_with_kms_signer() {
    let dir = TempDir::new("kms-e2e");
    let (localstack, endpoint) = start_localstack(&dir);
    let key_id = kms(
        &endpoint,
        "k = kms.create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY')['KeyMetadata']['KeyId']\n\
         kms.create_alias(AliasName='alias/txbridge-e2e', TargetKeyId=k)\nprint(k)",
    );

    let harness = Harness::start(&["name=alpha,alg=RS256"]).unwrap();
    let port = free_port();
    let issuer = lambda_base_url(port);
    let (local_config, _) = harness.config(&issuer).unwrap();
    let config = local_config.replace(
        "[signer]\nkind = \"local\"\n",
        "[signer]\nkind = \"kms\"\nkey_id = \"alias/txbridge-e2e\"\n",
    );
    assert!(config.contains("kind = \"kms\""), "{config}");
    let mut env_vars: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env_vars.push(("AWS_ENDPOINT_URL", &endpoint));
    let (kms_lambda, log, _d1) = start_lambda(port, &config, "", &env_vars).unwrap();
    let env = Env::new(
        harness,
        Function {
            base_url: kms_lambda.base_url.clone(),
            issuer: issuer.clone(),
            logs: vec![log],
            shell: suite::Shell::Lambda,
            config: config.clone(),
        },
        String::new(),
    );

    // Issued and verified against the JWKS (the KMS key's public key, kid = its thumbprint).
    let token = env.token("alpha", "payments", "checkout");
    let r = env.exchange(&token, &[]);
    assert_eq!(r.status, 200, "{}", r.raw);
    let jwks = env.jwks();
    let (header, claims) = suite::verify(
        &jwks,
        r.body["access_token"].as_str().unwrap(),
        &issuer,
        &issuer,
    )
    .unwrap();
    assert_eq!(header.typ.as_deref(), Some("txntoken+jwt"));
    assert_eq!(
        claims["sub"],
        "alpha:system:serviceaccount:payments:checkout"
    );
    assert!(
        !r.raw.contains(&key_id) && !jwks.to_string().contains(&key_id),
        "no key id of the cloud key in bodies"
    );

    // Latency: the same exchange through the local signer (same harness, same token), in the
    // same run.
    let local_port = free_port();
    let local_issuer = lambda_base_url(local_port);
    let (local_config, local_key) = env.harness.config(&local_issuer).unwrap();
    let (local_lambda, _log2, _d2) =
        start_lambda(local_port, &local_config, &local_key, &[]).unwrap();
    let client = reqwest::blocking::Client::new();
    let exchange_at = |base: &str| {
        let r = client
            .post(format!("{base}/token"))
            .form(&[
                ("grant_type", suite::TE),
                ("subject_token", token.as_str()),
                ("subject_token_type", suite::JWT),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    let time = |base: &str, n: u32| {
        for _ in 0..3 {
            exchange_at(base);
        }
        let started = Instant::now();
        for _ in 0..n {
            exchange_at(base);
        }
        started.elapsed() / n
    };
    let n = 30;
    let kms_t = time(&kms_lambda.base_url, n);
    let local_t = time(&local_lambda.base_url, n);
    println!(
        "exchange latency over loopback (cargo lambda watch, debug build, n={n}): KMS signer {kms_t:?}, local signer {local_t:?}, ratio {:.2}",
        kms_t.as_secs_f64() / local_t.as_secs_f64()
    );
    drop(local_lambda);

    // A disabled key: 503 with Retry-After, no token.
    kms(&endpoint, &format!("kms.disable_key(KeyId='{key_id}')"));
    let r = env.exchange(&token, &[]);
    expect_error(&r, 503, "temporarily_unavailable", "disabled KMS key").unwrap();
    assert!(r.headers.get("retry-after").is_some());
    assert!(
        !r.raw.contains(&key_id) && !r.raw.contains("arn:"),
        "no key id or ARN in the body: {}",
        r.raw
    );
    // And back when it is enabled again.
    kms(&endpoint, &format!("kms.enable_key(KeyId='{key_id}')"));
    assert_eq!(env.exchange(&token, &[]).status, 200);

    // KMS unreachable (LocalStack stopped): 503 with Retry-After within the signer's operation
    // timeout, no token, nothing of the SDK's error in the body; metadata still served.
    drop(localstack);
    let started = Instant::now();
    let r = env.exchange(&token, &[]);
    expect_error(&r, 503, "temporarily_unavailable", "KMS unreachable").unwrap();
    assert!(r.headers.get("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "KMS unreachable: answered after {:?}",
        started.elapsed()
    );
    for needle in ["arn:", "127.0.0.1", "dispatch", "connect", &key_id] {
        assert!(!r.raw.contains(needle), "body leaks {needle}: {}", r.raw);
    }
    assert_eq!(env.get("/.well-known/jwks.json").status, 200);
    assert_eq!(env.get("/healthz").status, 200);
    drop(kms_lambda);
}
