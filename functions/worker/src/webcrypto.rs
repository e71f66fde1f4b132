//! Signatures through WebCrypto (`crypto.subtle`), which workerd runs natively (BoringSSL)
//! instead of the pure-Rust rsa/p256 inside wasm.
//!
//! - [`WebCryptoVerifier`], the core's verify backend: each JWKS key that txbridge's own parsing
//!   accepted is imported once per fetch (RSASSA-PKCS1-v1_5/SHA-256 or ECDSA P-256) and kept with
//!   the cached keys. A key WebCrypto refuses is verified by the Rust code, so which keys are
//!   usable and every verdict stay exactly as without WebCrypto.
//! - [`WebCryptoSigner`]: the in-binary key imported once per isolate (PKCS#8, non-extractable);
//!   its raw `r || s` signatures are normalised to low-S as every txbridge signer's are. The Rust
//!   signer stays as the fallback should the import ever fail.
//!
//! CryptoKeys are plain JS objects, not I/O: sharing them between requests is allowed.

use std::cell::RefCell;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use js_sys::{Array, Object, Reflect, Uint8Array};
use txbridge_jose::{Algorithm, BackendKey, PublicKeyMaterial, VerifyBackend};
use txbridge_signer::{LocalSigner, PublicJwk, SignError, Signer};
use wasm_bindgen::{JsCast as _, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, SubtleCrypto};
use worker::send::SendWrapper;

thread_local! {
    // One isolate, one thread: the SubtleCrypto object and the algorithm parameters, built once.
    static SUBTLE: Option<Subtle> = Subtle::new();
}

struct Subtle {
    api: SubtleCrypto,
    rs256: Object,
    es256: Object,
}

impl Subtle {
    fn new() -> Option<Subtle> {
        let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).ok()?;
        let api = Reflect::get(&crypto, &"subtle".into())
            .ok()?
            .dyn_into::<SubtleCrypto>()
            .ok()?;
        Some(Subtle {
            api,
            rs256: object(&[("name", "RSASSA-PKCS1-v1_5".into())]),
            es256: object(&[("name", "ECDSA".into()), ("hash", "SHA-256".into())]),
        })
    }
}

fn object(members: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in members {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o
}

fn usages(usage: &str) -> JsValue {
    Array::of1(&usage.into()).into()
}

/// Awaits a WebCrypto promise (a `Result` from the call itself, rejections as `Err`).
async fn settle(promise: Result<js_sys::Promise, JsValue>) -> Result<JsValue, JsValue> {
    JsFuture::from(promise?).await
}

/// The core's verify backend on WebCrypto.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebCryptoVerifier;

#[async_trait::async_trait(?Send)]
impl VerifyBackend for WebCryptoVerifier {
    fn name(&self) -> &'static str {
        "webcrypto"
    }

    async fn import(&self, key: &PublicKeyMaterial, alg: Algorithm) -> Option<Arc<dyn BackendKey>> {
        let (format, data, params) = match (key, alg) {
            (PublicKeyMaterial::Rsa { n, e }, Algorithm::RS256) => (
                "jwk",
                object(&[
                    ("kty", "RSA".into()),
                    ("n", B64.encode(n).into()),
                    ("e", B64.encode(e).into()),
                    ("alg", "RS256".into()),
                ]),
                object(&[
                    ("name", "RSASSA-PKCS1-v1_5".into()),
                    ("hash", "SHA-256".into()),
                ]),
            ),
            (PublicKeyMaterial::P256 { sec1 }, Algorithm::ES256) => (
                "raw",
                Uint8Array::from(sec1.as_slice()).into(),
                object(&[("name", "ECDSA".into()), ("namedCurve", "P-256".into())]),
            ),
            _ => return None,
        };
        let promise = SUBTLE.with(|s| {
            s.as_ref().map(|s| {
                s.api
                    .import_key_with_object(format, &data, &params, false, &usages("verify"))
            })
        })?;
        match settle(promise).await {
            Ok(key) => Some(Arc::new(ImportedKey {
                key: SendWrapper::new(key.unchecked_into()),
                alg,
            })),
            Err(_) => {
                tracing::debug!(
                    alg = alg.as_str(),
                    "WebCrypto refused a key; verified in Rust"
                );
                None
            }
        }
    }
}

/// A JWKS key imported into WebCrypto.
struct ImportedKey {
    key: SendWrapper<CryptoKey>,
    alg: Algorithm,
}

#[async_trait::async_trait(?Send)]
impl BackendKey for ImportedKey {
    async fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        let promise = SUBTLE.with(|s| {
            s.as_ref().map(|s| {
                let params = match self.alg {
                    Algorithm::RS256 => &s.rs256,
                    Algorithm::ES256 => &s.es256,
                };
                s.api.verify_with_object_and_u8_array_and_u8_array(
                    params, &self.key, signature, input,
                )
            })
        });
        let Some(promise) = promise else {
            return false;
        };
        matches!(settle(promise).await, Ok(v) if v.as_bool() == Some(true))
    }
}

/// The in-binary signing key, signing through WebCrypto.
pub struct WebCryptoSigner {
    rust: LocalSigner,
    /// The key imported into WebCrypto on first use (non-extractable), or why not.
    imported: SendWrapper<RefCell<Option<Result<CryptoKey, ()>>>>,
}

impl std::fmt::Debug for WebCryptoSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCryptoSigner")
            .field("kid", &self.rust.key_id())
            .finish_non_exhaustive()
    }
}

impl WebCryptoSigner {
    pub fn new(rust: LocalSigner) -> Self {
        WebCryptoSigner {
            rust,
            imported: SendWrapper::new(RefCell::new(None)),
        }
    }

    /// The imported key, importing it on first use. Concurrent first uses may each import it
    /// (each awaiting its own promise); the first stored result stays.
    async fn key(&self) -> Option<CryptoKey> {
        if let Some(done) = self.imported.borrow().as_ref() {
            return done.as_ref().ok().cloned();
        }
        let der = self.rust.to_pkcs8_der().ok()?;
        let promise = SUBTLE.with(|s| {
            s.as_ref().map(|s| {
                let data: Object = Uint8Array::from(der.as_slice()).into();
                let params = object(&[("name", "ECDSA".into()), ("namedCurve", "P-256".into())]);
                s.api
                    .import_key_with_object("pkcs8", &data, &params, false, &usages("sign"))
            })
        });
        drop(der);
        let result = match promise {
            Some(p) => settle(p).await.map(|k| k.unchecked_into()).map_err(|_| ()),
            None => Err(()),
        };
        if result.is_err() {
            tracing::warn!("WebCrypto refused the signing key; signing in Rust");
        }
        let mut slot = self.imported.borrow_mut();
        slot.get_or_insert(result).as_ref().ok().cloned()
    }
}

#[async_trait::async_trait(?Send)]
impl Signer for WebCryptoSigner {
    fn alg(&self) -> &'static str {
        self.rust.alg()
    }

    fn key_id(&self) -> &str {
        self.rust.key_id()
    }

    fn public_jwk(&self) -> &PublicJwk {
        self.rust.public_jwk()
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let Some(key) = self.key().await else {
            return self.rust.sign(signing_input).await;
        };
        let promise = SUBTLE.with(|s| {
            s.as_ref().map(|s| {
                s.api
                    .sign_with_object_and_u8_array(&s.es256, &key, signing_input)
            })
        });
        let raw = match promise {
            Some(p) => settle(p).await.map_err(|_| SignError::Unavailable {
                code: "webcrypto".into(),
            })?,
            None => return self.rust.sign(signing_input).await,
        };
        txbridge_signer::raw_to_jose_low_s(&Uint8Array::new(&raw).to_vec())
    }
}
