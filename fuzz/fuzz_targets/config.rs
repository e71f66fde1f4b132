//! `Config::from_toml_str` on arbitrary text; an accepted config must also start a service
//! whose published documents are well-formed (what a shell does at cold start).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use txbridge_core::{Config, TxBridge};
use txbridge_jose::HttpError;
use txbridge_signer::{KeySet, LocalSigner};
use txbridge_test_support::{FixedClock, FnHttp, NOW, TestRuntime};

fn signer() -> Arc<LocalSigner> {
    static S: OnceLock<Arc<LocalSigner>> = OnceLock::new();
    S.get_or_init(|| Arc::new(LocalSigner::generate())).clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml_str(text) else {
        return;
    };
    assert!(!config.clusters().is_empty());
    assert!((1..=3600).contains(&config.token_lifetime()));
    // Previous keys were normalized at parse time: the key set must accept them.
    let keys = KeySet::new(signer(), config.signer().previous_public_keys.clone())
        .expect("a parsed config's previous keys form a key set");
    let issuer = config.issuer().to_owned();
    let bridge = TxBridge::new(
        config,
        keys,
        // The documents and /healthz make no upstream calls: nothing waits and nothing runs
        // in the background.
        Arc::new(FnHttp::new(|_| Err(HttpError::Connect))),
        Arc::new(FixedClock::at(NOW)),
        Arc::new(TestRuntime::immediate()),
    );
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
        "/healthz",
    ] {
        let req = http::Request::get(path)
            .body(Vec::new())
            .expect("static request");
        let resp = futures::executor::block_on(bridge.handle(req));
        assert_eq!(resp.status(), http::StatusCode::OK, "{path}");
        let body: serde_json::Value =
            serde_json::from_slice(resp.body()).expect("document is JSON");
        if path == "/.well-known/openid-configuration" {
            assert_eq!(body["issuer"].as_str(), Some(issuer.as_str()));
        }
    }
});
