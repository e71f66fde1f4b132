use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rsa::pkcs1v15::SigningKey as RsaSigningKey;
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use serde_json::{Value, json};
use txbridge_signer::LocalSigner;

use crate::world::NOW;

/// A cluster signing key.
#[derive(Clone, Debug)]
pub enum TestKey {
    Rsa(Arc<rsa::RsaPrivateKey>),
    Ec(p256::SecretKey),
}

/// The primes of a throwaway 2048-bit RSA test key, published on purpose so that fuzz crashes
/// reproduce (generating one under coverage instrumentation takes seconds). Never use it for
/// anything else.
const FIXED_RSA_P: &[&str] = &[
    "f308f016fb71fb43467edfd874c4bb736bf3b9b62dbd93c588be5539030e51f5cccd52fb6a429296f75992198623281a",
    "8b0d90d299570b6c851d4faa20f7d0f7668e47d73361624dfbb36f8b1dc758f2f5669e37299b441612c6008ed2c468b8",
    "9d7be4d6a827c1057b58a4c0267e36baa06c498b3a1417b74552707fe2f022e1",
];
const FIXED_RSA_Q: &[&str] = &[
    "ce1be04f1f475d5283b5967067c6d1fa41b2427a5d5d8b3f419c58bd90302a10e9a691690fd0d6a27dfa215239d636ee",
    "4687e171cb7ec7aae7d086200e6f1812f336437b4ee5dbdb1c98855dbffb04f2b193afae69c984f4ba4a2835efb6d583",
    "8405e7e9865b7dd83492e431d66bb10444208ae3aeea5224cd73e9f836fd67d5",
];

static FIXED_RSA: OnceLock<Arc<rsa::RsaPrivateKey>> = OnceLock::new();
static GENERATED_RSA: OnceLock<Vec<Arc<rsa::RsaPrivateKey>>> = OnceLock::new();

/// 2048-bit RSA keys: 0 is the fixed test key (alpha's `a1` in the [`World`](crate::World)), 1
/// and 2 are generated once per process, on first use (generation is the slow part of the tests).
pub fn rsa_key(i: usize) -> TestKey {
    if i == 0 {
        let fixed = FIXED_RSA.get_or_init(|| {
            let hex =
                |parts: &[&str]| rsa::BigUint::parse_bytes(parts.concat().as_bytes(), 16).unwrap();
            let key = rsa::RsaPrivateKey::from_p_q(
                hex(FIXED_RSA_P),
                hex(FIXED_RSA_Q),
                rsa::BigUint::from(65537u32),
            )
            .unwrap();
            Arc::new(key)
        });
        return TestKey::Rsa(fixed.clone());
    }
    let generated = GENERATED_RSA.get_or_init(|| {
        (0..2)
            .map(|_| Arc::new(rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap()))
            .collect()
    });
    TestKey::Rsa(generated[i - 1].clone())
}

/// A fresh random P-256 key.
pub fn ec_key() -> TestKey {
    TestKey::Ec(p256::SecretKey::random(
        &mut p256::elliptic_curve::rand_core::OsRng,
    ))
}

/// A TxToken signer with a fixed P-256 key derived from `seed` (see [`TestKey::ec_seeded`]).
pub fn seeded_signer(seed: &[u8]) -> LocalSigner {
    let TestKey::Ec(key) = TestKey::ec_seeded(seed) else {
        unreachable!("ec_seeded makes a P-256 key")
    };
    LocalSigner::from_encoded(&key.to_jwk_string()).unwrap()
}

impl TestKey {
    /// A fixed P-256 key derived from `seed` (keys, and so fuzz crashes, reproduce).
    pub fn ec_seeded(seed: &[u8]) -> TestKey {
        use sha2::Digest as _;
        TestKey::Ec(p256::SecretKey::from_slice(&sha2::Sha256::digest(seed)).unwrap())
    }

    pub fn alg(&self) -> &'static str {
        match self {
            TestKey::Rsa(_) => "RS256",
            TestKey::Ec(_) => "ES256",
        }
    }

    /// The public JWK with `kid`, `use` and `alg`.
    pub fn public_jwk(&self, kid: &str) -> Value {
        let mut v = self.bare_jwk();
        v["kid"] = json!(kid);
        v["use"] = json!("sig");
        v["alg"] = json!(self.alg());
        v
    }

    /// The public JWK with the key members only (no `kid`, `use` or `alg`).
    pub fn bare_jwk(&self) -> Value {
        match self {
            TestKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts as _;
                json!({"kty": "RSA", "n": B64.encode(k.n().to_bytes_be()),
                    "e": B64.encode(k.e().to_bytes_be())})
            }
            TestKey::Ec(k) => serde_json::from_str(&k.public_key().to_jwk_string()).unwrap(),
        }
    }

    /// The public key as SPKI PEM (what an HS256 confusion attack uses as the secret).
    pub fn public_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        match self {
            TestKey::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey as _;
                k.to_public_key()
                    .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                    .unwrap()
            }
            TestKey::Ec(k) => k
                .public_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .unwrap(),
        }
    }

    /// The JWS signature (RS256 or ES256, raw `r||s`) over `input`.
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            TestKey::Rsa(k) => RsaSigningKey::<sha2::Sha256>::new((**k).clone())
                .sign(input)
                .to_vec(),
            TestKey::Ec(k) => {
                let sk = p256::ecdsa::SigningKey::from(k);
                let sig: p256::ecdsa::Signature = sk.sign(input);
                sig.to_bytes().to_vec()
            }
        }
    }

    /// Whether `sig` is this key's JWS signature over `input` (an independent check).
    pub fn verify(&self, input: &[u8], sig: &[u8]) -> bool {
        match self {
            TestKey::Rsa(k) => rsa::pkcs1v15::Signature::try_from(sig).is_ok_and(|s| {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(k.to_public_key())
                    .verify(input, &s)
                    .is_ok()
            }),
            TestKey::Ec(k) => p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| {
                p256::ecdsa::VerifyingKey::from(k.public_key())
                    .verify(input, &s)
                    .is_ok()
            }),
        }
    }
}

/// Signs exactly `header` and `claims` (no validation: attack tests need bad tokens). `alg`
/// `none` gets an empty signature, `HS256` an HMAC keyed with the public key's PEM.
pub fn craft(header: &Value, claims: &Value, key: &TestKey) -> String {
    craft_with(header, claims, |input| match header["alg"].as_str() {
        Some("none") => Vec::new(),
        Some("HS256") => {
            use hmac::Mac as _;
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(key.public_pem().as_bytes()).unwrap();
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        _ => key.sign(input),
    })
}

/// A compact JWS of exactly `header` and `claims`, whose signature `sign` makes from the
/// signing input.
pub fn craft_with(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

/// The claims of a compact JWS, unverified.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

/// Projected SA token claims as kube-apiserver issues them, at [`NOW`].
pub fn sa_claims(iss: &str, ns: &str, sa: &str) -> Value {
    json!({
        "iss": iss,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "aud": ["txbridge"],
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "jti": "5b8a6f1e-0000-4000-8000-000000000000",
        "kubernetes.io": {
            "namespace": ns,
            "serviceaccount": {"name": sa, "uid": "1b9a7c1e-0000-4000-8000-000000000001"},
            "pod": {"name": "pod-1", "uid": "1b9a7c1e-0000-4000-8000-000000000002"}
        }
    })
}
