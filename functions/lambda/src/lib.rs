//! The AWS Lambda shell of txbridge: builds the engine once per cold start (config, signer,
//! HTTP client) and converts between `lambda_http` events and the core's `http` types.
//!
//! API Gateway stages: lambda_http leaves them out of the path when
//! `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true` (the Terraform module sets it); a custom-domain
//! base path mapping is stripped with `TXBRIDGE_BASE_PATH`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt as _, Response};
use tracing::{Level, Metadata};
use txbridge_core::{ClientIp, Config, TxBridge};
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

/// How long after a failed start the function tries to start again (on a request).
pub const RESTART_INTERVAL: Duration = Duration::from_secs(5);

/// The function as the Lambda runtime drives it: the engine built at cold start, or, when that
/// failed (KMS unreachable or refusing the key, a bad config), built again on a later request at
/// most every [`RESTART_INTERVAL`]. Until then every request gets the contract's 503 with
/// `Retry-After`: no token, nothing about the cause in the body (the cause is logged).
pub struct Function {
    engine: tokio::sync::OnceCell<TxBridge>,
    next_attempt: Mutex<Instant>,
    base_path: Option<String>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("started", &self.engine.initialized())
            .finish_non_exhaustive()
    }
}

impl Function {
    /// Tries to build the engine from the environment once, now.
    pub async fn start() -> Function {
        let function = Function {
            engine: tokio::sync::OnceCell::new(),
            next_attempt: Mutex::new(Instant::now()),
            base_path: std::env::var("TXBRIDGE_BASE_PATH").ok(),
        };
        function.engine().await;
        function
    }

    /// The engine, building it when no attempt was made within the last [`RESTART_INTERVAL`].
    async fn engine(&self) -> Option<&TxBridge> {
        if let Some(engine) = self.engine.get() {
            return Some(engine);
        }
        {
            let now = Instant::now();
            let mut next = self.next_attempt.lock().unwrap_or_else(|e| e.into_inner());
            if now < *next {
                return None;
            }
            *next = now + RESTART_INTERVAL;
        }
        let built = self.engine.get_or_try_init(|| async {
            let key = std::env::var(SIGNING_KEY_VAR).ok();
            build(config_from_env()?, key.as_deref()).await
        });
        match built.await {
            Ok(engine) => {
                let config = engine.config();
                tracing::info!(issuer = %config.issuer(), clusters = config.clusters().len(), "txbridge started");
                Some(engine)
            }
            Err(e) => {
                // The interval runs from the end of the attempt: one that waited out a silent
                // KMS must not be followed at once by another.
                *self.next_attempt.lock().unwrap_or_else(|e| e.into_inner()) =
                    Instant::now() + RESTART_INTERVAL;
                tracing::error!(error = %e, retry_in_s = RESTART_INTERVAL.as_secs(), "txbridge failed to start");
                None
            }
        }
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

/// Logs of dependencies are kept at `info` and above, whatever `RUST_LOG` says: their debug and
/// trace events carry request and response bodies (lambda_runtime's "raw JSON event received
/// from Lambda" holds the whole event, subject token included; the AWS SDK's hold KMS
/// responses). txbridge's own events never carry a token or key, at any level.
pub fn log_allowed(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("txbridge") || *metadata.level() <= Level::INFO
}

/// The function's log subscriber: one JSON line per event to `writer`, in txbridge's one log
/// shape (`txbridge_core::log_line`; the token endpoint's line is also a CloudWatch Embedded
/// Metric Format record), `filter` within [`log_allowed`]. `filter` is `RUST_LOG`'s
/// level-per-target form (`info`, `debug,txbridge_core=trace`); one that does not parse means
/// `info`.
pub fn subscriber<W>(filter: &str, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{Layer as _, filter};
    let env = filter
        .parse::<filter::Targets>()
        .unwrap_or_else(|_| filter::Targets::new().with_default(Level::INFO));
    tracing_subscriber::registry().with(
        JsonLines(writer)
            .with_filter(env)
            .with_filter(filter::filter_fn(log_allowed)),
    )
}

/// Writes each event as one JSON line.
struct JsonLines<W>(W);

impl<S, W> tracing_subscriber::Layer<S> for JsonLines<W>
where
    S: tracing::Subscriber,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        use std::io::Write as _;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut out = txbridge_core::log_line(event, now_ms)
            .into_string()
            .into_bytes();
        out.push(b'\n');
        let _ = self.0.make_writer().write_all(&out);
    }
}

/// The core's request for an event: the body, the path without a configured base path
/// (`/tts/token` -> `/token`, on a whole segment only), the caller's address as [`ClientIp`].
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
        parts.uri = path.parse().unwrap_or_default();
    }
    parts.extensions = http::Extensions::new();
    if let Some(ip) = ip.and_then(|ip| ip.parse().ok()) {
        parts.extensions.insert(ClientIp(ip));
    }
    http::Request::from_parts(parts, body.to_vec())
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
