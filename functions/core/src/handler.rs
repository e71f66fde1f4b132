//! The one HTTP handler both shells call: routes, the exchange itself, responses.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use txbridge_signer::KeySet;

use crate::config::Config;
use crate::error::{Error, WireError};
use crate::form::{self, ExchangeRequest, GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_TXN_TOKEN};
use crate::identity::Subject;
use crate::mint::{self, Grant};
use crate::policy::{self, Decision};
use crate::replace::{self, ReplaceRequest};
use crate::subject::{self, Rejected};
use crate::workload;
use txbridge_jose::crypto;
use txbridge_jose::jws::{VerifyBackend, VerifyKey};
use txbridge_jose::keys::KeyCache;
use txbridge_jose::ports::{AsyncRuntime, Clock, HttpClient, with_deadline};
use txbridge_jose::txtoken::{self, Expectations, TxTokenError};

/// Request extension a shell sets to the caller's address as its platform reports it
/// (Lambda: the event's source IP; Worker: `CF-Connecting-IP`). Becomes `rctx.req_ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Headers naming the requesting workload (`req_wl`).
pub use crate::workload::WORKLOAD_HEADERS;

/// The most one token request may spend waiting on upstreams (issuer discovery and JWKS for the
/// subject and the actor, a KMS `Sign`): past it the answer is 503 `temporarily_unavailable`
/// with `Retry-After`. Each key fetch is bounded at 6 s and each upstream request at 4 s; this
/// bounds their sum, so a stalled issuer or KMS gets a 503 well within the Lambda's timeout
/// (Terraform default 15 s, which also leaves room for a cold start retried in the request)
/// instead of a 502 and a reset execution environment.
pub const UPSTREAM_BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

/// The exchange service, built once per cold start and shared by all requests.
pub struct TxBridge {
    config: Config,
    keys: KeySet,
    clock: Arc<dyn Clock>,
    runtime: Arc<dyn AsyncRuntime>,
    cache: KeyCache,
    jwks_body: Vec<u8>,
    metadata_body: Vec<u8>,
    /// The active key, parsed once: it verifies the TxTokens to replace.
    active_key: Vec<VerifyKey>,
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
    /// The authenticated workload that asked to replace a TxToken (a replacement), or `None`
    /// (an exchange of an SA token).
    actor: Option<String>,
}

impl TxBridge {
    /// The service from its config and keys, and the shell's ports: outbound HTTP (discovery,
    /// JWKS), the clock, and the async runtime (timers, background key refreshes).
    pub fn new(
        config: Config,
        keys: KeySet,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
        runtime: Arc<dyn AsyncRuntime>,
    ) -> Self {
        let sources = config.clusters.iter().map(|c| c.key_source()).collect();
        let cache = KeyCache::new(
            sources,
            config.key_cache,
            http,
            clock.clone(),
            runtime.clone(),
        );
        let jwks_body = serde_json::to_vec(&keys.jwks()).unwrap_or_default();
        let metadata_body = serde_json::to_vec(&metadata(&config)).unwrap_or_default();
        // The active key is a checked P-256 key with a kid, so this cannot drop it.
        let active = serde_json::json!({ "keys": [keys.signer().public_jwk()] });
        let active_key = serde_json::to_vec(&active)
            .ok()
            .and_then(|body| txtoken::parse_keys(&body).ok())
            .unwrap_or_default();
        TxBridge {
            config,
            keys,
            clock,
            runtime,
            cache,
            jwks_body,
            metadata_body,
            active_key,
        }
    }

    /// Verifies subject-token signatures through `backend` where it can import the key (the
    /// Worker: WebCrypto); txbridge's own code verifies the rest.
    pub fn with_verify_backend(mut self, backend: Arc<dyn VerifyBackend>) -> Self {
        self.cache = self.cache.with_verify_backend(backend);
        self
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
        // Only a body within the size cap is read at all, for the fingerprint too.
        let digest = if req.body().len() <= form::MAX_BODY {
            subject_digest(req.body())
        } else {
            "-".to_owned()
        };
        let budget = self.runtime.sleep(UPSTREAM_BUDGET);
        let outcome = with_deadline(budget, self.try_exchange(req))
            .await
            .unwrap_or_else(|| {
                tracing::warn!(
                    budget_s = UPSTREAM_BUDGET.as_secs(),
                    "token request exceeded its upstream budget"
                );
                Err(Error::UpstreamUnavailable { retry_after: 1 })
            });
        match outcome {
            Ok(issued) => {
                tracing::info!(
                    outcome = "issued",
                    txn = %issued.txn,
                    cluster = %issued.subject.cluster,
                    namespace = %issued.subject.namespace,
                    service_account = %issued.subject.service_account,
                    scope = %issued.scope,
                    replacement = issued.actor.is_some(),
                    actor = issued.actor.as_deref(),
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
        let claimed = workload::claimed(req.headers())?;
        let exchange: ExchangeRequest = form::parse(req.body())?;
        if exchange
            .audience
            .as_ref()
            .is_some_and(|aud| aud != &self.config.trust_domain)
        {
            return Err(Error::InvalidTarget);
        }

        let now = self.clock.now();
        if exchange.subject_token_type == TOKEN_TYPE_TXN_TOKEN {
            return self.try_replace(exchange, claimed, now).await;
        }
        if exchange.actor_token.is_some() {
            return Err(Error::ActorTokenNotSupported);
        }
        let subject = subject::validate(
            &self.config,
            &self.cache,
            exchange.subject_token.expose(),
            now,
        )
        .await
        .map_err(Error::from)
        .inspect_err(|e| tracing::debug!(reason = %e, "subject token rejected"))?;

        let policies = &self.config.policies;
        let ceiling = match policy::evaluate(policies, &subject, &exchange.request_details) {
            Decision::Allow { ceiling } => ceiling,
            Decision::Deny => return Err(Error::NotAuthorized),
        };
        let req_wl = workload::authorize(
            claimed,
            &subject.workload_id,
            policy::workload_globs(policies, &subject, &exchange.request_details),
        )?;
        let scope = policy::grant(&ceiling, exchange.scope.as_deref()).ok_or_else(|| {
            tracing::debug!(cluster = %subject.cluster, namespace = %subject.namespace,
                service_account = %subject.service_account, "requested scope exceeds the ceiling");
            Error::InvalidScope
        })?;

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
        let body = token_response(minted.token.expose(), minted.exp - minted.iat, &scope)?;
        Ok(Issued {
            body,
            txn: minted.txn,
            subject,
            scope,
            actor: None,
        })
    }

    /// A replacement TxToken for a TxToken of this service, requested by the workload its
    /// `actor_token` authenticates (rules in [`crate::replace`]).
    async fn try_replace(
        &self,
        exchange: ExchangeRequest,
        claimed: Option<String>,
        now: u64,
    ) -> Result<Issued, Error> {
        let expect = Expectations {
            issuer: &self.config.issuer,
            audience: &self.config.trust_domain,
            leeway: self.config.leeway,
        };
        let token = exchange.subject_token.expose();
        let original = txtoken::verify(token, &self.active_key, &expect, now)
            .map_err(|e| match e {
                TxTokenError::UnknownKey if self.signed_by_retired_key(token) => {
                    Error::ReplacementKeyRetired
                }
                e => Error::TxnToken(e),
            })
            .inspect_err(
                |e| tracing::debug!(reason = %e, "transaction token to replace rejected"),
            )?;

        // The replacing workload: its own SA token, validated like a subject token, allowed by a
        // policy (default deny); its workload id under the header rules.
        let (actor_token, _) = exchange
            .actor_token
            .as_ref()
            .ok_or(Error::ActorTokenRequired)?;
        let actor = subject::validate(&self.config, &self.cache, actor_token.expose(), now)
            .await
            .map_err(|e| match e {
                Rejected::Token(e) => Error::ActorToken(e),
                keys @ Rejected::KeysUnavailable(_) => keys.into(),
            })
            .inspect_err(|e| tracing::debug!(reason = %e, "actor token rejected"))?;
        let policies = &self.config.policies;
        if policy::applicable(policies, &actor, &original.tctx)
            .next()
            .is_none()
        {
            tracing::debug!(cluster = %actor.cluster, namespace = %actor.namespace,
                service_account = %actor.service_account, "no policy matches the actor");
            return Err(Error::ActorNotAuthorized);
        }
        let actor_workload = workload::authorize(
            claimed,
            &actor.workload_id,
            policy::workload_globs(policies, &actor, &original.tctx),
        )?;

        let planned = replace::plan(
            &self.config,
            original,
            ReplaceRequest {
                scope: exchange.scope.as_deref(),
                request_details: exchange.request_details,
                request_context: exchange.request_context,
                actor_workload: actor_workload.clone(),
            },
            now,
        )?;
        let token = mint::sign_claims(self.keys.signer(), &planned.claims, &planned.txn).await?;
        let scope = planned.scope.join(" ");
        let body = token_response(token.expose(), planned.exp - planned.iat, &scope)?;
        Ok(Issued {
            body,
            txn: planned.txn,
            subject: planned.subject,
            scope,
            actor: Some(actor_workload),
        })
    }

    /// Does the token name (in its header) one of the previous keys the JWKS still publishes?
    fn signed_by_retired_key(&self, token: &str) -> bool {
        let kid = txbridge_jose::jws::parse_compact(token)
            .ok()
            .and_then(|jws| jws.kid);
        kid.is_some_and(|kid| {
            kid != self.keys.signer().key_id()
                && self.keys.public_keys().iter().any(|k| k.kid() == kid)
        })
    }
}

/// The RFC 8693 success body. Fields in the order a `json!` object serialized them (sorted).
#[derive(serde::Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    expires_in: u64,
    issued_token_type: &'a str,
    scope: &'a str,
    token_type: &'a str,
}

fn token_response(token: &str, expires_in: u64, scope: &str) -> Result<Vec<u8>, Error> {
    let body = TokenResponse {
        access_token: token,
        expires_in,
        issued_token_type: TOKEN_TYPE_TXN_TOKEN,
        scope,
        token_type: "N_A",
    };
    let mut out = Vec::with_capacity(token.len() + scope.len() + 128);
    serde_json::to_writer(&mut out, &body).map_err(|_| Error::Internal)?;
    Ok(out)
}

/// A short SHA-256 fingerprint of the request's subject token, for correlating logs.
///
/// The token is the first `subject_token` pair decoded as `form_urlencoded::parse` decodes it,
/// but only that pair's value is decoded, and a value that needs no decoding is not copied.
fn subject_digest(body: &[u8]) -> String {
    let needs_decoding = |s: &[u8]| s.iter().any(|b| matches!(b, b'%' | b'+'));
    let token = body
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            let is_subject_token = if needs_decoding(key) {
                url::form_urlencoded::parse(key)
                    .next()
                    .is_some_and(|(k, _)| k == "subject_token")
            } else {
                key == b"subject_token"
            };
            if !is_subject_token {
                None
            } else if needs_decoding(value) {
                url::form_urlencoded::parse(pair).next().map(|(_, v)| v)
            } else {
                // Valid UTF-8 (the usual case) is borrowed as is, which is what the lossy
                // conversion would give, without its slower scan.
                Some(match std::str::from_utf8(value) {
                    Ok(s) => std::borrow::Cow::Borrowed(s),
                    Err(_) => String::from_utf8_lossy(value),
                })
            }
        });
    match token {
        Some(t) if !t.is_empty() => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let d = crypto::sha256(t.as_bytes());
            d.as_ref()[..8]
                .iter()
                .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]])
                .map(char::from)
                .collect()
        }
        _ => "-".to_owned(),
    }
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
        "subject_token_types_supported": [form::TOKEN_TYPE_JWT, form::TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_TXN_TOKEN],
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

#[cfg(test)]
mod tests {
    /// The fingerprint as it was first written: decode every pair, take the first token.
    fn reference_digest(body: &[u8]) -> String {
        use sha2::{Digest as _, Sha256};
        let token = url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "subject_token")
            .map(|(_, v)| v.into_owned());
        match token {
            Some(t) if !t.is_empty() => Sha256::digest(t.as_bytes())[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            _ => "-".to_owned(),
        }
    }

    #[test]
    fn token_response_is_the_json_object() {
        let old = serde_json::json!({
            "access_token": "a.b.c",
            "issued_token_type": super::TOKEN_TYPE_TXN_TOKEN,
            "token_type": "N_A",
            "expires_in": 300,
            "scope": "x y",
        });
        assert_eq!(
            super::token_response("a.b.c", 300, "x y").unwrap(),
            serde_json::to_vec(&old).unwrap()
        );
    }

    #[test]
    fn subject_digest_matches_a_full_form_decode() {
        let bodies: &[&[u8]] = &[
            b"",
            b"subject_token=",
            b"grant_type=urn%3Aietf&subject_token=eyJh.eyJp.c2ln&x=1",
            b"subject_token=a.b.c&subject_token=d.e.f",
            b"subject%5Ftoken=a%2Bb+c",
            b"subject_token=a+b%20c&&",
            b"&&subject_token",
            b"subject_token=a=b=c",
            b"subject_token=\xff\xfe.x",
            b"subject_token=%ff%fe.x",
            b"subject+token=x&subject_token=y",
            b"scope=a+b",
        ];
        for body in bodies {
            assert_eq!(
                super::subject_digest(body),
                reference_digest(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
