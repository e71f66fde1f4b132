//! The signer contract, written once and run against every `Signer` implementation.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::Verifier as _;
use txbridge_signer::{PublicJwk, Signer};

/// Half the P-256 group order, big-endian: a low-S signature has `s <= n/2`.
const HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

pub fn is_low_s(sig: &[u8]) -> bool {
    sig.len() == 64 && sig[32..] <= HALF_N[..]
}

/// Verifies with jsonwebtoken (independent of the signer's own code) on the published JWK.
pub fn verify_with_jsonwebtoken(jwk: &PublicJwk, signing_input: &[u8], sig: &[u8]) -> bool {
    let key = jsonwebtoken::DecodingKey::from_ec_components(&jwk.x, &jwk.y).unwrap();
    jsonwebtoken::crypto::verify(
        &B64.encode(sig),
        signing_input,
        &key,
        jsonwebtoken::Algorithm::ES256,
    )
    .unwrap_or(false)
}

/// Also verifies with p256 directly, to catch a low-S/encoding mismatch either verifier hides.
pub fn verify_with_p256(jwk: &PublicJwk, signing_input: &[u8], sig: &[u8]) -> bool {
    let mut sec1 = vec![4u8];
    sec1.extend(B64.decode(&jwk.x).unwrap());
    sec1.extend(B64.decode(&jwk.y).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(sig).unwrap();
    vk.verify(signing_input, &sig).is_ok()
}

/// The whole contract: `rounds` signatures over distinct inputs all verify on the published
/// JWK, none is high-S, the kid is the RFC 7638 thumbprint, and a flipped bit fails.
pub async fn check_signer_contract(signer: &dyn Signer, rounds: usize) {
    assert_eq!(signer.alg(), "ES256");
    let jwk = signer.public_jwk();
    assert_eq!(jwk.kty, "EC");
    assert_eq!(jwk.crv, "P-256");
    assert_eq!(signer.key_id(), jwk.kid());
    assert_eq!(
        jwk.kid(),
        jwk.thumbprint(),
        "kid must be the RFC 7638 thumbprint"
    );
    assert_eq!(jwk.use_.as_deref(), Some("sig"));
    assert_eq!(jwk.alg.as_deref(), Some("ES256"));
    for i in 0..rounds {
        let input = format!("eyJhbGciOiJFUzI1NiJ9.eyJpIjo{i}fQ");
        let sig = signer.sign(input.as_bytes()).await.expect("sign");
        assert_eq!(sig.len(), 64, "JOSE ES256 signature is r||s, 64 bytes");
        assert!(is_low_s(&sig), "round {i}: high-S signature emitted");
        assert!(
            verify_with_jsonwebtoken(jwk, input.as_bytes(), &sig),
            "round {i}: jsonwebtoken rejects"
        );
        assert!(
            verify_with_p256(jwk, input.as_bytes(), &sig),
            "round {i}: p256 rejects"
        );
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(!verify_with_jsonwebtoken(jwk, input.as_bytes(), &bad));
        assert!(!verify_with_p256(jwk, b"another input", &sig));
    }
}
