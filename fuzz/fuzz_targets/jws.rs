//! The JOSE parsers on arbitrary input: compact JWS (`jose::parse_compact`), a cluster's JWKS
//! (`jose::parse_jwks`), a discovery response (`keys::parse_discovery`), a published/previous
//! public JWK (`PublicJwk::normalized`) and the signing-key loader (`LocalSigner::from_encoded`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use txbridge_core::Config;
use txbridge_jose::__internal::parse_discovery;
use txbridge_jose::{self as jose, KeySource, MAX_TOKEN_LEN};
use txbridge_signer::{LocalSigner, PublicJwk};

const CONFIG: &str = r#"
issuer = "https://tts.example.test"
[[clusters]]
name = "alpha"
issuer = "https://alpha.example.test"
audiences = ["txbridge"]
"#;

/// The key source of the config's first cluster.
fn source() -> &'static KeySource {
    static S: OnceLock<KeySource> = OnceLock::new();
    S.get_or_init(|| {
        let config = Config::from_toml_str(CONFIG).expect("fuzz config is valid");
        config.clusters()[0].key_source()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(jws) = jose::parse_compact(text) {
            // signing_input is exactly `header.payload` of the token.
            let mut parts = text.splitn(3, '.');
            let (h, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert_eq!(jws.signing_input, format!("{h}.{p}").as_bytes());
            assert!(text.len() <= MAX_TOKEN_LEN);
            assert!(
                jws.kid
                    .as_deref()
                    .is_none_or(|k| !k.is_empty() && k.len() <= 256)
            );
        }
        let _ = LocalSigner::from_encoded(text);
    }
    if let Ok(keys) = jose::parse_jwks(data) {
        assert!(!keys.is_empty() && keys.len() <= 32);
    }
    if let Ok(jwk) = serde_json::from_slice::<PublicJwk>(data)
        && let Ok(n) = jwk.normalized()
    {
        // Normalizing is idempotent: a normalized key is accepted again unchanged.
        assert_eq!(n.clone().normalized().ok().as_ref(), Some(&n));
    }
    let mut resp = http::Response::new(data.to_vec());
    *resp.status_mut() = http::StatusCode::OK;
    if let Ok(url) = parse_discovery(&resp, source()) {
        assert_eq!(url.scheme(), "https");
    }
});
