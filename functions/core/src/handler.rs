//! The one HTTP handler both shells call: routes, the token endpoint's log line, responses.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::error::{Error, WireError};
use crate::form::{self, TOKEN_TYPE_TXN_TOKEN};
use crate::logline::EXCHANGE_TARGET;
use crate::request::{Kind, TokenRequest};
use crate::service::{Trail, TxBridge};
use txbridge_jose::{sha256, trace_id, with_deadline};

/// Headers naming the requesting workload (`req_wl`).
pub use crate::workload::WORKLOAD_HEADERS;

/// The most one token request may spend waiting on upstreams (issuer discovery and JWKS for the
/// subject and the actor, a KMS `Sign`): past it the answer is 503 `temporarily_unavailable`
/// with `Retry-After`. Each key fetch is bounded at 6 s and each upstream request at 4 s; this
/// bounds their sum, so a stalled issuer or KMS gets a 503 well within the Lambda's timeout
/// (Terraform default 15 s, which also leaves room for a cold start retried in the request)
/// instead of a 502 and a reset execution environment.
pub const UPSTREAM_BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

impl TxBridge {
    /// Answers one request. Never fails: every error becomes an RFC 6749 error response.
    pub async fn handle(&self, req: Request<Vec<u8>>) -> Response<Vec<u8>> {
        let path = req.uri().path();
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        let head = req.method() == Method::HEAD;
        let resp = match path {
            "/token" | "/token_endpoint" => {
                if req.method() == Method::POST {
                    return self.token_endpoint(req).await;
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

    /// `POST /token`: the pipeline within the upstream budget, and its one log line (target
    /// [`EXCHANGE_TARGET`]: the same members on every line, the metrics' labels among them).
    async fn token_endpoint(&self, req: Request<Vec<u8>>) -> Response<Vec<u8>> {
        let started = self.clock.now_millis();
        // Only a body within the size cap is read at all, for the fingerprint too.
        let digest = if req.body().len() <= form::MAX_BODY {
            subject_digest(req.body())
        } else {
            "-".to_owned()
        };
        let trace_id = trace_id(req.headers());
        let mut trail = Trail::default();
        let work = async {
            let parsed = TokenRequest::parse(&req)?;
            self.issue(parsed, self.clock.now(), &mut trail).await
        };
        let outcome = with_deadline(self.runtime.sleep(UPSTREAM_BUDGET), work)
            .await
            .unwrap_or_else(|| {
                tracing::warn!(
                    budget_s = UPSTREAM_BUDGET.as_secs(),
                    "token request exceeded its upstream budget"
                );
                Err(Error::UpstreamUnavailable { retry_after: 1 })
            });
        let response = outcome.and_then(|issued| {
            let body = token_response(issued.token.expose(), issued.expires_in, &issued.scope)?;
            Ok((issued, body))
        });
        let wire = response.as_ref().err().map(WireError::from);
        let (outcome, status, error) = match &wire {
            None => ("issued", 200, ""),
            Some(w) if w.status.is_server_error() => ("error", w.status.as_u16(), w.code.as_str()),
            Some(w) => ("rejected", w.status.as_u16(), w.code.as_str()),
        };
        let issued = response.as_ref().ok().map(|(issued, _)| issued);
        let subject = issued.map(|i| &i.subject);
        tracing::info!(
            target: EXCHANGE_TARGET,
            outcome,
            status,
            error,
            reason = %response.as_ref().err().map(ToString::to_string).unwrap_or_default(),
            kind = trail.kind.map_or("exchange", Kind::as_str),
            cluster = trail.cluster.as_deref().unwrap_or_default(),
            policy = trail.policy.as_deref().unwrap_or_default(),
            txn = trail.txn.as_deref().unwrap_or_default(),
            trace_id = trace_id.as_deref().unwrap_or_default(),
            namespace = subject.map_or("", |s| s.namespace.as_str()),
            service_account = subject.map_or("", |s| s.service_account.as_str()),
            scope = issued.map_or("", |i| i.scope.as_str()),
            actor = trail.actor.as_deref().unwrap_or_default(),
            subject_digest = %digest,
            latency_ms = self.clock.now_millis().saturating_sub(started),
            "token exchange"
        );
        match response {
            Ok((_, body)) => {
                let mut resp = json(StatusCode::OK, body, "no-store");
                resp.headers_mut()
                    .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                resp
            }
            Err(err) => error_response(&err),
        }
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
            let d = sha256(t.as_bytes());
            d[..8]
                .iter()
                .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]])
                .map(char::from)
                .collect()
        }
        _ => "-".to_owned(),
    }
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
