//! Signing keys of the simulated issuers: RSA 2048 (RS256) and P-256 (ES256).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::{Alg, Error};

/// A private signing key with its derived public material. `Debug` shows only the key id.
pub struct KeyPair {
    alg: Alg,
    kid: String,
    encoding: EncodingKey,
    private_pkcs8_pem: String,
    public_pem: String,
    public_jwk: Value,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn key_err(what: &'static str) -> impl Fn(String) -> Error {
    move |e| Error::Key(format!("{what}: {e}"))
}

impl KeyPair {
    /// Generates a fresh key for `alg` (RSA 2048 or P-256). RSA generation takes a moment:
    /// call it from a blocking context.
    pub fn generate(alg: Alg) -> Result<Self, Error> {
        match alg {
            Alg::RS256 => {
                let key = RsaPrivateKey::new(&mut OsRng, 2048)
                    .map_err(|e| key_err("RSA key generation")(e.to_string()))?;
                Self::from_rsa(key)
            }
            Alg::ES256 => Self::from_ec(p256::SecretKey::random(&mut OsRng)),
        }
    }

    /// Loads a PKCS#8 PEM private key of the kind `alg` needs.
    pub fn from_pkcs8_pem(alg: Alg, pem: &str) -> Result<Self, Error> {
        match alg {
            Alg::RS256 => Self::from_rsa(
                RsaPrivateKey::from_pkcs8_pem(pem)
                    .map_err(|e| key_err("not an RSA PKCS#8 PEM key")(e.to_string()))?,
            ),
            Alg::ES256 => Self::from_ec(
                p256::SecretKey::from_pkcs8_pem(pem)
                    .map_err(|e| key_err("not a P-256 PKCS#8 PEM key")(e.to_string()))?,
            ),
        }
    }

    fn from_rsa(key: RsaPrivateKey) -> Result<Self, Error> {
        let err = |e: &dyn fmt::Display| Error::Key(format!("RSA key encoding: {e}"));
        let public = key.to_public_key();
        let spki = public.to_public_key_der().map_err(|e| err(&e))?;
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| err(&e))?;
        let kid = kid_for_spki(spki.as_bytes());
        let public_jwk = json!({
            "use": "sig",
            "kty": "RSA",
            "kid": kid,
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        });
        let pkcs1 = key.to_pkcs1_der().map_err(|e| err(&e))?;
        let private_pkcs8_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| err(&e))?
            .to_string();
        Ok(KeyPair {
            alg: Alg::RS256,
            kid,
            encoding: EncodingKey::from_rsa_der(pkcs1.as_bytes()),
            private_pkcs8_pem,
            public_pem,
            public_jwk,
        })
    }

    fn from_ec(key: p256::SecretKey) -> Result<Self, Error> {
        let err = |e: &dyn fmt::Display| Error::Key(format!("P-256 key encoding: {e}"));
        let public = key.public_key();
        let spki = public.to_public_key_der().map_err(|e| err(&e))?;
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| err(&e))?;
        let kid = kid_for_spki(spki.as_bytes());
        let point = public.to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(Error::Key(
                "P-256 public key has no affine coordinates".into(),
            ));
        };
        let public_jwk = json!({
            "use": "sig",
            "kty": "EC",
            "crv": "P-256",
            "kid": kid,
            "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        });
        let pkcs8 = key.to_pkcs8_der().map_err(|e| err(&e))?;
        let private_pkcs8_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| err(&e))?
            .to_string();
        Ok(KeyPair {
            alg: Alg::ES256,
            kid,
            encoding: EncodingKey::from_ec_der(pkcs8.as_bytes()),
            private_pkcs8_pem,
            public_pem,
            public_jwk,
        })
    }

    /// The algorithm this key is for.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// Key id as kube-apiserver computes it: base64url(SHA-256(PKIX public key DER)).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`use`, `kty`, `kid`, `alg` and the key members).
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// The public key as SPKI PEM text (LF line endings, trailing newline).
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The private key as PKCS#8 PEM (for `--key-dir`). Handle with care.
    pub fn private_pkcs8_pem(&self) -> &str {
        &self.private_pkcs8_pem
    }

    /// Whether this key can produce signatures for `alg`.
    pub fn can_sign(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self.alg {
            Alg::RS256 => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Alg::ES256 => alg == ES256,
        }
    }

    /// Signs `signing_input` (`b64(header).b64(claims)`) and returns the base64url signature.
    pub fn sign(&self, signing_input: &[u8], alg: Algorithm) -> Result<String, Error> {
        if !self.can_sign(alg) {
            return Err(Error::Key(format!(
                "a {} key cannot sign {alg:?}",
                self.alg
            )));
        }
        jsonwebtoken::crypto::sign(signing_input, &self.encoding, alg)
            .map_err(|e| Error::Key(format!("signing failed: {e}")))
    }

    /// Builds a compact JWS over `header` and `claims` (serialized as given) with this key's
    /// own algorithm.
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> Result<String, Error> {
        let input = signing_input(header.to_string().as_bytes(), claims.to_string().as_bytes());
        let signature = self.sign(input.as_bytes(), self.alg.jwt())?;
        Ok(format!("{input}.{signature}"))
    }
}

/// `b64url(header).b64url(claims)`.
pub fn signing_input(header: &[u8], claims: &[u8]) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

/// kube-apiserver's key id: unpadded base64url of the SHA-256 of the PKIX (SPKI) DER public key.
pub fn kid_for_spki(spki_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(spki_der))
}

/// A fresh P-256 private key as PKCS#8 PEM (the dev signing key for txbridge).
pub fn generate_p256_pkcs8_pem() -> Result<String, Error> {
    let key = p256::SecretKey::random(&mut OsRng);
    Ok(key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::Key(format!("P-256 key encoding: {e}")))?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{DecodingKey, Validation};

    fn verify(key: &KeyPair, token: &str) -> Value {
        let jwk: Jwk = serde_json::from_value(key.public_jwk().clone()).unwrap();
        let mut v = Validation::new(key.alg().jwt());
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &v)
            .unwrap()
            .claims
    }

    #[test]
    fn keys_sign_and_verify_against_their_jwk() {
        for alg in [Alg::RS256, Alg::ES256] {
            let key = KeyPair::generate(alg).unwrap();
            assert_eq!(key.kid().len(), 43, "base64url SHA-256");
            assert_eq!(key.public_jwk()["kid"], key.kid());
            let token = key
                .sign_jwt(
                    &json!({"alg": alg.as_str(), "kid": key.kid()}),
                    &json!({"x": 1}),
                )
                .unwrap();
            assert_eq!(verify(&key, &token)["x"], 1);
            // Round trip through PKCS#8 keeps the key id.
            let again = KeyPair::from_pkcs8_pem(alg, key.private_pkcs8_pem()).unwrap();
            assert_eq!(again.kid(), key.kid());
            assert!(!format!("{key:?}").contains("PRIVATE"));
        }
    }

    #[test]
    fn kid_matches_kube_apiserver_definition() {
        // Rebuild each public key from its published JWK alone, then hash its PKIX DER.
        let ec = KeyPair::generate(Alg::ES256).unwrap();
        let jwk = ec.public_jwk();
        let minimal = json!({"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]});
        let der = p256::PublicKey::from_jwk_str(&minimal.to_string())
            .unwrap()
            .to_public_key_der()
            .unwrap();
        assert_eq!(ec.kid(), kid_for_spki(der.as_bytes()));

        let rsa_key = KeyPair::generate(Alg::RS256).unwrap();
        let jwk = rsa_key.public_jwk();
        let int = |v: &Value| {
            rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap())
        };
        let der = rsa::RsaPublicKey::new(int(&jwk["n"]), int(&jwk["e"]))
            .unwrap()
            .to_public_key_der()
            .unwrap();
        assert_eq!(rsa_key.kid(), kid_for_spki(der.as_bytes()));
    }
}
