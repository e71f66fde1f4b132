//! The native adapters of the ports (feature `reqwest`): an [`HttpClient`] on reqwest (rustls,
//! no redirects, timeouts, capped body) and the [`AsyncRuntime`] of a tokio program. Used by the
//! Lambda shell's discovery/JWKS fetches, consumers (txbridge-verifier) and the `txbridge` CLI.

use std::time::Duration;

use crate::ports::{AsyncRuntime, HttpClient, HttpError, MAX_UPSTREAM_BODY, REQUEST_TIMEOUT, Task};

/// Connect timeout for key fetches (the whole request: [`REQUEST_TIMEOUT`]).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Outbound HTTP for discovery and JWKS fetches.
#[derive(Debug, Clone)]
pub struct ReqwestClient {
    client: reqwest::Client,
}

impl ReqwestClient {
    /// A client that never follows redirects and gives up after a few seconds (user agent
    /// `txbridge-verifier/<version>`: a consumer's).
    pub fn new() -> Result<Self, HttpError> {
        Self::with_user_agent(concat!("txbridge-verifier/", env!("CARGO_PKG_VERSION")))
    }

    /// The same client, naming itself `user_agent` (the service's own key fetches use it too).
    pub fn with_user_agent(user_agent: &str) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(user_agent)
            .build()
            .map_err(|_| HttpError::Other("cannot build the HTTP client".into()))?;
        Ok(ReqwestClient { client })
    }
}

/// TLS 1.2/1.3 on aws-lc-rs, trusting Mozilla's root CAs (webpki-roots, compiled in). Building it
/// takes microseconds; reading and parsing the system's CA bundle (reqwest's default) took about
/// 2 ms of every Lambda cold start.
fn tls_config() -> Result<rustls::ClientConfig, HttpError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| HttpError::Other("cannot build the TLS configuration".into()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn map_err(e: &reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_connect() {
        HttpError::Connect
    } else {
        HttpError::Other("request failed".into())
    }
}

#[async_trait::async_trait]
impl HttpClient for ReqwestClient {
    async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut resp = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| map_err(&e))?;
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_UPSTREAM_BODY as u64)
        {
            return Err(HttpError::BodyTooLarge);
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| map_err(&e))? {
            if body.len() + chunk.len() > MAX_UPSTREAM_BODY {
                return Err(HttpError::BodyTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// The tokio runtime the program runs on: timers, and background tasks spawned onto it (which
/// need a runtime when spawned: build the verifier or the service inside one).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

#[async_trait::async_trait]
impl AsyncRuntime for TokioRuntime {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn spawn(&self, task: Task) {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(task);
            }
            // Outside a runtime the refresh is left undone; the next request past the TTL asks
            // again.
            Err(_) => tracing::warn!("no tokio runtime: background key refresh skipped"),
        }
    }
}
