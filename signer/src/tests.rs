#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn rejects_bad_keys_without_echoing_them() {
    let cases: &[(&str, &str)] = &[
        ("empty", "  "),
        ("garbage", "not a key at all secretsecret"),
        (
            "bad pem",
            "-----BEGIN PRIVATE KEY-----\nAAAAsecretsecret\n-----END PRIVATE KEY-----",
        ),
        (
            "bad sec1",
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----",
        ),
        (
            "rsa jwk",
            r#"{"kty":"RSA","n":"secretsecret","e":"AQAB","d":"secretsecret"}"#,
        ),
        (
            "public-only jwk",
            r#"{"kty":"EC","crv":"P-256","x":"secretsecret","y":"AAAA"}"#,
        ),
    ];
    for (name, input) in cases {
        let err = LocalSigner::from_encoded(input).expect_err(name);
        assert!(!err.to_string().contains("secretsecret"), "{name}: {err}");
    }
}

#[test]
fn loads_jwk_private_key() {
    let a = LocalSigner::generate();
    let sk = p256::SecretKey::from_pkcs8_pem(&a.to_pkcs8_pem().unwrap()).unwrap();
    use p256::pkcs8::DecodePrivateKey as _;
    let jwk = sk.to_jwk_string();
    let b = LocalSigner::from_encoded(&jwk).unwrap();
    assert_eq!(a.key_id(), b.key_id());
    assert!(format!("{b:?}").contains("redacted"));
}

#[test]
fn public_jwk_normalization() {
    let good = LocalSigner::generate().public_jwk().clone();
    assert!(good.clone().normalized().is_ok());
    let mut rsa = good.clone();
    rsa.kty = "RSA".into();
    assert!(rsa.normalized().is_err());
    let mut off_curve = good.clone();
    off_curve.y = off_curve.x.clone();
    assert!(off_curve.normalized().is_err());
    let mut wrong_alg = good;
    wrong_alg.alg = Some("RS256".into());
    assert!(wrong_alg.normalized().is_err());
}

#[test]
fn der_signatures_become_low_s_jose() {
    use p256::ecdsa::signature::Signer as _;
    let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    for i in 0..32u8 {
        let sig: p256::ecdsa::Signature = key.sign(&[i]);
        // Force the high-S form half of the time, as KMS returns it.
        let s = sig.s();
        let high = p256::ecdsa::Signature::from_scalars(sig.r(), -*s).unwrap();
        for variant in [sig, high] {
            let jose = der_to_jose_low_s(variant.to_der().as_bytes()).unwrap();
            let back = p256::ecdsa::Signature::from_slice(&jose).unwrap();
            assert!(back.normalize_s().is_none(), "must already be low-S");
        }
    }
    assert!(der_to_jose_low_s(b"\x30\x02\x01").is_err());
}

/// The KMS signer kinds, as a config names them.
#[cfg(feature = "local")]
fn kms_kinds() -> [crate::SignerKind; 2] {
    use crate::SignerKind;
    [
        SignerKind::Kms {
            key_id: "alias/txbridge".into(),
            previous_key_ids: vec![],
        },
        SignerKind::KmsWrapped {
            wrapped_key: "AAAA".into(),
        },
    ]
}

/// Built without the `kms` feature (a `local`-signer deployment), a config naming a KMS signer
/// is refused when the function starts, with a line that says why and what to use instead: no
/// panic, no AWS call.
#[cfg(all(feature = "local", not(feature = "kms")))]
#[test]
fn kms_kinds_without_the_kms_feature_are_a_clear_setup_error() {
    use crate::{SetupError, SignerConfig};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for kind in kms_kinds() {
        let name = kind.as_str();
        let config = SignerConfig {
            kind,
            previous_public_keys: vec![],
        };
        let err = rt
            .block_on(config.key_set(None, |k| std::sync::Arc::new(k)))
            .expect_err("refused");
        assert!(matches!(err, SetupError::NotBuilt(n) if n == name), "{err}");
        let line = err.to_string();
        assert!(
            line.contains(&format!("kind = \"{name}\"")) && line.contains("feature `kms`"),
            "{line}"
        );
    }
}

/// A runtime that signs with the local key only (the Worker) refuses the KMS kinds, with the
/// feature built or not, before any AWS call; the local kind builds as `key_set` does.
#[cfg(feature = "local")]
#[test]
fn local_key_set_refuses_the_kms_kinds() {
    use crate::{LocalSigner, SetupError, SignerConfig, SignerKind};
    let config = |kind| SignerConfig {
        kind,
        previous_public_keys: vec![],
    };
    let wrap = |k| std::sync::Arc::new(k) as std::sync::Arc<dyn crate::Signer>;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for kind in kms_kinds() {
        let name = kind.as_str();
        let err = rt
            .block_on(config(kind).local_key_set(None, wrap))
            .expect_err("refused");
        assert!(
            matches!(err, SetupError::LocalOnly(n) if n == name),
            "{err}"
        );
        assert!(err.to_string().contains("kind = \"local\""), "{err}");
    }
    let key = LocalSigner::generate().to_pkcs8_pem().unwrap().to_string();
    let set = rt.block_on(config(SignerKind::Local).local_key_set(Some(&key), wrap));
    assert!(set.is_ok());
}
