//! `KmsSigner` against LocalStack's KMS: a real KMS-compatible server (no Docker), which gets
//! `MessageType=DIGEST`, disabled keys and key states right. Signatures are always checked by an
//! independent verifier on the published JWK, never with KMS `Verify`.
//!
//! One `#[test]` starts LocalStack once on a free loopback port (or uses the endpoint in
//! `TXBRIDGE_TEST_KMS_ENDPOINT`), runs every case in one runtime, and stops it. Each case makes
//! its own keys. LocalStack comes from the venv made by `bash .ci/localstack.sh install`
//! (`TXBRIDGE_LOCALSTACK_PYTHON`, default `${TXBRIDGE_TOOLS:-~/.cache/txbridge}/venv-localstack`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_kms::Client;
use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeyPairSpec, DataKeySpec, KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64STD, URL_SAFE_NO_PAD as B64URL};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::DecodePublicKey as _;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use txbridge_signer::{
    KeyError, KeySet, KmsSigner, KmsSignerOptions, LocalSigner, SignError, Signer,
    WRAPPED_KEY_CONTEXT, der_to_jose_low_s, unwrap_signing_key_from,
};
use txbridge_test_support::localstack::LocalStack;

const REGION: &str = "us-east-1";
/// Upper bound for "fails fast" on a refused connection (two attempts, each refused at once).
const REFUSED_WITHIN: Duration = Duration::from_secs(3);
/// Upper bound for an endpoint that never answers, with the default 5 s operation timeout.
const HANG_WITHIN: Duration = Duration::from_secs(8);

#[test]
fn kms_suite() {
    let localstack = LocalStack::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ctx = Ctx::new(localstack.endpoint()).await;
        let suite_start = Instant::now();
        macro_rules! case {
            ($name:ident) => {{
                let start = Instant::now();
                $name(&ctx).await;
                println!(
                    "kms case {:<28} ok in {:?}",
                    stringify!($name),
                    start.elapsed()
                );
            }};
        }
        case!(contract_one_call_per_signature_low_s);
        case!(accepts_every_key_id_form_and_kid_is_stable);
        case!(from_env_in_a_fresh_process);
        case!(rejects_keys_that_are_not_p256_signing_keys);
        case!(disabled_and_deleted_keys_are_unusable);
        case!(refused_endpoint_is_unavailable_then_recovers);
        case!(silent_endpoint_times_out);
        case!(rotation_via_alias_update);
        case!(latency_kms_vs_local);
        case!(wrapped_key_one_decrypt_then_local_signing);
        case!(wrapped_key_failures_are_errors_without_secrets);
        case!(wrapped_key_unreachable_kms_is_bounded);
        println!("kms suite: {:?} in all", suite_start.elapsed());
    });
}

/// Run by `from_env_in_a_fresh_process` in a child process whose environment carries the
/// AWS settings (the variables cannot be set safely inside this multi-threaded test binary).
/// Does nothing when run by hand without that environment.
#[test]
#[ignore = "helper: run by kms_suite in a child process"]
fn from_env_child() {
    let Ok(key_id) = std::env::var("TXBRIDGE_TEST_FROM_ENV_KEY") else {
        return;
    };
    let expected_kid = std::env::var("TXBRIDGE_TEST_FROM_ENV_KID").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let start = Instant::now();
        let signer = KmsSigner::from_env(&key_id, KmsSignerOptions::default())
            .await
            .unwrap();
        let constructed = start.elapsed();
        assert_eq!(signer.key_id(), expected_kid);
        // Credentials and region come from the environment: nothing waits on instance metadata.
        assert!(
            constructed < Duration::from_secs(2),
            "from_env took {constructed:?}"
        );
        common::check_signer_contract(&signer, 2).await;
        println!("from_env ok: constructed in {constructed:?}");
    });
}

// ----------------------------------------------------------------------------------------------
// Cases
// ----------------------------------------------------------------------------------------------

/// The shared contract, through a counting proxy: one `GetPublicKey` at construction, then
/// exactly one `Sign` per signature. Raw KMS signatures are high-S about half the time; the
/// signer must normalise them.
async fn contract_one_call_per_signature_low_s(ctx: &Ctx) {
    let key = ctx
        .create_key(KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await;
    let proxy = Proxy::start(&ctx.endpoint).await;
    let signer = signer_at(&proxy.endpoint(), &key.id).await.unwrap();
    assert_eq!(
        proxy.calls(),
        (1, 0),
        "construction: one GetPublicKey, no Sign"
    );

    common::check_signer_contract(&signer, 64).await;
    assert_eq!(
        proxy.calls(),
        (1, 64),
        "one Sign call per signature, no other calls"
    );

    // The same key signing raw (as KMS returns it): some DER signatures are high-S, and their
    // normalised form verifies on the published JWK.
    let jwk = signer.public_jwk();
    let mut high_s = 0;
    for i in 0..32 {
        let input = format!("eyJhbGciOiJFUzI1NiJ9.eyJyYXciOj{i}fQ");
        let der = ctx.raw_sign(&key.id, input.as_bytes()).await;
        let raw = p256::ecdsa::Signature::from_der(&der).unwrap();
        if raw.normalize_s().is_some() {
            high_s += 1;
        }
        let jose = der_to_jose_low_s(&der).unwrap();
        assert!(common::is_low_s(&jose));
        assert!(common::verify_with_jsonwebtoken(
            jwk,
            input.as_bytes(),
            &jose
        ));
        assert!(common::verify_with_p256(jwk, input.as_bytes(), &jose));
    }
    println!("  raw KMS signatures: {high_s}/32 high-S (normalised by the signer)");
    assert!(
        high_s > 0,
        "no high-S raw signature in 32: low-S normalisation not exercised"
    );
}

/// Key id, key ARN, alias name and alias ARN load the same key, and two constructions with
/// fresh clients (two cold starts) publish the same kid.
async fn accepts_every_key_id_form_and_kid_is_stable(ctx: &Ctx) {
    let key = ctx
        .create_key(KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await;
    let alias = ctx.create_alias(&key.id).await;
    let alias_arn = key.alias_arn(&alias);
    let mut kids = Vec::new();
    for key_id in [&key.id, &key.arn, &alias, &alias_arn, &key.id] {
        let signer = signer_at(&ctx.endpoint, key_id).await.unwrap();
        let sig = signer.sign(b"eyJhIjoxfQ.eyJiIjoyfQ").await.unwrap();
        assert!(common::verify_with_p256(
            signer.public_jwk(),
            b"eyJhIjoxfQ.eyJiIjoyfQ",
            &sig
        ));
        kids.push(signer.key_id().to_owned());
    }
    assert!(
        kids.windows(2).all(|w| w[0] == w[1]),
        "kids differ: {kids:?}"
    );
    // Debug output names the kid, not the key ARN.
    let signer = signer_at(&ctx.endpoint, &key.arn).await.unwrap();
    let debug = format!("{signer:?}");
    assert!(
        debug.contains(&kids[0]) && !debug.contains(&key.id),
        "{debug}"
    );
}

/// `KmsSigner::from_env` in a child process with only the standard AWS variables set
/// (no `AWS_EC2_METADATA_DISABLED`): it must find region, credentials and endpoint there.
async fn from_env_in_a_fresh_process(ctx: &Ctx) {
    let key = ctx
        .create_key(KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await;
    let alias = ctx.create_alias(&key.id).await;
    let kid = signer_at(&ctx.endpoint, &key.id)
        .await
        .unwrap()
        .key_id()
        .to_owned();
    let home = std::env::temp_dir().join(format!("txbridge-kms-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "from_env_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOME", &home)
        .env("AWS_ENDPOINT_URL", &ctx.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("TXBRIDGE_TEST_FROM_ENV_KEY", &alias)
        .env("TXBRIDGE_TEST_FROM_ENV_KID", &kid);
    for var in [
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_SESSION_TOKEN",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ] {
        command.env_remove(var);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&home);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("from_env ok"),
        "child failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some(line) = stdout.lines().find(|l| l.contains("from_env ok")) {
        println!("  {line}");
    }
}

/// Keys that are not P-256 signing keys fail at construction with a clear error that echoes
/// neither the key id nor an ARN.
async fn rejects_keys_that_are_not_p256_signing_keys(ctx: &Ctx) {
    let cases: &[(&str, KeySpec, KeyUsageType)] = &[
        ("rsa 2048", KeySpec::Rsa2048, KeyUsageType::SignVerify),
        ("p-384", KeySpec::EccNistP384, KeyUsageType::SignVerify),
        (
            "secp256k1",
            KeySpec::EccSecgP256K1,
            KeyUsageType::SignVerify,
        ),
        (
            "symmetric",
            KeySpec::SymmetricDefault,
            KeyUsageType::EncryptDecrypt,
        ),
        (
            "p-256 key agreement",
            KeySpec::EccNistP256,
            KeyUsageType::KeyAgreement,
        ),
        ("hmac", KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac),
    ];
    for (name, spec, usage) in cases {
        let key = ctx.create_key(spec.clone(), usage.clone()).await;
        let err = signer_at(&ctx.endpoint, &key.id).await.expect_err(name);
        let message = err.to_string();
        assert!(matches!(err, KeyError::Unsupported(_)), "{name}: {err:?}");
        assert!(
            !message.contains(&key.id) && !message.contains("arn:"),
            "{name}: {message}"
        );
        println!("  {name:<20} rejected: {message}");
    }
    for (name, key_id) in [
        (
            "unknown key",
            "0b7c6c6e-7f5c-4d55-9a3e-3c1d1f0e9a11".to_owned(),
        ),
        ("unknown alias", "alias/txbridge-no-such-alias".to_owned()),
    ] {
        let err = signer_at(&ctx.endpoint, &key_id).await.expect_err(name);
        let message = err.to_string();
        assert!(matches!(err, KeyError::Unsupported(_)), "{name}: {err:?}");
        assert!(
            !message.contains(&key_id) && !message.contains("arn:"),
            "{name}: {message}"
        );
        println!("  {name:<20} rejected: {message}");
    }
    assert!(matches!(
        signer_at(&ctx.endpoint, " ").await,
        Err(KeyError::Missing)
    ));
}

/// A disabled key makes signing fail as a configuration problem (not a retryable outage), and
/// works again once re-enabled; a key pending deletion is unusable too.
async fn disabled_and_deleted_keys_are_unusable(ctx: &Ctx) {
    let key = ctx
        .create_key(KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await;
    let signer = signer_at(&ctx.endpoint, &key.id).await.unwrap();
    signer.sign(b"a.b").await.unwrap();

    ctx.admin
        .disable_key()
        .key_id(&key.id)
        .send()
        .await
        .unwrap();
    let err = signer.sign(b"a.b").await.expect_err("disabled key signs");
    assert!(
        matches!(&err, SignError::KeyUnusable { code } if code == "DisabledException"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("arn:"));
    println!("  disabled key: {err}");
    // AWS KMS refuses GetPublicKey on a disabled key; LocalStack serves it. Either way a cold
    // start never yields a signer that can sign.
    match signer_at(&ctx.endpoint, &key.id).await {
        Err(err) => assert!(
            matches!(&err, KeyError::Unsupported(m) if m.contains("DisabledException")),
            "{err:?}"
        ),
        Ok(cold) => {
            let err = cold
                .sign(b"a.b")
                .await
                .expect_err("cold signer on disabled key signs");
            assert!(matches!(err, SignError::KeyUnusable { .. }), "{err:?}");
            println!("  disabled key: GetPublicKey served (LocalStack), Sign refused");
        }
    }

    ctx.admin.enable_key().key_id(&key.id).send().await.unwrap();
    let sig = signer.sign(b"a.b").await.unwrap();
    assert!(common::verify_with_p256(signer.public_jwk(), b"a.b", &sig));

    ctx.admin
        .schedule_key_deletion()
        .key_id(&key.id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let err = signer
        .sign(b"a.b")
        .await
        .expect_err("key pending deletion signs");
    assert!(
        matches!(&err, SignError::KeyUnusable { code } if code == "KMSInvalidStateException"),
        "{err:?}"
    );
    println!("  key pending deletion: {err}");
}

/// KMS goes away (connections refused, open ones reset) mid-run: signing fails fast as
/// `Unavailable`, and the same signer recovers once the endpoint is back.
async fn refused_endpoint_is_unavailable_then_recovers(ctx: &Ctx) {
    let key = ctx
        .create_key(KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await;
    let proxy = Proxy::start(&ctx.endpoint).await;
    let signer = signer_at(&proxy.endpoint(), &key.id).await.unwrap();
    signer.sign(b"before.outage").await.unwrap();

    proxy.set(Mode::Refuse).await;
    for _ in 0..2 {
        let start = Instant::now();
        let err = signer
            .sign(b"during.outage")
            .await
            .expect_err("signed while KMS is down");
        let elapsed = start.elapsed();
        assert!(matches!(err, SignError::Unavailable { .. }), "{err:?}");
        assert!(
            elapsed < REFUSED_WITHIN,
            "refused endpoint took {elapsed:?}"
        );
        println!("  endpoint down: {err} after {elapsed:?}");
    }

    proxy.set(Mode::Forward).await;
    let sig = signer
        .sign(b"after.outage")
        .await
        .expect("no recovery after the outage");
    assert!(common::verify_with_p256(
        signer.public_jwk(),
        b"after.outage",
        &sig
    ));
}

/// An endpoint that accepts TCP and never answers: construction and signing both give up
/// within the configured operation timeout instead of hanging.
async fn silent_endpoint_times_out(ctx: &Ctx) {
    let key = ctx
        .create_key(KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await;

    let silent = SilentListener::start(Duration::from_secs(30));
    let start = Instant::now();
    let err = signer_at(&silent.endpoint(), &key.id)
        .await
        .expect_err("constructed on silence");
    let elapsed = start.elapsed();
    assert!(
        matches!(&err, KeyError::Backend(code) if code == "timeout"),
        "{err:?}"
    );
    assert!(
        elapsed < HANG_WITHIN,
        "construction on a silent endpoint took {elapsed:?}"
    );
    println!("  silent endpoint at construction: {err} after {elapsed:?}");

    let proxy = Proxy::start(&ctx.endpoint).await;
    let signer = signer_at(&proxy.endpoint(), &key.id).await.unwrap();
    signer.sign(b"before.silence").await.unwrap();
    proxy.set(Mode::Blackhole).await;
    let start = Instant::now();
    let err = signer
        .sign(b"during.silence")
        .await
        .expect_err("signed on silence");
    let elapsed = start.elapsed();
    assert!(
        matches!(&err, SignError::Unavailable { code } if code == "timeout"),
        "{err:?}"
    );
    assert!(
        elapsed < HANG_WITHIN,
        "signing on a silent endpoint took {elapsed:?}"
    );
    println!("  silent endpoint while signing: {err} after {elapsed:?}");
    proxy.set(Mode::Forward).await;
    signer
        .sign(b"after.silence")
        .await
        .expect("no recovery after silence");
}

/// Rotation is an alias update: a running signer keeps signing with the key it publishes, the
/// next construction picks the new key, and the previous key's JWK, fetched by key id, keeps
/// old tokens verifiable during the overlap.
async fn rotation_via_alias_update(ctx: &Ctx) {
    let key_a = ctx
        .create_key(KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await;
    let key_b = ctx
        .create_key(KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await;
    let alias = ctx.create_alias(&key_a.id).await;

    let old = signer_at(&ctx.endpoint, &alias).await.unwrap();
    let old_input = b"eyJraWQiOiJhIn0.eyJvbGQiOnRydWV9";
    let old_sig = old.sign(old_input).await.unwrap();

    ctx.admin
        .update_alias()
        .alias_name(&alias)
        .target_key_id(&key_b.id)
        .send()
        .await
        .unwrap();

    // Still warm: the old signer signs with A (resolved at construction), never with B.
    let warm_sig = old.sign(old_input).await.unwrap();
    assert!(common::verify_with_p256(
        old.public_jwk(),
        old_input,
        &warm_sig
    ));

    let new = signer_at(&ctx.endpoint, &alias).await.unwrap();
    assert_ne!(new.key_id(), old.key_id(), "alias update did not rotate");
    let new_input = b"eyJraWQiOiJiIn0.eyJuZXciOnRydWV9";
    let new_sig = new.sign(new_input).await.unwrap();

    let previous = new
        .fetch_public_jwks(std::slice::from_ref(&key_a.id))
        .await
        .unwrap();
    assert_eq!(previous, vec![old.public_jwk().clone()]);
    let by_arn = new
        .fetch_public_jwks(std::slice::from_ref(&key_a.arn))
        .await
        .unwrap();
    assert_eq!(by_arn, previous);

    let new_kid = new.key_id().to_owned();
    let set = KeySet::new(Arc::new(new), previous).unwrap();
    let kids: Vec<_> = set
        .public_keys()
        .iter()
        .map(|k| k.kid().to_owned())
        .collect();
    assert_eq!(kids, vec![new_kid.clone(), old.key_id().to_owned()]);
    for (kid, input, sig) in [
        (old.key_id(), &old_input[..], &old_sig),
        (new_kid.as_str(), &new_input[..], &new_sig),
    ] {
        let jwk = set.public_keys().iter().find(|k| k.kid() == kid).unwrap();
        assert!(
            common::verify_with_jsonwebtoken(jwk, input, sig),
            "kid {kid}"
        );
        assert!(common::verify_with_p256(jwk, input, sig), "kid {kid}");
    }
    // Old signature does not verify under the new key: the kid really matters.
    let new_jwk = set.signer().public_jwk();
    assert!(!common::verify_with_p256(new_jwk, old_input, &old_sig));

    // A previous key that is not a P-256 signing key is refused, without echoing it.
    let rsa = ctx
        .create_key(KeySpec::Rsa2048, KeyUsageType::SignVerify)
        .await;
    let err = set_signer_fetch(&ctx.endpoint, &key_b.id, &rsa.id).await;
    assert!(!err.to_string().contains(&rsa.id), "{err}");
}

async fn set_signer_fetch(endpoint: &str, active: &str, previous: &str) -> KeyError {
    let signer = signer_at(endpoint, active).await.unwrap();
    signer
        .fetch_public_jwks(&[previous.to_owned()])
        .await
        .expect_err("RSA previous key accepted")
}

/// One KMS sign against one in-binary sign, on loopback, in the same run.
async fn latency_kms_vs_local(ctx: &Ctx) {
    const N: u32 = 32;
    let key = ctx
        .create_key(KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await;
    let kms = signer_at(&ctx.endpoint, &key.id).await.unwrap();
    let local = LocalSigner::generate();
    let input = b"eyJhbGciOiJFUzI1NiIsInR5cCI6InR4bnRva2VuK2p3dCJ9.eyJ0eG4iOiIxIn0";
    let start = Instant::now();
    kms.sign(input).await.unwrap();
    let first = start.elapsed();
    let start = Instant::now();
    for _ in 0..N {
        kms.sign(input).await.unwrap();
    }
    let kms_each = start.elapsed() / N;
    local.sign(input).await.unwrap();
    let start = Instant::now();
    for _ in 0..N {
        local.sign(input).await.unwrap();
    }
    let local_each = start.elapsed() / N;
    println!(
        "  sign latency (loopback LocalStack, debug build): kms {kms_each:?}/op (first {first:?}), \
         local {local_each:?}/op, ratio {:.0}x",
        kms_each.as_secs_f64() / local_each.as_secs_f64().max(1e-9)
    );
}

// ----------------------------------------------------------------------------------------------
// Support
// ----------------------------------------------------------------------------------------------

/// An SDK config pointed at `endpoint`, with fixed test credentials and region.
fn loader(endpoint: &str) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "txbridge-tests",
        ))
        .endpoint_url(endpoint)
}

/// A signer as a shell builds it at cold start: a fresh client, the default timeouts.
async fn unwrap_at(endpoint: &str, wrapped_b64: &str) -> Result<LocalSigner, KeyError> {
    unwrap_signing_key_from(loader(endpoint), wrapped_b64, KmsSignerOptions::default()).await
}

/// kms-wrapped: one `Decrypt` at construction, then no KMS call per token; the signer contract
/// (sign, verify with independent verifiers on the published JWK, low-S, kid); the published
/// key is the pair's public key as KMS returned it.
async fn wrapped_key_one_decrypt_then_local_signing(ctx: &Ctx) {
    let wrapping = ctx.wrapping_key().await;
    let (blob, spki) = ctx
        .wrapped_pair(
            &wrapping.id,
            DataKeyPairSpec::EccNistP256,
            Some(WRAPPED_KEY_CONTEXT),
        )
        .await;
    let proxy = Proxy::start(&ctx.endpoint).await;
    let start = Instant::now();
    let signer = unwrap_at(&proxy.endpoint(), &blob).await.unwrap();
    println!("  unwrapped in {:?}", start.elapsed());
    assert_eq!(proxy.decrypts(), 1, "one Decrypt per cold start");
    let public = p256::PublicKey::from_public_key_der(&spki).unwrap();
    let point = public.to_encoded_point(false);
    let jwk = signer.public_jwk();
    assert_eq!(
        (
            B64URL.decode(&jwk.x).unwrap(),
            B64URL.decode(&jwk.y).unwrap()
        ),
        (point.x().unwrap().to_vec(), point.y().unwrap().to_vec()),
        "the published key is the wrapped pair's public key"
    );
    assert_eq!(signer.key_id(), jwk.thumbprint());
    common::check_signer_contract(&signer, 32).await;
    assert_eq!(
        (proxy.decrypts(), proxy.calls()),
        (1, (0, 0)),
        "no KMS call per signature"
    );
    // Rotation overlap: the previous wrapped key's public JWK stays published.
    let previous = LocalSigner::generate();
    let set = KeySet::new(Arc::new(signer), vec![previous.public_jwk().clone()]).unwrap();
    assert_eq!(set.public_keys().len(), 2);
}

/// Each way a wrapped key cannot be had is a clear error that names no secret: a blob made
/// under another (or no) encryption context, a disabled or deleted wrapping key, a blob that is
/// not KMS ciphertext, and blobs that decrypt to something other than a P-256 key.
async fn wrapped_key_failures_are_errors_without_secrets(ctx: &Ctx) {
    let wrapping = ctx.wrapping_key().await;
    let (other_context, _) = ctx
        .wrapped_pair(
            &wrapping.id,
            DataKeyPairSpec::EccNistP256,
            Some(("txbridge", "other")),
        )
        .await;
    let (no_context, _) = ctx
        .wrapped_pair(&wrapping.id, DataKeyPairSpec::EccNistP256, None)
        .await;
    let (rsa, _) = ctx
        .wrapped_pair(
            &wrapping.id,
            DataKeyPairSpec::Rsa2048,
            Some(WRAPPED_KEY_CONTEXT),
        )
        .await;
    let (p384, _) = ctx
        .wrapped_pair(
            &wrapping.id,
            DataKeyPairSpec::EccNistP384,
            Some(WRAPPED_KEY_CONTEXT),
        )
        .await;
    let aes = {
        let (name, value) = WRAPPED_KEY_CONTEXT;
        let out = ctx
            .admin
            .generate_data_key_without_plaintext()
            .key_id(&wrapping.id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(name, value)
            .send()
            .await
            .unwrap();
        B64STD.encode(out.ciphertext_blob().unwrap().as_ref())
    };
    let garbage = B64STD.encode([0x5a_u8; 180]);
    type Want = fn(&KeyError) -> bool;
    let refused: Want =
        |e| matches!(e, KeyError::Unsupported(m) if m.starts_with("KMS refused Decrypt ("));
    let not_p256: Want = |e| matches!(e, KeyError::InvalidPrivateKey(_));
    let cases: [(&str, &str, Want); 6] = [
        ("another encryption context", &other_context, refused),
        ("no encryption context", &no_context, refused),
        ("not KMS ciphertext", &garbage, refused),
        ("an RSA key pair", &rsa, not_p256),
        ("a P-384 key pair", &p384, not_p256),
        ("an AES data key", &aes, not_p256),
    ];
    for (name, blob, want) in cases {
        let err = unwrap_at(&ctx.endpoint, blob)
            .await
            .map(|_| ())
            .expect_err(name);
        assert!(want(&err), "{name}: {err:?}");
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("arn:") && !text.contains(&blob[..16]),
            "{name}: {text}"
        );
        println!("  {name}: {err}");
    }

    let (blob, _) = ctx
        .wrapped_pair(
            &wrapping.id,
            DataKeyPairSpec::EccNistP256,
            Some(WRAPPED_KEY_CONTEXT),
        )
        .await;
    unwrap_at(&ctx.endpoint, &blob).await.unwrap();
    ctx.admin
        .disable_key()
        .key_id(&wrapping.id)
        .send()
        .await
        .unwrap();
    let err = unwrap_at(&ctx.endpoint, &blob)
        .await
        .map(|_| ())
        .expect_err("disabled");
    assert!(
        matches!(&err, KeyError::Unsupported(m) if m.contains("DisabledException")),
        "{err:?}"
    );
    println!("  disabled wrapping key: {err}");
    ctx.admin
        .enable_key()
        .key_id(&wrapping.id)
        .send()
        .await
        .unwrap();
    ctx.admin
        .schedule_key_deletion()
        .key_id(&wrapping.id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let err = unwrap_at(&ctx.endpoint, &blob)
        .await
        .map(|_| ())
        .expect_err("deleted");
    assert!(
        matches!(&err, KeyError::Unsupported(m) if m.contains("KMSInvalidStateException")),
        "{err:?}"
    );
    println!("  wrapping key pending deletion: {err}");
}

/// KMS unreachable or silent at cold start: a bounded wait, then a retryable error.
async fn wrapped_key_unreachable_kms_is_bounded(ctx: &Ctx) {
    let wrapping = ctx.wrapping_key().await;
    let (blob, _) = ctx
        .wrapped_pair(
            &wrapping.id,
            DataKeyPairSpec::EccNistP256,
            Some(WRAPPED_KEY_CONTEXT),
        )
        .await;
    let proxy = Proxy::start(&ctx.endpoint).await;
    proxy.set(Mode::Refuse).await;
    let start = Instant::now();
    let err = unwrap_at(&proxy.endpoint(), &blob)
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(matches!(err, KeyError::Backend(_)), "{err:?}");
    assert!(start.elapsed() < REFUSED_WITHIN, "{:?}", start.elapsed());
    println!(
        "  KMS refusing connections: {err} after {:?}",
        start.elapsed()
    );
    let silent = SilentListener::start(Duration::from_secs(30));
    let start = Instant::now();
    let err = unwrap_at(&silent.endpoint(), &blob)
        .await
        .map(|_| ())
        .expect_err("silent");
    assert!(
        matches!(&err, KeyError::Backend(c) if c == "timeout"),
        "{err:?}"
    );
    assert!(start.elapsed() < HANG_WITHIN, "{:?}", start.elapsed());
    println!("  KMS silent: {err} after {:?}", start.elapsed());
    proxy.set(Mode::Forward).await;
    unwrap_at(&proxy.endpoint(), &blob).await.unwrap();
}

async fn signer_at(endpoint: &str, key_id: &str) -> Result<KmsSigner, KeyError> {
    KmsSigner::from_config_loader(loader(endpoint), key_id, KmsSignerOptions::default()).await
}

struct Ctx {
    endpoint: String,
    admin: Client,
    aliases: AtomicUsize,
}

struct Key {
    id: String,
    arn: String,
}

impl Key {
    fn alias_arn(&self, alias: &str) -> String {
        // arn:aws:kms:REGION:ACCOUNT:key/ID -> arn:aws:kms:REGION:ACCOUNT:alias/NAME
        let prefix = self.arn.rsplit_once(":key/").unwrap().0;
        format!("{prefix}:{alias}")
    }
}

impl Ctx {
    async fn new(endpoint: &str) -> Ctx {
        let admin = Client::new(&loader(endpoint).load().await);
        Ctx {
            endpoint: endpoint.to_owned(),
            admin,
            aliases: AtomicUsize::new(0),
        }
    }

    async fn create_key(&self, spec: KeySpec, usage: KeyUsageType) -> Key {
        let out = self
            .admin
            .create_key()
            .key_spec(spec.clone())
            .key_usage(usage.clone())
            .description("txbridge signer test")
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CreateKey {spec:?}/{usage:?}: {}",
                    aws_sdk_kms::error::DisplayErrorContext(e)
                )
            });
        let meta = out.key_metadata().unwrap();
        Key {
            id: meta.key_id().to_owned(),
            arn: meta.arn().unwrap().to_owned(),
        }
    }

    /// A fresh alias (unique per test binary run) pointing at `key_id`.
    async fn create_alias(&self, key_id: &str) -> String {
        let n = self.aliases.fetch_add(1, Ordering::Relaxed);
        let alias = format!("alias/txbridge-test-{}-{n}", std::process::id());
        self.admin
            .create_alias()
            .alias_name(&alias)
            .target_key_id(key_id)
            .send()
            .await
            .unwrap();
        alias
    }

    /// A symmetric KMS key that wraps data key pairs.
    async fn wrapping_key(&self) -> Key {
        self.create_key(KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt)
            .await
    }

    /// `GenerateDataKeyPairWithoutPlaintext` under `key_id`: the base64 private-key ciphertext
    /// (what `wrapped_key` holds) and the public key (SPKI DER).
    async fn wrapped_pair(
        &self,
        key_id: &str,
        spec: DataKeyPairSpec,
        context: Option<(&str, &str)>,
    ) -> (String, Vec<u8>) {
        let mut req = self
            .admin
            .generate_data_key_pair_without_plaintext()
            .key_id(key_id)
            .key_pair_spec(spec);
        if let Some((name, value)) = context {
            req = req.encryption_context(name, value);
        }
        let out = req.send().await.unwrap();
        (
            B64STD.encode(out.private_key_ciphertext_blob().unwrap().as_ref()),
            out.public_key().unwrap().as_ref().to_vec(),
        )
    }

    /// A raw KMS signature (DER, as KMS returns it) over SHA-256 of `input`.
    async fn raw_sign(&self, key_id: &str, input: &[u8]) -> Vec<u8> {
        let out = self
            .admin
            .sign()
            .key_id(key_id)
            .message(Blob::new(Sha256::digest(input).to_vec()))
            .message_type(MessageType::Digest)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .unwrap();
        out.signature().unwrap().as_ref().to_vec()
    }
}

/// A loopback port that accepts connections and never answers; it stops accepting by itself.
struct SilentListener {
    addr: SocketAddr,
}

impl SilentListener {
    fn start(lifetime: Duration) -> SilentListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let deadline = Instant::now() + lifetime;
            let mut held = Vec::new();
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentListener { addr }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Forward to KMS.
    Forward,
    /// Nothing listens: connections are refused; open ones were reset.
    Refuse,
    /// Accept and read, never answer.
    Blackhole,
}

/// A TCP proxy in front of KMS that the test can cut and restore on the same port. It counts
/// the KMS operations that pass through it (by their `X-Amz-Target` header).
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Counts {
    get_public_key: AtomicUsize,
    sign: AtomicUsize,
    decrypt: AtomicUsize,
}

impl Counts {
    fn observe(&self, chunk: &[u8]) {
        let lower = chunk.to_ascii_lowercase();
        let count = |needle: &[u8]| lower.windows(needle.len()).filter(|w| *w == needle).count();
        self.get_public_key
            .fetch_add(count(b"trentservice.getpublickey\r"), Ordering::Relaxed);
        self.sign
            .fetch_add(count(b"trentservice.sign\r"), Ordering::Relaxed);
        self.decrypt
            .fetch_add(count(b"trentservice.decrypt\r"), Ordering::Relaxed);
    }
}

impl Proxy {
    async fn start(upstream_endpoint: &str) -> Proxy {
        let authority = upstream_endpoint
            .strip_prefix("http://")
            .expect("the proxy forwards plain http endpoints")
            .trim_end_matches('/');
        let upstream = tokio::net::lookup_host(authority)
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            counts: Arc::default(),
            task: tokio::sync::Mutex::new(None),
        };
        *proxy.task.lock().await = Some(proxy.serve(listener, Mode::Forward));
        proxy
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// (GetPublicKey calls, Sign calls) seen so far.
    fn calls(&self) -> (usize, usize) {
        (
            self.counts.get_public_key.load(Ordering::Relaxed),
            self.counts.sign.load(Ordering::Relaxed),
        )
    }

    /// Decrypt calls seen so far.
    fn decrypts(&self) -> usize {
        self.counts.decrypt.load(Ordering::Relaxed)
    }

    /// Switches mode: closes the listener and every open connection, then listens again on the
    /// same port unless the new mode is `Refuse`.
    async fn set(&self, mode: Mode) {
        let mut task = self.task.lock().await;
        if let Some(running) = task.take() {
            running.abort();
            let _ = running.await;
        }
        if mode != Mode::Refuse {
            let listener = TcpListener::bind(self.addr).await.unwrap();
            *task = Some(self.serve(listener, mode));
        }
    }

    fn serve(&self, listener: TcpListener, mode: Mode) -> JoinHandle<()> {
        let (upstream, counts) = (self.upstream, self.counts.clone());
        tokio::spawn(async move {
            // Dropped (and so aborted, closing every connection) when this task is aborted.
            let mut connections = JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                match mode {
                    Mode::Forward => connections.spawn(forward(client, upstream, counts.clone())),
                    _ => connections.spawn(swallow(client)),
                };
            }
        })
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, counts: Arc<Counts>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            counts.observe(&buf[..n]);
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}

async fn swallow(mut client: TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
}
