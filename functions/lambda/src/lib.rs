//! The AWS Lambda shell of txbridge: start-up (config, signer, HTTP client) and the
//! translation between `lambda_http` events and the core's `http` types.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt as _, Response};
use tracing::{Level, Metadata};
use txbridge_core::{ClientIp, Config, KeySet, SignerKind, SystemClock, TxBridge};
use txbridge_signer::{LocalSigner, Signer};

/// Why the function could not start. One clear line; never key material.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("no config: set TXBRIDGE_CONFIG_FILE (a path) or TXBRIDGE_CONFIG (the TOML text)")]
    NoConfig,
    #[error("cannot read TXBRIDGE_CONFIG_FILE: {0}")]
    ConfigFile(std::io::Error),
    #[error("{0}")]
    Config(#[from] txbridge_core::ConfigError),
    #[error("TXBRIDGE_SIGNING_KEY: {0}")]
    LocalKey(txbridge_signer::KeyError),
    #[error("KMS signer: {0}")]
    KmsKey(txbridge_signer::KeyError),
    #[error("KMS-wrapped signing key: {0}")]
    KmsWrapped(txbridge_signer::KeyError),
    #[error("[signer] kind = \"kms\" or \"kms-wrapped\" needs a build with the `kms` feature")]
    KmsNotBuilt,
    #[error("key set: {0}")]
    KeySet(txbridge_signer::KeyError),
    #[error("HTTP client: {0}")]
    HttpClient(String),
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

/// Builds the signer named by the config and the published key set; `local_key` is what
/// `TXBRIDGE_SIGNING_KEY` holds (PEM or private JWK; unused by a KMS signer).
async fn key_set(config: &Config, local_key: &str) -> Result<KeySet, StartupError> {
    let previous = config.signer().previous_public_keys.clone();
    let signer: Arc<dyn Signer> = match &config.signer().kind {
        SignerKind::Local => {
            Arc::new(LocalSigner::from_encoded(local_key).map_err(StartupError::LocalKey)?)
        }
        #[cfg(feature = "kms")]
        SignerKind::Kms {
            key_id,
            previous_key_ids,
        } => {
            let kms = txbridge_signer::KmsSigner::from_env(
                key_id,
                txbridge_signer::KmsSignerOptions::default(),
            )
            .await
            .map_err(StartupError::KmsKey)?;
            let mut previous = previous;
            previous.extend(
                kms.fetch_public_jwks(previous_key_ids)
                    .await
                    .map_err(StartupError::KmsKey)?,
            );
            return KeySet::new(Arc::new(kms), previous).map_err(StartupError::KeySet);
        }
        #[cfg(feature = "kms")]
        SignerKind::KmsWrapped { wrapped_key } => Arc::new(
            txbridge_signer::unwrap_signing_key(
                wrapped_key,
                txbridge_signer::KmsSignerOptions::default(),
            )
            .await
            .map_err(StartupError::KmsWrapped)?,
        ),
        #[allow(unreachable_patterns)]
        _ => return Err(StartupError::KmsNotBuilt),
    };
    KeySet::new(signer, previous).map_err(StartupError::KeySet)
}

/// What a cold start builds, from the environment: the config (`TXBRIDGE_CONFIG_FILE` or
/// `TXBRIDGE_CONFIG`) and the local signing key (`TXBRIDGE_SIGNING_KEY`).
async fn build_from_env() -> Result<TxBridge, StartupError> {
    let config = config_from_env()?;
    let local_key = std::env::var("TXBRIDGE_SIGNING_KEY").unwrap_or_default();
    build(config, &local_key).await
}

/// The one builder of the Lambda's engine, from a parsed config and the local signing key (what
/// `TXBRIDGE_SIGNING_KEY` holds: PEM or private JWK; unused by a KMS signer): the signer the
/// config names, the reqwest client, the system clock and the tokio runtime (background key
/// refreshes are tokio tasks, which a frozen Lambda environment resumes in its next
/// invocation). [`Function::start`] calls it with the environment's values; in-process tests
/// and benchmarks call it directly.
pub async fn build(config: Config, local_key: &str) -> Result<TxBridge, StartupError> {
    let keys = key_set(&config, local_key).await?;
    let http = ReqwestClient::with_user_agent(concat!("txbridge/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| StartupError::HttpClient(e.to_string()))?;
    Ok(TxBridge::new(
        config,
        keys,
        Arc::new(http),
        Arc::new(SystemClock),
        Arc::new(TokioRuntime),
    ))
}

/// Outbound HTTP for discovery and JWKS (rustls, no redirects, timeouts, body capped at
/// `MAX_UPSTREAM_BODY`) and the tokio runtime port: the native adapters, next to the ports in
/// txbridge-jose (feature `reqwest`; core itself takes no reqwest or tokio dependency).
use txbridge_jose::{ReqwestClient, TokioRuntime};

/// How long after a failed start the function tries to start again (on a request).
pub const RESTART_INTERVAL: Duration = Duration::from_secs(5);

/// The function as the Lambda runtime drives it: the engine built at cold start, or, when that
/// failed (KMS unreachable or refusing the key, a bad config), built again on a later request
/// at most every [`RESTART_INTERVAL`]. Until then every request gets the contract's 503 with
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
    pub async fn engine(&self) -> Option<&TxBridge> {
        if let Some(engine) = self.engine.get() {
            return Some(engine);
        }
        {
            let mut next = self.next_attempt.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if now < *next {
                return None;
            }
            *next = now + RESTART_INTERVAL;
        }
        match self.engine.get_or_try_init(build_from_env).await {
            Ok(engine) => {
                tracing::info!(
                    issuer = %engine.config().issuer(),
                    clusters = engine.config().clusters().len(),
                    "txbridge started"
                );
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
        let answer = CatchPanic(Box::pin(async {
            match self.engine().await {
                Some(engine) => handle(engine, req, self.base_path.as_deref()).await,
                None => to_lambda_response(txbridge_core::unavailable_response()),
            }
        }))
        .await;
        answer.unwrap_or_else(|()| {
            tracing::error!("the request panicked; answered 503");
            to_lambda_response(txbridge_core::unavailable_response())
        })
    }
}

/// A future whose panic becomes `Err(())` (its state is dropped, never polled again).
struct CatchPanic<'a, T>(std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>);

impl<T> std::future::Future for CatchPanic<'_, T> {
    type Output = Result<T, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

/// Logs of dependencies are kept at `info` and above, whatever `RUST_LOG` says: their debug
/// and trace events carry request and response bodies (lambda_runtime's "raw JSON event
/// received from Lambda" holds the whole event, subject token included; the AWS SDK's hold
/// KMS responses). txbridge's own events never carry a token or key, at any level.
pub fn log_allowed(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("txbridge") || *metadata.level() <= Level::INFO
}

/// The function's log subscriber: JSON lines to `writer`, `filter` within [`log_allowed`].
/// `filter` is `RUST_LOG`'s level-per-target form (`info`, `debug,txbridge_core=trace`); one
/// that does not parse means `info`.
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
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .without_time()
            .with_writer(writer)
            .with_filter(env)
            .with_filter(filter::filter_fn(log_allowed)),
    )
}

/// The caller's source IP and the API Gateway stage, from the event's request context.
fn context_of(req: &Request) -> (Option<std::net::IpAddr>, Option<String>) {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (
            ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
            ctx.stage.clone(),
        ),
        Some(RequestContext::ApiGatewayV1(ctx)) => (
            ctx.identity
                .source_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok()),
            ctx.stage.clone(),
        ),
        _ => (None, None),
    }
}

/// Strips an API Gateway stage (`/prod/token` -> `/token`) and an optional configured base
/// path (`TXBRIDGE_BASE_PATH`, for custom-domain base path mappings).
fn route_path(path: &str, stage: Option<&str>, base: Option<&str>) -> String {
    /// `/prefix/rest` -> `/rest`, only on a whole path segment.
    fn strip<'a>(p: &'a str, prefix: &str) -> Option<&'a str> {
        p.strip_prefix(prefix)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    }
    let mut p = path;
    if let Some(stage) = stage.filter(|s| !s.is_empty() && *s != "$default") {
        p = strip(p, &format!("/{stage}")).unwrap_or(p);
    }
    if let Some(base) = base
        .map(|b| b.trim_end_matches('/'))
        .filter(|b| !b.is_empty())
    {
        p = strip(p, base).unwrap_or(p);
    }
    if p.is_empty() { "/".into() } else { p.into() }
}

/// Converts a lambda_http request into the core's request type.
pub fn to_core_request(req: Request, base_path: Option<&str>) -> http::Request<Vec<u8>> {
    let (ip, stage) = context_of(&req);
    let (parts, body) = req.into_parts();
    let bytes = match body {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    let path = route_path(parts.uri.path(), stage.as_deref(), base_path);
    let mut out = http::Request::new(bytes);
    *out.method_mut() = parts.method;
    *out.uri_mut() = path.parse().unwrap_or_default();
    *out.headers_mut() = parts.headers;
    if let Some(ip) = ip {
        out.extensions_mut().insert(ClientIp(ip));
    }
    out
}

/// Converts the core's response into a lambda_http response (JSON bodies as text).
pub fn to_lambda_response(resp: http::Response<Vec<u8>>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let body = match String::from_utf8(body) {
        Ok(t) if t.is_empty() => Body::Empty,
        Ok(t) => Body::Text(t),
        Err(e) => Body::Binary(e.into_bytes()),
    };
    Response::from_parts(parts, body)
}

/// One event through the core.
pub async fn handle(bridge: &TxBridge, req: Request, base_path: Option<&str>) -> Response<Body> {
    to_lambda_response(bridge.handle(to_core_request(req, base_path)).await)
}

#[cfg(test)]
mod tests {
    use super::route_path;

    #[test]
    #[allow(clippy::panic)]
    fn a_panicking_request_is_caught() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|_| panic!());
        let caught = rt.block_on(super::CatchPanic(Box::pin(async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            1
        })));
        assert_eq!(caught, Err(()));
        let fine = rt.block_on(super::CatchPanic(Box::pin(async { 2 })));
        assert_eq!(fine, Ok(2));
    }

    #[test]
    fn stage_and_base_path_are_stripped() {
        let cases = [
            ("/token", None, None, "/token"),
            ("/prod/token", Some("prod"), None, "/token"),
            ("/production/token", Some("prod"), None, "/production/token"),
            ("/token", Some("$default"), None, "/token"),
            ("/tts/token", None, Some("/tts"), "/token"),
            (
                "/prod/tts/.well-known/jwks.json",
                Some("prod"),
                Some("/tts/"),
                "/.well-known/jwks.json",
            ),
            ("/prod", Some("prod"), None, "/"),
        ];
        for (path, stage, base, want) in cases {
            assert_eq!(
                route_path(path, stage, base),
                want,
                "{path} {stage:?} {base:?}"
            );
        }
    }
}
