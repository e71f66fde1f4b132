//! The AWS Lambda shell of txbridge: builds the engine once per cold start (config, signer,
//! HTTP client) and converts between `lambda_http` events and the core's `http` types.
//!
//! API Gateway stages: lambda_http leaves them out of the path when
//! `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true` (the Terraform module sets it); a custom-domain
//! base path mapping is stripped with `TXBRIDGE_BASE_PATH`.

use std::sync::Arc;

use futures_util::FutureExt as _;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt as _, Response};
use txbridge_core::{ClientIp, Config, Startup, TxBridge};
use txbridge_jose::{ReqwestClient, SystemClock, TokioRuntime};
use txbridge_signer::SIGNING_KEY_VAR;

/// Why the function could not start. One clear line; never key material.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("no config: set TXBRIDGE_CONFIG_FILE (a path) or TXBRIDGE_CONFIG (the TOML text)")]
    NoConfig,
    #[error("cannot read TXBRIDGE_CONFIG_FILE: {0}")]
    ConfigFile(std::io::Error),
    #[error("{0}")]
    Config(#[from] txbridge_core::ConfigError),
    #[error("{0}")]
    Signer(#[from] txbridge_signer::SetupError),
    #[error("HTTP client: {0}")]
    HttpClient(txbridge_jose::HttpError),
}

/// Reads the config from the environment: `TXBRIDGE_CONFIG_FILE` wins over `TXBRIDGE_CONFIG`.
fn config_from_env() -> Result<Config, StartupError> {
    let text = match std::env::var_os("TXBRIDGE_CONFIG_FILE").filter(|v| !v.is_empty()) {
        Some(path) => std::fs::read_to_string(path).map_err(StartupError::ConfigFile)?,
        None => std::env::var("TXBRIDGE_CONFIG")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or(StartupError::NoConfig)?,
    };
    Ok(Config::from_toml_str(&text)?)
}

/// The one builder of the Lambda's engine, from a parsed config and the local signing key (what
/// `TXBRIDGE_SIGNING_KEY` holds; unused by a KMS signer): the signer the config names, the
/// reqwest client, the system clock and the tokio runtime (background key refreshes are tokio
/// tasks, which a frozen Lambda environment resumes in its next invocation).
pub async fn build(config: Config, local_key: Option<&str>) -> Result<TxBridge, StartupError> {
    let keys = config
        .signer()
        .key_set(local_key, |key| Arc::new(key))
        .await?;
    let http = ReqwestClient::with_user_agent(concat!("txbridge/", env!("CARGO_PKG_VERSION")))
        .map_err(StartupError::HttpClient)?;
    Ok(TxBridge::new(
        config,
        keys,
        Arc::new(http),
        Arc::new(SystemClock),
        Arc::new(TokioRuntime),
    ))
}

/// The function as the Lambda runtime drives it: the engine built at cold start, or, when that
/// failed (KMS unreachable or refusing the key, a bad config), built again on a later request at
/// most every [`txbridge_core::RESTART_INTERVAL`] ([`Startup`]); until then the contract's 503.
#[derive(Debug)]
pub struct Function {
    startup: Startup,
    base_path: Option<String>,
}

impl Function {
    /// Tries to build the engine from the environment once, now.
    pub async fn start() -> Function {
        let function = Function {
            startup: Startup::new(&SystemClock),
            base_path: std::env::var("TXBRIDGE_BASE_PATH").ok(),
        };
        function.engine().await;
        function
    }

    async fn engine(&self) -> Option<&TxBridge> {
        self.startup
            .engine(|| async {
                let key = std::env::var(SIGNING_KEY_VAR).ok();
                build(config_from_env()?, key.as_deref()).await
            })
            .await
    }

    /// One event through the core, or the 503 of a function that could not start. A panic
    /// (which txbridge's code should never raise) is answered with the same 503, not with the
    /// runtime's error, and the environment stays warm.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let answer = std::panic::AssertUnwindSafe(async {
            match self.engine().await {
                Some(engine) => handle(engine, req, self.base_path.as_deref()).await,
                None => to_lambda_response(txbridge_core::unavailable_response()),
            }
        });
        answer.catch_unwind().await.unwrap_or_else(|_| {
            tracing::error!("the request panicked; answered 503");
            to_lambda_response(txbridge_core::unavailable_response())
        })
    }
}

/// The core's request for an event: the body, the path without a configured base path
/// (`/tts/token` -> `/token`, on a whole segment only; the query kept), the caller's address as [`ClientIp`].
pub fn to_core_request(req: Request, base_path: Option<&str>) -> http::Request<Vec<u8>> {
    let ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        _ => None,
    };
    let (mut parts, body) = req.into_parts();
    let base = base_path
        .map(|b| b.trim_end_matches('/'))
        .filter(|b| !b.is_empty());
    if let Some(rest) = base.and_then(|b| parts.uri.path().strip_prefix(b))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        let path = if rest.is_empty() { "/" } else { rest };
        let query = parts.uri.query().map_or(String::new(), |q| format!("?{q}"));
        parts.uri = format!("{path}{query}").parse().unwrap_or_default();
    }
    ClientIp::request(parts, body.to_vec(), ip.and_then(|ip| ip.parse().ok()))
}

/// Converts the core's response into a lambda_http response (JSON bodies as text).
pub fn to_lambda_response(resp: http::Response<Vec<u8>>) -> Response<Body> {
    resp.map(|body| match String::from_utf8(body) {
        Ok(t) if t.is_empty() => Body::Empty,
        Ok(t) => Body::Text(t),
        Err(e) => Body::Binary(e.into_bytes()),
    })
}

/// One event through the core.
pub async fn handle(bridge: &TxBridge, req: Request, base_path: Option<&str>) -> Response<Body> {
    to_lambda_response(bridge.handle(to_core_request(req, base_path)).await)
}
