//! The backends are interchangeable: signatures made by one library verify through every
//! backend, and all give the same verdict on every malformed variant.
#![allow(clippy::unwrap_used)]

use futures::executor::block_on;
use p256::ecdsa::signature::Signer as _;

use super::*;
use crate::encoding::b64_encode;

/// Reports the backend in the test output (`.ci/run` runs jose's tests with and without it).
#[cfg(aws_lc)]
#[test]
fn verify_backend_is_aws_lc_rs() {
    assert_eq!(BACKEND, "aws-lc-rs");
}

#[cfg(not(aws_lc))]
#[test]
fn verify_backend_is_rsa_p256() {
    assert_eq!(BACKEND, "rsa+p256");
}

/// Every backend of this build that takes the key.
fn backends(
    material: &PublicKeyMaterial,
    alg: Algorithm,
) -> Vec<(&'static str, Arc<dyn BackendKey>)> {
    let mut out = vec![("rsa/p256", rust::import(material, alg).unwrap())];
    #[cfg(aws_lc)]
    out.push((
        "aws-lc-rs",
        aws_lc::import(material, alg).expect("aws-lc-rs takes the key"),
    ));
    out.push(("native", NativeBackend.import_now(material, alg).unwrap()));
    out
}

/// Every backend gives `want` on `sig`, and `false` on its malformed variants.
fn same_verdicts(
    material: &PublicKeyMaterial,
    alg: Algorithm,
    input: &[u8],
    sig: &[u8],
    want: bool,
) {
    let mut flipped = sig.to_vec();
    flipped[7] ^= 1;
    let mut longer = sig.to_vec();
    longer.push(0);
    let variants: [(&str, &[u8], &[u8]); 5] = [
        ("flipped bit", &flipped, input),
        ("other input", sig, b"other input"),
        ("truncated", &sig[..sig.len() - 1], input),
        ("longer", &longer, input),
        ("empty", b"", input),
    ];
    for (name, key) in backends(material, alg) {
        assert_eq!(block_on(key.verify(input, sig)), want, "{name}");
        for (variant, s, i) in variants {
            assert!(!block_on(key.verify(i, s)), "{name}: {variant} accepted");
        }
    }
    // A key is bound to its algorithm's family.
    let other = if alg == Algorithm::RS256 {
        Algorithm::ES256
    } else {
        Algorithm::RS256
    };
    assert!(rust::import(material, other).is_none());
    assert!(NativeBackend.import_now(material, other).is_none());
}

fn ec_material(sk: &p256::SecretKey) -> PublicKeyMaterial {
    PublicKeyMaterial::P256 {
        sec1: sk.public_key().to_sec1_bytes().to_vec(),
    }
}

#[test]
fn es256_signatures_cross_verify() {
    let sk = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let material = ec_material(&sk);
    let input = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0";
    // p256 signs (RFC 6979); the high-S twin gets the same verdict.
    let sig: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(&sk).sign(input);
    same_verdicts(&material, Algorithm::ES256, input, &sig.to_bytes(), true);
    let (r, s) = sig.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    same_verdicts(&material, Algorithm::ES256, input, &twin.to_bytes(), true);

    // aws-lc-rs signs (randomised k) from the same PKCS#8.
    #[cfg(aws_lc)]
    {
        use aws_lc_rs::signature as lc;
        use p256::pkcs8::EncodePrivateKey as _;
        let der = sk.to_pkcs8_der().unwrap();
        let pair =
            lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P256_SHA256_FIXED_SIGNING, der.as_bytes())
                .unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        for _ in 0..8 {
            let sig = pair.sign(&rng, input).unwrap();
            same_verdicts(&material, Algorithm::ES256, input, sig.as_ref(), true);
        }
    }
}

#[test]
fn rs256_signatures_cross_verify() {
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    use rsa::traits::PublicKeyParts as _;
    let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let public = private.to_public_key();
    let material = PublicKeyMaterial::Rsa {
        n: public.n().to_bytes_be(),
        e: public.e().to_bytes_be(),
    };
    let input = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0";
    let rsa_sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private.clone())
        .sign(input)
        .to_vec();
    same_verdicts(&material, Algorithm::RS256, input, &rsa_sig, true);

    // aws-lc-rs signs from the same PKCS#8. PKCS#1 v1.5 is deterministic: the same bytes.
    #[cfg(aws_lc)]
    {
        use aws_lc_rs::signature as lc;
        use rsa::pkcs8::EncodePrivateKey as _;
        let der = private.to_pkcs8_der().unwrap();
        let pair = lc::RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap();
        let mut lc_sig = vec![0; pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        pair.sign(&lc::RSA_PKCS1_SHA256, &rng, input, &mut lc_sig)
            .unwrap();
        same_verdicts(&material, Algorithm::RS256, input, &lc_sig, true);
        assert_eq!(lc_sig, rsa_sig);
    }
    let _ = b64_encode(&rsa_sig);
}

/// Every RSA key rsa accepts at the edges of our rules (2048 and 4096 bits, e = 3 and
/// e = 2^33 - 1) is also taken by aws-lc-rs, so no accepted key falls back in practice.
#[cfg(aws_lc)]
#[test]
fn aws_lc_takes_every_edge_key_rsa_accepts() {
    for bits in [2048usize, 4096] {
        let mut n = vec![0xa5u8; bits / 8];
        n[0] = 0xc1;
        for e in [3u64, 65_537, (1 << 33) - 1] {
            let e = e.to_be_bytes();
            let start = e.iter().position(|&b| b != 0).unwrap();
            let material = PublicKeyMaterial::Rsa {
                n: n.clone(),
                e: e[start..].to_vec(),
            };
            assert!(
                aws_lc::import(&material, Algorithm::RS256).is_some(),
                "{bits} bits, e = {e:?}"
            );
        }
    }
}

#[test]
fn sha256_is_sha256() {
    let hex: String = sha256(b"abc").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
