//! A consumer service behind txbridge: every request must carry a `Txn-Token` granting
//! `orders:read`; the handler reads the verified claims from the request extensions.
//!
//! ```sh
//! TXBRIDGE_ISSUER=https://tts.example.com TXBRIDGE_TRUST_DOMAIN=https://tts.example.com \
//!   cargo run -p txbridge-verifier --features tower,reqwest --example axum_consumer
//! curl -H "Txn-Token: $TXN_TOKEN" http://127.0.0.1:3000/orders/42
//! ```
//! `TXBRIDGE_AUDIT=1` only logs what would be denied.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use txbridge_verifier::layer::TxnTokenLayer;
use txbridge_verifier::{Requirements, ReqwestClient, TxTokenClaims, Verifier, tctx_digest};

async fn order(
    Path(id): Path<String>,
    Extension(claims): Extension<TxTokenClaims>,
) -> impl IntoResponse {
    // Authorize on the immutable transaction context, e.g. the order the transaction is about.
    let same_order = claims.tctx.get("order").and_then(Value::as_str) == Some(id.as_str());
    let body = json!({
        "order": id,
        "txn": claims.txn,
        "sub": claims.sub,
        "matches_tctx": same_order,
        "tctx_digest": tctx_digest(&claims),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    let issuer = std::env::var("TXBRIDGE_ISSUER")?;
    let trust_domain = std::env::var("TXBRIDGE_TRUST_DOMAIN").unwrap_or_else(|_| issuer.clone());
    // Keys come from <issuer>/.well-known/openid-configuration -> jwks_uri, cached.
    let verifier = Arc::new(
        Verifier::builder(&issuer, &trust_domain)
            .insecure_allow_http_loopback(std::env::var_os("TXBRIDGE_DEV_HTTP").is_some())
            .build(Arc::new(ReqwestClient::new()?))?,
    );
    let requirements = Requirements::new().scope("orders:read");
    let layer = if std::env::var_os("TXBRIDGE_AUDIT").is_some() {
        TxnTokenLayer::audit(verifier, requirements)
    } else {
        TxnTokenLayer::enforce(verifier, requirements)
    };
    let app = Router::new().route("/orders/{id}", get(order)).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
