//! What the Worker builds once per isolate, and the request rules that do not need the runtime.

use std::sync::Arc;

use txbridge_core::{Config, ConfigError, TxBridge};
use txbridge_jose::{AsyncRuntime, Clock, HttpClient};
use txbridge_signer::{LocalSigner, SetupError, Signer};

/// The var holding the TOML config document.
pub const CONFIG_VAR: &str = "TXBRIDGE_CONFIG";

/// The header in which Cloudflare gives the client's address (`rctx.req_ip`).
pub const CONNECTING_IP_HEADER: &str = "cf-connecting-ip";

/// Why the Worker cannot serve. The messages name the setting at fault and never contain the
/// key or the config text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    #[error("the {CONFIG_VAR} var is not set")]
    MissingConfig,
    #[error("invalid {CONFIG_VAR}: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Signer(#[from] SetupError),
}

/// Builds the engine from the config document and the signing key as the runtime gives them
/// (`None` when the binding is absent) and the isolate's ports. `wrap` turns the parsed key into
/// the signer that signs (the Workers runtime: WebCrypto). The Worker links no KMS signer: a
/// `kms` or `kms-wrapped` config is refused, naming `kind = "local"`.
pub async fn build(
    config_toml: Option<&str>,
    signing_key: Option<&str>,
    ports: (Arc<dyn HttpClient>, Arc<dyn Clock>, Arc<dyn AsyncRuntime>),
    wrap: impl FnOnce(LocalSigner) -> Arc<dyn Signer>,
) -> Result<TxBridge, InitError> {
    let config = Config::from_toml_str(config_toml.ok_or(InitError::MissingConfig)?)?;
    // Only the in-binary key: a KMS signer would need the AWS SDK, which the Worker never links.
    let keys = config.signer().local_key_set(signing_key, wrap).await?;
    let (http, clock, runtime) = ports;
    Ok(TxBridge::new(config, keys, http, clock, runtime))
}

/// Native only: the test doubles (txbridge-test-support) are not built for wasm32.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use futures::executor::block_on;
    use txbridge_jose::HttpError;
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
        block_on(build(
            config,
            key,
            (
                Arc::new(FnHttp::new(|_| Err(HttpError::Connect))),
                Arc::new(FixedClock::at(1_700_000_000)),
                Arc::new(TestRuntime::immediate()),
            ),
            |rust| Arc::new(rust),
        ))
    }

    fn get(bridge: &TxBridge, path: &str) -> http::Response<Vec<u8>> {
        let req = http::Request::get(path).body(Vec::new()).unwrap();
        block_on(bridge.handle(req))
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
                matches!(e, InitError::Signer(SetupError::LocalOnly("kms")))
            }),
            ("kms-wrapped signer", Some(&wrapped), Some(&key), |e| {
                matches!(e, InitError::Signer(SetupError::LocalOnly("kms-wrapped")))
            }),
            ("no key", Some(&local), None, |e| {
                matches!(e, InitError::Signer(SetupError::MissingLocalKey))
            }),
            ("blank key", Some(&local), Some(" \n"), |e| {
                matches!(e, InitError::Signer(SetupError::MissingLocalKey))
            }),
            ("bad key", Some(&local), Some("not a key"), |e| {
                matches!(e, InitError::Signer(SetupError::LocalKey(_)))
            }),
        ];
        for (name, config, key, want) in cases {
            let err = try_build(*config, *key).unwrap_err();
            assert!(want(&err), "{name}: got {err:?}");
        }
        let err = try_build(Some(&kms), Some(&key)).unwrap_err().to_string();
        assert!(err.contains("kind = \"local\""), "{err}");
    }

    #[test]
    fn messages_never_contain_the_key() {
        let key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ1dC1ub3QtYS1rZXk=\n-----END PRIVATE KEY-----\n";
        let err = try_build(Some(&config("kind = \"local\"")), Some(key)).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains("c2VjcmV0"), "{message}");
        assert!(message.contains("TXBRIDGE_SIGNING_KEY"), "{message}");
    }
}
