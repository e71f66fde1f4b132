//! The decision: one place that turns "this method, this original URI, these token headers"
//! into an [`Answer`], for every endpoint (forward-auth, HTTP and gRPC ext_authz) alike.
//!
//! Order: the original request (method and URI present, path in normal form) -> the route (first
//! whose path and method match) -> the token (exactly one header; verified by txbridge-verifier:
//! typ, ES256, iss, aud, exp/iat with leeway, txn) -> the route's requirements (scopes, tctx,
//! workloads) or, with no route, `default`. One log line per denial, one metrics sample per
//! decision; never the token.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use txbridge_verifier::{Error, Requirements, TxTokenClaims, Verifier};

use crate::config::{Config, Default};
use crate::metrics::{Decision, Metrics};
use crate::route::normalize_path;

/// The log target of the decision lines.
pub const DECISION_TARGET: &str = "txbridge_gate::decision";

/// The answer headers of an allowed request (the proxy copies them upstream).
pub const HEADER_TXN: &str = "x-txbridge-txn";
pub const HEADER_SUB: &str = "x-txbridge-sub";
pub const HEADER_SCOPE: &str = "x-txbridge-scope";
pub const HEADER_REQ_WL: &str = "x-txbridge-req-wl";

/// The token as the request carried it.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    /// No token header.
    Missing,
    /// Exactly one, with a usable value.
    One(String),
    /// Two or more token headers, or one whose value is not visible ASCII: refused as malformed.
    Unusable,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Presented::Missing => "Missing",
            Presented::One(_) => "One(<redacted>)",
            Presented::Unusable => "Unusable",
        })
    }
}

impl Presented {
    /// The token among `values` (every value of the token header the request carried).
    pub fn from_values<'v>(mut values: impl Iterator<Item = &'v [u8]>) -> Presented {
        let Some(first) = values.next() else {
            return Presented::Missing;
        };
        if values.next().is_some() {
            return Presented::Unusable;
        }
        match std::str::from_utf8(first) {
            Ok(s)
                if !s.trim().is_empty() && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
            {
                Presented::One(s.trim().to_owned())
            }
            _ => Presented::Unusable,
        }
    }
}

/// What the gate is asked.
#[derive(Debug)]
pub struct Query {
    /// The original method; `None` when the proxy did not say.
    pub method: Option<String>,
    /// The original URI (path and maybe query); `None` when the proxy did not say.
    pub uri: Option<String>,
    pub token: Presented,
    /// From the request's `traceparent`, for the log line.
    pub trace_id: Option<String>,
}

/// The gate's answer, for any endpoint to put on its wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub decision: Decision,
    /// 200, 401, 403 or 503.
    pub status: u16,
    /// Headers: the four `X-Txbridge-*` on an allow; `WWW-Authenticate`, `Retry-After` and
    /// `Content-Type` on a denial. Lower-case names.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON error body of a denial; empty on an allow.
    pub body: String,
}

/// The gate: config, verifier, metrics. Built once at start, shared by every endpoint.
#[derive(Debug)]
pub struct Gate {
    config: Config,
    requirements: Vec<Requirements>,
    verifier: Verifier,
    metrics: Arc<Metrics>,
}

/// Why a request is answered as it is (logged; the client sees a generic description). The
/// reasons are fixed phrases (txbridge-jose's errors included): never anything from the token.
enum Verdict {
    Allow(TxTokenClaims),
    Invalid(String),
    /// The reason, and the `txn` of a valid token.
    Deny(&'static str, Option<String>),
    /// The reason, and `Retry-After` seconds.
    Unavailable(String, u32),
}

impl Gate {
    /// The gate, counting into `metrics` (shared with the log subscriber, which counts the key
    /// fetches).
    pub fn new(config: Config, verifier: Verifier, metrics: Arc<Metrics>) -> Arc<Gate> {
        let requirements = config.routes.iter().map(|r| r.requirements()).collect();
        Arc::new(Gate {
            config,
            requirements,
            verifier,
            metrics,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Decides one request, logs a denial and counts it.
    pub async fn check(&self, q: Query) -> Answer {
        let started = Instant::now();
        let (method, path) = match (&q.method, &q.uri) {
            (Some(m), Some(u)) => (m.as_str(), normalize_path(u)),
            _ => {
                let v = Verdict::Deny("the proxy sent no original method and URI", None);
                return self.finish(&q, "", None, v, started);
            }
        };
        let path = match path {
            Ok(p) => p,
            Err(e) => return self.finish(&q, "", None, Verdict::Deny(e.as_str(), None), started),
        };
        let route = self
            .config
            .routes
            .iter()
            .position(|r| r.matches(method, &path));
        let route_id = route.map_or("", |i| self.config.routes[i].id.as_str());
        let verdict = self.verdict(&q.token, route).await;
        self.finish(&q, route_id, Some(&path), verdict, started)
    }

    async fn verdict(&self, token: &Presented, route: Option<usize>) -> Verdict {
        let token = match token {
            Presented::One(t) => t,
            Presented::Missing => return Verdict::Invalid("no transaction token".into()),
            Presented::Unusable => {
                return Verdict::Invalid("token header repeated or not printable".into());
            }
        };
        let claims = match self.verifier.verify(token).await {
            Ok(c) => c,
            Err(Error::Invalid(e)) => return Verdict::Invalid(e.to_string()),
            Err(Error::Missing) => return Verdict::Invalid("no transaction token".into()),
            Err(Error::KeysUnavailable(u)) => {
                return Verdict::Unavailable(format!("issuer keys: {}", u.reason), u.retry_after);
            }
            Err(_) => return Verdict::Unavailable("the verifier is not usable".into(), 5),
        };
        let txn = Some(claims.txn.clone());
        match route {
            Some(i) => match self.requirements[i].check(&claims) {
                Ok(()) => Verdict::Allow(claims),
                Err(Error::ScopeMissing) => Verdict::Deny("a required scope is missing", txn),
                Err(Error::TctxMismatch) => {
                    Verdict::Deny("the transaction context does not match", txn)
                }
                Err(Error::WorkloadMismatch) => {
                    Verdict::Deny("the requesting workload is not allowed", txn)
                }
                Err(_) => Verdict::Deny("the route's requirements are not met", txn),
            },
            None => match self.config.default {
                Default::Verify => Verdict::Allow(claims),
                Default::Deny => Verdict::Deny("no route matches (default deny)", txn),
            },
        }
    }

    fn finish(
        &self,
        q: &Query,
        route: &str,
        path: Option<&str>,
        verdict: Verdict,
        started: Instant,
    ) -> Answer {
        // Absent (not empty) in the line when there is none.
        let trace_id = q.trace_id.as_deref();
        let method = q.method.as_deref().unwrap_or_default();
        let path = path.unwrap_or_default();
        let answer = match verdict {
            Verdict::Allow(claims) => {
                tracing::debug!(target: DECISION_TARGET, decision = "allow", status = 200u16,
                    route, txn = %claims.txn, trace_id, method, path, "allowed");
                allow(&claims)
            }
            Verdict::Invalid(reason) => {
                tracing::info!(target: DECISION_TARGET, decision = "invalid", status = 401u16,
                    route, reason = reason.as_str(), trace_id, method, path, "denied");
                denial(
                    Decision::Invalid,
                    401,
                    "invalid_token",
                    "the transaction token is missing or not valid",
                )
            }
            Verdict::Deny(reason, txn) => {
                let txn = txn.as_deref();
                tracing::info!(target: DECISION_TARGET, decision = "deny", status = 403u16,
                    route, reason, txn, trace_id, method, path, "denied");
                denial(
                    Decision::Deny,
                    403,
                    "insufficient_scope",
                    "the transaction token does not allow this request",
                )
            }
            Verdict::Unavailable(reason, retry_after) => {
                tracing::warn!(target: DECISION_TARGET, decision = "unavailable", status = 503u16,
                    route, reason = reason.as_str(), trace_id, method, path, "denied");
                let mut a = denial(
                    Decision::Unavailable,
                    503,
                    "temporarily_unavailable",
                    "the token issuer's keys are unavailable; retry later",
                );
                a.headers
                    .push(("retry-after", retry_after.max(1).to_string()));
                a
            }
        };
        self.metrics
            .record(answer.decision, route, started.elapsed());
        answer
    }
}

/// Header values the proxies can carry: visible ASCII and spaces; anything else is dropped.
fn header_safe(v: &str) -> String {
    if v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        v.to_owned()
    } else {
        String::new()
    }
}

fn allow(c: &TxTokenClaims) -> Answer {
    Answer {
        decision: Decision::Allow,
        status: 200,
        // All four always (empty when the token lacks it), so that the proxy overwrites any
        // header of these names the client sent.
        headers: vec![
            (HEADER_TXN, header_safe(&c.txn)),
            (HEADER_SUB, header_safe(&c.sub)),
            (HEADER_SCOPE, header_safe(&c.scope.join(" "))),
            (
                HEADER_REQ_WL,
                header_safe(c.req_wl.as_deref().unwrap_or_default()),
            ),
        ],
        body: String::new(),
    }
}

fn denial(decision: Decision, status: u16, error: &str, description: &str) -> Answer {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if status == 401 || status == 403 {
        headers.push((
            "www-authenticate",
            format!("Bearer realm=\"txbridge-gate\", error=\"{error}\", error_description=\"{description}\""),
        ));
    }
    headers.push(("cache-control", "no-store".to_owned()));
    Answer {
        decision,
        status,
        headers,
        body: json!({"error": error, "error_description": description}).to_string(),
    }
}
