//! A tower middleware (axum, hyper, tonic) that verifies the `Txn-Token` header.
//!
//! - [`Mode::Enforce`]: a missing or invalid token gets 401, a valid token that lacks a required
//!   scope or fails a tctx constraint gets 403, unavailable keys get 503 (`Retry-After`). The
//!   inner service is not called.
//! - [`Mode::Audit`]: the would-deny decision is logged (`tracing` at warn, target
//!   `txbridge_verifier::audit`, with the `txn` when the token verified and the reason, never the
//!   token) and the request goes through.
//!
//! Whenever the token verifies, its [`TxTokenClaims`] are inserted as a request extension. In
//! audit mode a request that would be denied also carries a [`WouldDeny`] extension with the
//! reason (a missing token, an invalid one, or the requirement it failed). **In audit mode the
//! claims are not an authorization**: a handler must check for [`WouldDeny`] (or check the
//! requirements itself) before it acts on them; the claims of a token that failed a requirement
//! are genuine, but insufficient.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Error, Requirements, TxTokenClaims, Verifier};

/// The middleware's future: `Send` natively; on wasm32 the key fetch (the runtime's `fetch`)
/// is not `Send`, so neither is this.
#[cfg(not(target_arch = "wasm32"))]
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
#[cfg(target_arch = "wasm32")]
type BoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// The request header carrying the TxToken (draft-ietf-oauth-transaction-tokens).
pub const TXN_TOKEN_HEADER: &str = "txn-token";

/// What the middleware does with a request it would deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reject it (401/403/503).
    Enforce,
    /// Log the decision and let it through.
    Audit,
}

/// The layer: a shared [`Verifier`], the [`Requirements`] and the [`Mode`].
#[derive(Debug, Clone)]
pub struct TxnTokenLayer {
    verifier: Arc<Verifier>,
    requirements: Arc<Requirements>,
    mode: Mode,
}

impl TxnTokenLayer {
    pub fn new(verifier: Arc<Verifier>, requirements: Requirements, mode: Mode) -> Self {
        TxnTokenLayer {
            verifier,
            requirements: Arc::new(requirements),
            mode,
        }
    }

    /// Rejects requests without a sufficient TxToken.
    pub fn enforce(verifier: Arc<Verifier>, requirements: Requirements) -> Self {
        Self::new(verifier, requirements, Mode::Enforce)
    }

    /// Logs requests that would be rejected and lets them through.
    pub fn audit(verifier: Arc<Verifier>, requirements: Requirements) -> Self {
        Self::new(verifier, requirements, Mode::Audit)
    }
}

impl<S> Layer<S> for TxnTokenLayer {
    type Service = TxnTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TxnTokenService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Audit mode only: why the request would have been denied (the [`Error`] the enforcing layer
/// would have answered with: missing or invalid token, keys unavailable, a failed scope or tctx
/// requirement). Its presence means the request is NOT authorized, whatever claims it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldDeny(pub Error);

/// The middleware service.
#[derive(Debug, Clone)]
pub struct TxnTokenService<S> {
    inner: S,
    layer: TxnTokenLayer,
}

/// Exactly one `Txn-Token` header with a visible-ASCII value, or None.
fn header_token<B>(req: &Request<B>) -> Result<Option<String>, Error> {
    let mut values = req.headers().get_all(TXN_TOKEN_HEADER).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(crate::TokenError::Malformed.into());
    }
    match v.to_str() {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        _ => Err(crate::TokenError::Malformed.into()),
    }
}

/// The decision for one request: verified claims (if any) and the reason to deny (if any).
async fn decide(
    verifier: &Verifier,
    requirements: &Requirements,
    token: Result<Option<String>, Error>,
) -> (Option<TxTokenClaims>, Option<Error>) {
    let token = match token {
        Ok(Some(t)) => t,
        Ok(None) => return (None, Some(Error::Missing)),
        Err(e) => return (None, Some(e)),
    };
    match verifier.verify(&token).await {
        Ok(claims) => {
            let denied = requirements.check(&claims).err();
            (Some(claims), denied)
        }
        Err(e) => (None, Some(e)),
    }
}

fn reject<B: Default>(err: &Error) -> Response<B> {
    let status = if err.is_unauthenticated() {
        StatusCode::UNAUTHORIZED
    } else if err.is_forbidden() {
        StatusCode::FORBIDDEN
    } else if matches!(err, Error::KeysUnavailable(_)) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut resp = Response::new(B::default());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let secs = match err {
            Error::KeysUnavailable(u) => u.retry_after,
            _ => 5,
        };
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TxnTokenService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready handles this request; the clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let token = header_token(&req);
        Box::pin(async move {
            let (claims, denied) = decide(&layer.verifier, &layer.requirements, token).await;
            if let Some(err) = &denied {
                let txn = claims.as_ref().map_or("-", |c| c.txn.as_str());
                match layer.mode {
                    Mode::Enforce => {
                        tracing::info!(target: "txbridge_verifier::enforce", txn, reason = %err,
                            "transaction token denied");
                        return Ok(reject(err));
                    }
                    Mode::Audit => {
                        tracing::warn!(target: "txbridge_verifier::audit", txn, reason = %err,
                            "transaction token would be denied (audit mode: let through)");
                    }
                }
            }
            if let Some(err) = denied {
                req.extensions_mut().insert(WouldDeny(err));
            }
            if let Some(claims) = claims {
                req.extensions_mut().insert(claims);
            }
            inner.call(req).await
        })
    }
}
