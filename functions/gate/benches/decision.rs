//! BENCHMARKS.md section 9, second half (run by `bash bench/gate.sh` under valgrind callgrind):
//! the gate's own decision (`Gate::check`: route, token, verification, requirements, metrics)
//! against the crypto floor (one ES256 signature check of the same token with the same backend,
//! `VerifyKey::verify`). `decision N` or `floor N` runs it N times; bench/gate.sh differences
//! two lengths so that one-off costs cancel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../tests/e2e/support.rs"]
mod support;

use std::sync::Arc;

use futures::executor::block_on;
use serde_json::json;
use support::*;
use txbridge_gate::config::Config;
use txbridge_gate::gate::{Gate, Presented, Query};
use txbridge_jose::{Algorithm, b64_decode, parse_verify_keys};
use txbridge_signer::Signer as _;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--bench") && args.len() < 3 {
        return;
    }
    let (mode, n) = match args.get(1..3) {
        Some([m, n]) => (m.clone(), n.parse::<usize>().expect("N")),
        _ => panic!("usage: decision|floor N"),
    };
    let issuer = Issuer::start();
    let token = issuer.token("orders:read");
    let jwks = serde_json::to_vec(&json!({"keys": [issuer.signer.public_jwk()]})).unwrap();
    match mode.as_str() {
        "decision" => {
            // The gate's own verifier: keys from the issuer's discovery document and JWKS on
            // loopback, cached (the first check fetches them; the differencing cancels it).
            let config = Config::from_toml_str(&gate_config(&issuer, "")).unwrap();
            let verifier = txbridge_gate::verifier(&config).unwrap();
            let gate = Gate::new(config, verifier, Arc::default());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for _ in 0..n {
                    let a = gate
                        .check(Query {
                            method: Some("GET".into()),
                            uri: Some("/orders/42".into()),
                            token: Presented::One(token.clone()),
                            trace_id: None,
                        })
                        .await;
                    assert_eq!(a.status, 200, "{a:?}");
                }
            });
        }
        "floor" => {
            let key = parse_verify_keys(&jwks).unwrap().remove(0);
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = b64_decode(sig).unwrap();
            for _ in 0..n {
                assert!(block_on(key.verify(
                    Algorithm::ES256,
                    input.as_bytes(),
                    &sig
                )));
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
