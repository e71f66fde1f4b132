//! The Lambda under `cargo lambda watch` signing with a KMS key (LocalStack's KMS): TxTokens
//! verify against the published JWKS; a disabled key and an unreachable KMS give 503 and no
//! token; and the latency of one exchange with the KMS signer against the local signer,
//! measured in the same run. And with a KMS-wrapped key (`kind = "kms-wrapped"`): one Decrypt
//! at cold start, then no KMS at all per token; every way the key cannot be had at cold start is
//! answered with 503 and Retry-After, and the function starts once it can.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use txbridge_test_support::localstack::{AWS_ENV, LocalStack, kms};
use txbridge_tests::free_port;
use txbridge_tests::procs::{Harness, lambda_base_url, start_lambda, start_lambda_answering};
use txbridge_tests::suite::{self, Env, Function, expect_error};

#[test]
fn lambda_with_kms_signer() {
    // Its own LocalStack, whatever TXBRIDGE_TEST_KMS_ENDPOINT says: the test stops it.
    let localstack = LocalStack::launch();
    let endpoint = localstack.endpoint().to_owned();
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
    env_vars.push(("RUST_LOG", suite::TRACE));
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

/// A wrapped P-256 key pair made by `GenerateDataKeyPair` under `key_id` with `context` (a
/// Python dict literal, or `None`): (base64 PrivateKeyCiphertextBlob, base64 PKCS#8 plaintext,
/// base64 SPKI). The plaintext is only for the leak check.
fn wrapped_pair(
    endpoint: &str,
    key_id: &str,
    spec: &str,
    context: &str,
) -> (String, String, String) {
    let out = kms(
        endpoint,
        &format!(
            "import base64\nargs = dict(KeyId='{key_id}', KeyPairSpec='{spec}')\nctx = {context}\n\
             if ctx is not None: args['EncryptionContext'] = ctx\n\
             r = kms.generate_data_key_pair(**args)\n\
             print(base64.b64encode(r['PrivateKeyCiphertextBlob']).decode())\n\
             print(base64.b64encode(r['PrivateKeyPlaintext']).decode())\n\
             print(base64.b64encode(r['PublicKey']).decode())"
        ),
    );
    let mut lines = out.lines().map(str::to_owned);
    (
        lines.next().unwrap(),
        lines.next().unwrap(),
        lines.next().unwrap(),
    )
}

const CONTEXT: &str = "{'txbridge': 'signing-key'}";

/// The harness config with a kms-wrapped signer.
fn wrapped_config(harness_config: &str, wrapped: &str) -> String {
    let config = harness_config.replace(
        "[signer]\nkind = \"local\"\n",
        &format!("[signer]\nkind = \"kms-wrapped\"\nwrapped_key = \"{wrapped}\"\n"),
    );
    assert!(config.contains("kms-wrapped"), "{config}");
    config
}

/// Every request to a function that could not start: the contract's 503, nothing else.
fn assert_unavailable(base_url: &str, what: &str, secrets: &[&str]) {
    let client = reqwest::blocking::Client::new();
    for (method, path) in [("POST", "/token"), ("GET", "/.well-known/jwks.json")] {
        let r = client
            .request(method.parse().unwrap(), format!("{base_url}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange")
            .send()
            .unwrap();
        assert_eq!(r.status(), 503, "{what}: {method} {path}");
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1, "{what}");
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["error"], "temporarily_unavailable", "{what}: {body}");
        assert!(body.get("access_token").is_none() && body.get("keys").is_none());
        let text = body.to_string();
        for needle in ["arn:", "Exception", "kms", "KMS", "127.0.0.1", "timeout"]
            .iter()
            .chain(secrets)
        {
            assert!(
                !text.contains(needle),
                "{what}: the body leaks {needle}: {text}"
            );
        }
    }
}

#[test]
fn lambda_with_kms_wrapped_signer() {
    // Its own LocalStack, whatever TXBRIDGE_TEST_KMS_ENDPOINT says: the test stops it.
    let localstack = LocalStack::launch();
    let endpoint = localstack.endpoint().to_owned();
    let wrapping = kms(
        &endpoint,
        "print(kms.create_key(KeySpec='SYMMETRIC_DEFAULT', KeyUsage='ENCRYPT_DECRYPT')['KeyMetadata']['KeyId'])",
    );
    let (wrapped, plaintext, spki) = wrapped_pair(&endpoint, &wrapping, "ECC_NIST_P256", CONTEXT);
    let harness = Harness::start(&["name=alpha,alg=RS256"]).unwrap();
    let port = free_port();
    let issuer = lambda_base_url(port);
    let (local_config, _) = harness.config(&issuer).unwrap();
    let config = wrapped_config(&local_config, &wrapped);
    let mut env_vars: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env_vars.push(("AWS_ENDPOINT_URL", &endpoint));
    env_vars.push(("RUST_LOG", suite::TRACE));
    let (lambda, log, _d1) = start_lambda(port, &config, "", &env_vars).unwrap();
    let env = Env::new(
        harness,
        Function {
            base_url: lambda.base_url.clone(),
            issuer: issuer.clone(),
            logs: vec![log],
            shell: suite::Shell::Lambda,
            config: config.clone(),
        },
        String::new(),
    );
    env.remember(&plaintext);
    env.remember(&wrapped);

    // Issued, verified against the JWKS, whose key is the wrapped pair's public key.
    let token = env.token("alpha", "payments", "checkout");
    let r = env.exchange(&token, &[("scope", "orders:read")]);
    assert_eq!(r.status, 200, "{}", r.raw);
    let jwks = env.jwks();
    suite::verify(
        &jwks,
        r.body["access_token"].as_str().unwrap(),
        &issuer,
        &issuer,
    )
    .unwrap();
    let jwk = &jwks["keys"][0];
    let spki = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &spki).unwrap();
    let (x, y) = (jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap());
    let b64url =
        |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    // An uncompressed P-256 SPKI ends with 0x04 || x || y.
    assert_eq!(
        (
            b64url(&spki[spki.len() - 64..spki.len() - 32]),
            b64url(&spki[spki.len() - 32..])
        ),
        (x.to_owned(), y.to_owned()),
        "the published key is the wrapped pair's public key"
    );
    // No KMS call per token: with KMS gone, tokens are still issued.
    drop(localstack);
    for _ in 0..5 {
        let r = env.exchange(&token, &[]);
        assert_eq!(r.status, 200, "signing needs no KMS: {}", r.raw);
    }
    suite::leak_check(&env).unwrap();
    drop(lambda);
}

/// Every way the wrapped key cannot be had at cold start: wrong encryption context, a disabled
/// or deleted wrapping key, a blob that is not a P-256 key, KMS refusing connections or silent.
/// The function keeps answering 503 with Retry-After (no crash loop), and starts on a later
/// request once the key can be had.
#[test]
fn lambda_kms_wrapped_cold_start_failures() {
    let localstack = LocalStack::start();
    let endpoint = localstack.endpoint().to_owned();
    let wrapping = kms(
        &endpoint,
        "print(kms.create_key(KeySpec='SYMMETRIC_DEFAULT', KeyUsage='ENCRYPT_DECRYPT')['KeyMetadata']['KeyId'])",
    );
    let doomed = kms(
        &endpoint,
        "print(kms.create_key(KeySpec='SYMMETRIC_DEFAULT', KeyUsage='ENCRYPT_DECRYPT')['KeyMetadata']['KeyId'])",
    );
    let (good, good_plain, _) = wrapped_pair(&endpoint, &wrapping, "ECC_NIST_P256", CONTEXT);
    let (other_ctx, _, _) = wrapped_pair(
        &endpoint,
        &wrapping,
        "ECC_NIST_P256",
        "{'txbridge': 'other'}",
    );
    let (rsa, rsa_plain, _) = wrapped_pair(&endpoint, &wrapping, "RSA_2048", CONTEXT);
    let (deleted, _, _) = wrapped_pair(&endpoint, &doomed, "ECC_NIST_P256", CONTEXT);
    kms(
        &endpoint,
        &format!("kms.schedule_key_deletion(KeyId='{doomed}', PendingWindowInDays=7)"),
    );
    let harness = Harness::start(&["name=alpha,alg=RS256"]).unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_endpoint = format!("http://{}", silent.local_addr().unwrap());
    let refused_endpoint = format!("http://127.0.0.1:{}", free_port());

    // (what, wrapped key, KMS endpoint). The KMS client's own bounds (a silent KMS: about 5 s)
    // are tested in signer/tests/kms.rs; here, that the function answers and keeps answering.
    let cases = [
        ("another encryption context", &other_ctx, &endpoint),
        ("a blob of an RSA key pair", &rsa, &endpoint),
        ("a deleted wrapping key", &deleted, &endpoint),
        ("KMS refusing connections", &good, &refused_endpoint),
        ("KMS accepting and never answering", &good, &silent_endpoint),
    ];
    for (what, wrapped, kms_endpoint) in cases {
        let port = free_port();
        let (config, _) = harness.config(&lambda_base_url(port)).unwrap();
        let config = wrapped_config(&config, wrapped);
        let mut env_vars: Vec<(&str, &str)> = AWS_ENV.to_vec();
        env_vars.push(("AWS_ENDPOINT_URL", kms_endpoint));
        env_vars.push(("RUST_LOG", suite::TRACE));
        let (lambda, log, _d) = start_lambda_answering(port, &config, "", &env_vars).unwrap();
        // Within the restart interval a failed start is not tried again: answers come at once.
        let started = Instant::now();
        assert_unavailable(&lambda.base_url, what, &[&good_plain, &rsa_plain]);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{what}: 503s took {:?}",
            started.elapsed()
        );
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.contains("txbridge failed to start"),
            "{what}: not logged"
        );
        for secret in [&good_plain, &rsa_plain] {
            for w in secret.as_bytes().windows(16) {
                assert!(
                    !logged.as_bytes().windows(16).any(|l| l == w),
                    "{what}: a piece of a private key in the log"
                );
            }
        }
        drop(lambda);
    }

    // A disabled wrapping key: 503 until it is enabled, then the function starts on a later
    // request (at most every RESTART_INTERVAL), without a restart.
    kms(&endpoint, &format!("kms.disable_key(KeyId='{wrapping}')"));
    let port = free_port();
    let issuer = lambda_base_url(port);
    let (config, _) = harness.config(&issuer).unwrap();
    let config = wrapped_config(&config, &good);
    let mut env_vars: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env_vars.push(("AWS_ENDPOINT_URL", &endpoint));
    let (lambda, _log, _d) = start_lambda_answering(port, &config, "", &env_vars).unwrap();
    assert_unavailable(&lambda.base_url, "a disabled wrapping key", &[&good_plain]);
    kms(&endpoint, &format!("kms.enable_key(KeyId='{wrapping}')"));
    let token = harness
        .token("alpha", "payments", "checkout", &["txbridge"], 600)
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + txbridge_core::RESTART_INTERVAL + Duration::from_secs(5);
    loop {
        let r = client
            .post(format!("{}/token", lambda.base_url))
            .form(&[
                ("grant_type", suite::TE),
                ("subject_token", token.as_str()),
                ("subject_token_type", suite::JWT),
            ])
            .send()
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "the function never started");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(lambda);
    drop(silent);
}
