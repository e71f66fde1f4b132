//! The one HTTP handler both shells call: routes, the exchange itself, responses.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use sha2::{Digest, Sha256};
use txbridge_signer::KeySet;

use crate::cache::KeyCache;
use crate::config::Config;
use crate::error::{Error, WireError};
use crate::form::{self, ExchangeRequest, GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_TXN_TOKEN};
use crate::mint::{self, Grant};
use crate::policy::{self, Decision};
use crate::ports::{Clock, HttpClient};
use crate::validate::{self, Subject};

/// Request extension a shell sets to the caller's address as its platform reports it
/// (Lambda: the event's source IP; Worker: `CF-Connecting-IP`). Becomes `rctx.req_ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Headers naming the requesting workload (`req_wl`), in order of preference.
pub const WORKLOAD_HEADERS: [&str; 2] = ["x-txbridge-workload", "x-kontxt-workload"];
const MAX_WORKLOAD_LEN: usize = 256;

/// The exchange service, built once per cold start and shared by all requests.
pub struct TxBridge {
    config: Config,
    keys: KeySet,
    http: Arc<dyn HttpClient>,
    clock: Arc<dyn Clock>,
    cache: KeyCache,
    jwks_body: Vec<u8>,
    metadata_body: Vec<u8>,
}

impl std::fmt::Debug for TxBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxBridge")
            .field("issuer", &self.config.issuer)
            .field("clusters", &self.config.clusters.len())
            .finish_non_exhaustive()
    }
}

/// The outcome of a successful exchange, for the log line.
struct Issued {
    body: Vec<u8>,
    txn: String,
    subject: Subject,
    scope: String,
}

impl TxBridge {
    pub fn new(
        config: Config,
        keys: KeySet,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let cache = KeyCache::new(config.clusters.len(), config.key_cache);
        let jwks_body = serde_json::to_vec(&keys.jwks()).unwrap_or_default();
        let metadata_body = serde_json::to_vec(&metadata(&config)).unwrap_or_default();
        TxBridge {
            config,
            keys,
            http,
            clock,
            cache,
            jwks_body,
            metadata_body,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers one request. Never fails: every error becomes an RFC 6749 error response.
    pub async fn handle(&self, req: Request<Vec<u8>>) -> Response<Vec<u8>> {
        let path = req.uri().path();
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        let head = req.method() == Method::HEAD;
        let resp = match path {
            "/token" | "/token_endpoint" => {
                if req.method() == Method::POST {
                    return self.exchange(req).await;
                }
                Err(Error::MethodNotAllowed { allow: "POST" })
            }
            "/.well-known/jwks.json" if get => Ok(json(
                StatusCode::OK,
                self.jwks_body.clone(),
                "public, max-age=300",
            )),
            "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server"
                if get =>
            {
                Ok(json(
                    StatusCode::OK,
                    self.metadata_body.clone(),
                    "public, max-age=300",
                ))
            }
            "/healthz" if get => Ok(json(
                StatusCode::OK,
                br#"{"status":"ok"}"#.to_vec(),
                "no-store",
            )),
            "/.well-known/jwks.json"
            | "/.well-known/openid-configuration"
            | "/.well-known/oauth-authorization-server"
            | "/healthz" => Err(Error::MethodNotAllowed { allow: "GET, HEAD" }),
            _ => Err(Error::NotFound),
        };
        let mut resp = resp.unwrap_or_else(|e| error_response(&e));
        if head {
            resp.body_mut().clear();
        }
        resp
    }

    async fn exchange(&self, req: Request<Vec<u8>>) -> Response<Vec<u8>> {
        let started = self.clock.now_millis();
        let digest = subject_digest(req.body());
        match self.try_exchange(req).await {
            Ok(issued) => {
                tracing::info!(
                    outcome = "issued",
                    txn = %issued.txn,
                    cluster = %issued.subject.cluster,
                    namespace = %issued.subject.namespace,
                    service_account = %issued.subject.service_account,
                    scope = %issued.scope,
                    subject_digest = %digest,
                    latency_ms = self.clock.now_millis().saturating_sub(started),
                    "token exchange"
                );
                let mut resp = json(StatusCode::OK, issued.body, "no-store");
                resp.headers_mut()
                    .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                resp
            }
            Err(err) => {
                let wire = WireError::from(&err);
                tracing::info!(
                    outcome = "rejected",
                    status = wire.status.as_u16(),
                    error = wire.code.as_str(),
                    reason = %err,
                    subject_digest = %digest,
                    latency_ms = self.clock.now_millis().saturating_sub(started),
                    "token exchange"
                );
                error_response(&err)
            }
        }
    }

    async fn try_exchange(&self, req: Request<Vec<u8>>) -> Result<Issued, Error> {
        if req.body().len() > form::MAX_BODY {
            return Err(Error::PayloadTooLarge);
        }
        if !form::is_form_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(Error::UnsupportedContentType);
        }
        let client_ip = req.extensions().get::<ClientIp>().map(|c| c.0);
        let workload = workload_header(&req)?;
        let exchange: ExchangeRequest = form::parse(req.body())?;
        if exchange
            .audience
            .as_ref()
            .is_some_and(|aud| aud != &self.config.trust_domain)
        {
            return Err(Error::InvalidTarget);
        }

        let now = self.clock.now();
        let subject = validate::validate(
            &self.config,
            &self.cache,
            self.http.as_ref(),
            exchange.subject_token.expose(),
            now,
        )
        .await
        .inspect_err(|e| tracing::debug!(reason = %e, "subject token rejected"))?;

        let ceiling =
            match policy::evaluate(&self.config.policies, &subject, &exchange.request_details) {
                Decision::Allow { ceiling } => ceiling,
                Decision::Deny => return Err(Error::NotAuthorized),
            };
        let scope = policy::grant(&ceiling, exchange.scope.as_deref()).ok_or_else(|| {
            tracing::debug!(cluster = %subject.cluster, namespace = %subject.namespace,
                service_account = %subject.service_account, "requested scope exceeds the ceiling");
            Error::InvalidScope
        })?;

        let req_wl = workload.unwrap_or_else(|| {
            format!(
                "{}:{}:{}",
                subject.cluster, subject.namespace, subject.service_account
            )
        });
        let minted = mint::mint(
            &self.config.issuer,
            &self.config.trust_domain,
            self.config.token_lifetime,
            self.keys.signer(),
            Grant {
                subject: &subject,
                scope: &scope,
                req_wl,
                req_ip: client_ip,
                authn: exchange.subject_token_type,
                request_details: exchange.request_details,
                request_context: exchange.request_context,
            },
            now,
        )
        .await?;

        let scope = scope.join(" ");
        let body = serde_json::to_vec(&serde_json::json!({
            "access_token": minted.token.expose(),
            "issued_token_type": TOKEN_TYPE_TXN_TOKEN,
            "token_type": "N_A",
            "expires_in": minted.exp - minted.iat,
            "scope": scope,
        }))
        .map_err(|_| Error::Internal)?;
        Ok(Issued {
            body,
            txn: minted.txn,
            subject,
            scope,
        })
    }
}

/// A short SHA-256 fingerprint of the request's subject token, for correlating logs.
fn subject_digest(body: &[u8]) -> String {
    let token = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "subject_token")
        .map(|(_, v)| v.into_owned());
    match token {
        Some(t) if !t.is_empty() => {
            let d = Sha256::digest(t.as_bytes());
            d[..8].iter().map(|b| format!("{b:02x}")).collect()
        }
        _ => "-".to_owned(),
    }
}

fn workload_header(req: &Request<Vec<u8>>) -> Result<Option<String>, Error> {
    for name in WORKLOAD_HEADERS {
        let mut values = req.headers().get_all(name).iter();
        let Some(v) = values.next() else { continue };
        if values.next().is_some() {
            return Err(Error::InvalidParameter("X-Txbridge-Workload"));
        }
        let ok = v.len() <= MAX_WORKLOAD_LEN
            && !v.is_empty()
            && v.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b));
        if !ok {
            return Err(Error::InvalidParameter("X-Txbridge-Workload"));
        }
        return Ok(v.to_str().ok().map(str::to_owned));
    }
    Ok(None)
}

fn metadata(config: &Config) -> serde_json::Value {
    let issuer = &config.issuer;
    serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": [GRANT_TYPE_TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "issued_token_types_supported": [TOKEN_TYPE_TXN_TOKEN],
        "subject_token_types_supported": [form::TOKEN_TYPE_JWT, form::TOKEN_TYPE_ID_TOKEN],
    })
}

fn json(status: StatusCode, body: Vec<u8>, cache_control: &'static str) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The RFC 6749 §5.2 response for an error.
pub fn error_response(err: &Error) -> Response<Vec<u8>> {
    let wire = WireError::from(err);
    let mut resp = json(wire.status, wire.body(), "no-store");
    let h = resp.headers_mut();
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(secs) = wire.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(allow) = wire.allow {
        h.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

/// The response a shell gives when it could not start (bad config or key): a generic 503.
pub fn unavailable_response() -> Response<Vec<u8>> {
    error_response(&Error::SigningUnavailable)
}
