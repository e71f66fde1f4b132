//! `Config::from_toml_str` on arbitrary text; an accepted config must also start a service
//! whose published documents are well-formed (what a shell does at cold start).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use txbridge_core::{AsyncRuntime, Clock, Config, HttpClient, HttpError, KeySet, Task, TxBridge};
use txbridge_signer::LocalSigner;

struct Fixed;
impl Clock for Fixed {
    fn now(&self) -> u64 {
        1_800_000_000
    }
}

/// Never called: the documents and /healthz make no upstream calls.
struct NoHttp;
#[async_trait::async_trait]
impl HttpClient for NoHttp {
    async fn execute(
        &self,
        _: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        Err(HttpError::Connect)
    }
}

/// The documents make no fetch: nothing waits and nothing runs in the background.
struct NoTasks;

#[async_trait::async_trait]
impl AsyncRuntime for NoTasks {
    async fn sleep(&self, _: std::time::Duration) {}

    fn spawn(&self, _: Task) {}
}

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
        Arc::new(NoHttp),
        Arc::new(Fixed),
        Arc::new(NoTasks),
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
