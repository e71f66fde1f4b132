//! What the Worker builds once per isolate: config, signing key and the core engine.

use std::sync::Arc;

use txbridge_core::{AsyncRuntime, Clock, Config, ConfigError, HttpClient, SignerKind, TxBridge};
use txbridge_signer::{KeyError, KeySet, LocalSigner, Signer};

/// The var holding the TOML config document.
pub const CONFIG_VAR: &str = "TXBRIDGE_CONFIG";
/// The secret holding the P-256 signing key (PKCS#8/SEC1 PEM or JWK).
pub const SIGNING_KEY_SECRET: &str = "TXBRIDGE_SIGNING_KEY";

/// Why the Worker cannot serve. The messages name the setting at fault and never contain the
/// key or the config text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    #[error("the {CONFIG_VAR} var is not set")]
    MissingConfig,
    #[error("invalid {CONFIG_VAR}: {0}")]
    Config(#[from] ConfigError),
    #[error(
        "signer kinds \"kms\" and \"kms-wrapped\" are not supported by the Worker: use \
         kind = \"local\" and the {SIGNING_KEY_SECRET} secret"
    )]
    SignerNotSupported,
    #[error("the {SIGNING_KEY_SECRET} secret is not set")]
    MissingSigningKey,
    #[error("invalid {SIGNING_KEY_SECRET}: {0}")]
    SigningKey(#[from] KeyError),
}

/// Builds the engine from the config document and the signing key as the runtime gives them
/// (`None` when the binding is absent), and the isolate's ports. `signer` wraps the parsed key
/// in the signer that will sign (the Workers runtime: WebCrypto).
pub fn build(
    config_toml: Option<&str>,
    signing_key: Option<&str>,
    http: Arc<dyn HttpClient>,
    clock: Arc<dyn Clock>,
    runtime: Arc<dyn AsyncRuntime>,
    signer: impl FnOnce(LocalSigner) -> Arc<dyn Signer>,
) -> Result<TxBridge, InitError> {
    let config = Config::from_toml_str(config_toml.ok_or(InitError::MissingConfig)?)?;
    let signer_config = config.signer();
    // Only the in-binary key: a KMS signer would need the AWS SDK, which the Worker never links.
    if !matches!(signer_config.kind, SignerKind::Local) {
        return Err(InitError::SignerNotSupported);
    }
    let key = signing_key
        .filter(|k| !k.trim().is_empty())
        .ok_or(InitError::MissingSigningKey)?;
    let signer = signer(LocalSigner::from_encoded(key)?);
    let keys = KeySet::new(signer, signer_config.previous_public_keys.clone())?;
    Ok(TxBridge::new(config, keys, http, clock, runtime))
}

/// Native only: the test doubles (txbridge-test-support) are not built for wasm32.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use txbridge_core::HttpError;
    use txbridge_test_support::{FixedClock, FnHttp, TestRuntime};

    const CONFIG: &str = r#"
issuer = "https://tts.example.com"

[signer]
kind = "SIGNER"

[[clusters]]
name = "prod"
issuer = "https://oidc.example.com/prod"
audiences = ["txbridge"]

[[policies]]
cluster = "prod"
namespace = "*"
service_account = "*"
scopes = ["orders:read"]
"#;

    fn config(signer: &str) -> String {
        CONFIG.replace("kind = \"SIGNER\"", signer)
    }

    fn key() -> String {
        LocalSigner::generate().to_pkcs8_pem().unwrap().to_string()
    }

    fn try_build(config: Option<&str>, key: Option<&str>) -> Result<TxBridge, InitError> {
        build(
            config,
            key,
            Arc::new(FnHttp::new(|_| Err(HttpError::Connect))),
            Arc::new(FixedClock::at(1_700_000_000)),
            Arc::new(TestRuntime::immediate()),
            |rust| Arc::new(rust),
        )
    }

    fn get(bridge: &TxBridge, path: &str) -> http::Response<Vec<u8>> {
        let req = http::Request::get(path).body(Vec::new()).unwrap();
        futures::executor::block_on(bridge.handle(req))
    }

    #[test]
    fn local_signer_builds_and_serves() {
        let bridge = try_build(Some(&config("kind = \"local\"")), Some(&key())).unwrap();
        assert_eq!(get(&bridge, "/healthz").status(), 200);
        let jwks = get(&bridge, "/.well-known/jwks.json");
        assert_eq!(jwks.status(), 200);
        let jwks: serde_json::Value = serde_json::from_slice(jwks.body()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn misconfigurations_are_reported() {
        let local = config("kind = \"local\"");
        let kms = config("kind = \"kms\"\nkey_id = \"alias/txbridge\"");
        let wrapped = config("kind = \"kms-wrapped\"\nwrapped_key = \"AQID\"");
        let key = key();
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            fn(&InitError) -> bool,
        );
        let cases: &[Case] = &[
            ("no config", None, Some(&key), |e| {
                matches!(e, InitError::MissingConfig)
            }),
            ("bad config", Some("issuer = 1"), Some(&key), |e| {
                matches!(e, InitError::Config(_))
            }),
            ("kms signer", Some(&kms), Some(&key), |e| {
                matches!(e, InitError::SignerNotSupported)
            }),
            ("kms-wrapped signer", Some(&wrapped), Some(&key), |e| {
                matches!(e, InitError::SignerNotSupported)
            }),
            ("no key", Some(&local), None, |e| {
                matches!(e, InitError::MissingSigningKey)
            }),
            ("blank key", Some(&local), Some(" \n"), |e| {
                matches!(e, InitError::MissingSigningKey)
            }),
            ("bad key", Some(&local), Some("not a key"), |e| {
                matches!(e, InitError::SigningKey(_))
            }),
        ];
        for (name, config, key, want) in cases {
            let err = try_build(*config, *key).unwrap_err();
            assert!(want(&err), "{name}: got {err:?}");
        }
    }

    #[test]
    fn messages_never_contain_the_key() {
        let key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ1dC1ub3QtYS1rZXk=\n-----END PRIVATE KEY-----\n";
        let err = try_build(Some(&config("kind = \"local\"")), Some(key)).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains("c2VjcmV0"), "{message}");
        assert!(message.contains(SIGNING_KEY_SECRET), "{message}");
    }
}
