//! Tokens minted by the real service pass the gate end to end: the harness (the cluster issuer)
//! and the Lambda under `cargo lambda watch`, started by the workspace's e2e helpers
//! (txbridge-tests); an SA token exchanged for a TxToken over HTTP; that TxToken through
//! nginx -> gate, the gate finding the Lambda's keys through its discovery document.

use std::path::PathBuf;

use crate::support::*;

/// The cargo-lambda bin dir the e2e suite uses (`TXBRIDGE_CARGO_LAMBDA_BIN`, set by `.ci/run`,
/// else the one `bash .ci/lambda.sh install` makes). `None` after a loud message when absent and
/// `TXBRIDGE_REQUIRE_PROXIES` is unset; a panic when it is set.
fn cargo_lambda() -> Option<PathBuf> {
    let bin = std::env::var_os("TXBRIDGE_CARGO_LAMBDA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tools = std::env::var_os("TXBRIDGE_TOOLS").map_or_else(
                || {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/txbridge")
                },
                PathBuf::from,
            );
            tools.join("venv-cargo-lambda/bin")
        });
    if bin.join("cargo-lambda").exists() {
        return Some(bin);
    }
    let msg = format!(
        "\n!!!!! SKIPPED: no cargo-lambda in {} (TXBRIDGE_CARGO_LAMBDA_BIN). Install it with \
         `bash .ci/lambda.sh install`. !!!!!\n",
        bin.display()
    );
    assert!(
        std::env::var_os("TXBRIDGE_REQUIRE_PROXIES").is_none(),
        "TXBRIDGE_REQUIRE_PROXIES is set but cargo-lambda is missing: {msg}"
    );
    eprintln!("{msg}");
    None
}

#[test]
fn lambda_minted_tokens_pass_nginx_and_the_gate() {
    let Some(nginx) = proxy_binary("TXBRIDGE_NGINX", &on_path("nginx")) else {
        return;
    };
    if cargo_lambda().is_none() {
        return;
    }
    // One ES256 cluster is enough: the harness's generated config (its policies give
    // payments/checkout the scopes orders:read and orders:write).
    let started =
        txbridge_tests::suite::start_lambda_env(&["name=alpha,alg=ES256"], |c| c.to_owned())
            .expect("harness and the Lambda under cargo lambda watch");
    let env = &started.env;
    let issuer = env.f.issuer.clone();
    assert!(
        issuer.starts_with("http://127.0.0.1:") && issuer.ends_with("/lambda-url/txbridge-lambda"),
        "{issuer}"
    );

    let sa = env.token("alpha", "payments", "checkout");
    let r = env.exchange(&sa, &[]);
    assert_eq!(r.status, 200, "exchange: {}", r.raw);
    let tx = r.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let scope = r.body["scope"].as_str().unwrap_or_default().to_owned();
    assert!(
        scope.split(' ').any(|s| s == "orders:read"),
        "granted scope: {scope}"
    );

    // The gate knows only the Lambda's issuer URL: discovery, then its jwks_uri.
    let upstream = Upstream::start();
    let config = format!(
        r#"issuer = "{issuer}"
insecure_allow_http_loopback = true

[[routes]]
id = "orders-read"
path = "/orders/*"
methods = ["GET"]
scopes = ["orders:read"]

[[routes]]
id = "refunds"
path = "/refunds/**"
scopes = ["orders:refund"]
"#
    );
    let gate = GateProc::start(&config, "debug");
    let (_nginx, front, _dir) = start_nginx(&nginx, gate.http, upstream.server.addr);

    let ok = request(front, "GET", "/orders/42", &[("Txn-Token", &tx)]);
    assert_eq!(ok.status, 200, "valid Lambda TxToken: {ok:?}");
    let seen = upstream.last();
    assert_eq!(seen.target, "/orders/42");
    assert_eq!(seen.one("txn-token"), Some(tx.as_str()), "token unmodified");
    let txn = seen.one("x-txbridge-txn").unwrap_or_default();
    assert!(!txn.is_empty(), "X-Txbridge-Txn: {:?}", map(&seen.headers));
    let sub = seen.one("x-txbridge-sub").unwrap_or_default();
    assert!(sub.contains("payments"), "X-Txbridge-Sub: {sub}");
    assert_eq!(seen.one("x-txbridge-scope"), Some(scope.as_str()));
    let wl = seen.one("x-txbridge-req-wl").unwrap_or_default();
    assert!(
        !wl.is_empty(),
        "X-Txbridge-Req-Wl: {:?}",
        map(&seen.headers)
    );

    let before = upstream.count();
    let denied = request(front, "POST", "/refunds/42", &[("Txn-Token", &tx)]);
    assert_eq!(denied.status, 403, "scope the token lacks: {denied:?}");
    assert_eq!(
        upstream.count(),
        before,
        "a denial never reaches the upstream"
    );

    let log = gate.log_text();
    for part in tx.split('.').filter(|p| p.len() >= 16) {
        assert!(!log.contains(part), "a token part is in the gate's log");
    }
}
