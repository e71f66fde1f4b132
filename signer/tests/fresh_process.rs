//! Signing right after process start, before anything else has used the RNG: the Lambda is built
//! without aws-lc's CPU-jitter entropy source (.cargo/config.toml), so its RNG is seeded from the
//! OS alone. The first signatures of a fresh process must still be valid, verifiable and fresh
//! (ECDSA nonces differ). This file holds one test so that it runs first in its process.
#![allow(clippy::unwrap_used)]

use p256::ecdsa::signature::Verifier as _;
use txbridge_signer::{LocalSigner, SIGN_BACKEND, Signer as _};

#[test]
fn signs_and_verifies_right_after_start() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pem = LocalSigner::generate().to_pkcs8_pem().unwrap();
    let signer = LocalSigner::from_encoded(&pem).unwrap();
    let input = b"eyJhbGciOiJFUzI1NiJ9.eyJmcmVzaCI6dHJ1ZX0";
    let (a, b) = runtime.block_on(async {
        (
            signer.sign(input).await.unwrap(),
            signer.sign(input).await.unwrap(),
        )
    });
    let jwk = signer.public_jwk();
    let decode = |s: &str| {
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s).unwrap()
    };
    let mut sec1 = vec![4u8];
    sec1.extend(decode(&jwk.x));
    sec1.extend(decode(&jwk.y));
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    for sig in [&a, &b] {
        let sig = p256::ecdsa::Signature::from_slice(sig).unwrap();
        assert!(key.verify(input, &sig).is_ok(), "{SIGN_BACKEND}");
    }
    if SIGN_BACKEND == "aws-lc-rs" {
        assert_ne!(a, b, "aws-lc-rs signs with fresh random nonces");
    }
}
