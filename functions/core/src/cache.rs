//! Per-cluster cache of issuer keys: discovery document + JWKS, TTL, one rate-limited refresh
//! on an unknown `kid`, single-flight fetches and stale-on-error grace.
//!
//! Where the keys of a slot come from is a [`KeySource`]: a trusted [`Cluster`] on the exchange
//! path, the TxToken service itself in the consumer-side verifier (`txbridge-verifier`).
//!
//! The fetch is sans-IO: [`discovery_request`]/[`parse_discovery`] and [`jwks_request`]/
//! [`parse_jwks_response`] are pure; the I/O is one call through the [`HttpClient`].

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use url::Url;

use crate::config::{Cluster, KeyCacheConfig};
use crate::jose::{self, VerifyKey};
use crate::ports::{Clock, HttpClient, MAX_UPSTREAM_BODY};

/// Why fresh keys could not be had (logged at warn; the client sees a generic 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("request to the issuer failed")]
    Transport,
    #[error("issuer answered with a non-200 status")]
    Status,
    #[error("issuer response is too large")]
    TooLarge,
    #[error("discovery document is invalid")]
    BadDiscovery,
    #[error("discovery issuer does not match the configured issuer")]
    IssuerMismatch,
    #[error("discovery jwks_uri is not an allowed URL")]
    BadJwksUri,
    #[error("JWKS is invalid")]
    BadJwks,
    #[error("a recent fetch failed; backing off")]
    BackingOff,
}

/// Where one slot's keys come from: an issuer, its discovery document and/or a JWKS URL.
pub trait KeySource: Sync {
    /// A short name for logs (the cluster name).
    fn name(&self) -> &str;
    /// The issuer the discovery document must name.
    fn issuer(&self) -> &str;
    /// The discovery document; unused when [`KeySource::jwks_url`] is set.
    fn discovery_url(&self) -> Option<&Url>;
    /// A JWKS URL that overrides discovery.
    fn jwks_url(&self) -> Option<&Url>;
    /// Is this URL (a discovery document's `jwks_uri`) acceptable to fetch?
    fn url_allowed(&self, url: &Url) -> bool;
}

impl KeySource for Cluster {
    fn name(&self) -> &str {
        &self.name
    }

    fn issuer(&self) -> &str {
        &self.issuer
    }

    fn discovery_url(&self) -> Option<&Url> {
        self.discovery_url.as_ref()
    }

    fn jwks_url(&self) -> Option<&Url> {
        self.jwks_url.as_ref()
    }

    fn url_allowed(&self, url: &Url) -> bool {
        Cluster::url_allowed(self, url)
    }
}

/// Keys of one cluster as of one fetch.
#[derive(Debug)]
pub struct KeySnapshot {
    pub keys: Vec<VerifyKey>,
    pub fetched_at: u64,
}

impl KeySnapshot {
    /// Still usable (fresh, or expired but within the stale-on-error grace) at `now`.
    fn within_grace(&self, now: u64, t: &KeyCacheConfig) -> bool {
        now < self.fetched_at + t.ttl + t.stale_grace
    }

    fn has_kid(&self, kid: Option<&str>) -> bool {
        match kid {
            None => true,
            Some(k) => self.keys.iter().any(|key| key.kid.as_deref() == Some(k)),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    snapshot: Option<Arc<KeySnapshot>>,
    /// Bumped after every fetch attempt, successful or not.
    generation: u64,
    /// Unknown-kid refreshes used from the burst budget, and when that was last updated.
    kid_refreshes_used: u64,
    kid_budget_at: u64,
    /// Kids a refresh did not find, with when: no second refresh for them within the interval.
    missed_kids: Vec<(String, u64)>,
    /// When the last fetch failed, in Unix milliseconds.
    last_failure: Option<u64>,
}

/// Unknown-kid refreshes allowed in a burst; one more becomes available per
/// `min_refresh_interval`. A burst lets a real rotation through right after a few bogus kids.
const KID_REFRESH_BURST: u64 = 10;
/// How many missed kids are remembered.
const MAX_MISSED_KIDS: usize = 64;

impl State {
    /// Refreshes still available in the budget at `now`.
    fn kid_budget(&self, now: u64, interval: u64) -> u64 {
        let refilled = now.saturating_sub(self.kid_budget_at) / interval.max(1);
        KID_REFRESH_BURST.saturating_sub(self.kid_refreshes_used.saturating_sub(refilled))
    }

    fn recently_missed(&self, kid: &str, now: u64, interval: u64) -> bool {
        self.missed_kids
            .iter()
            .any(|(k, at)| k == kid && now < at + interval)
    }
}

/// How long after a failed fetch requests get 503 without fetching again, in milliseconds.
const FAILURE_BACKOFF_MS: u64 = 1000;

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<State>,
    refresh: async_lock::Mutex<()>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another request panicked mid-update; the state is
        // still a consistent value (every update is a single assignment).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a lookup wants a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Cold,
    Expired,
    UnknownKid,
}

enum Plan {
    Use(Arc<KeySnapshot>),
    Fetch(Reason),
    Fail,
}

/// The key cache of all clusters (indexed like `Config::clusters`).
pub struct KeyCache {
    slots: Vec<Slot>,
    tuning: KeyCacheConfig,
    /// Reads the time a failed fetch ends, so the back-off runs from the failure, not from the
    /// start of a fetch that hung until its timeout.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("slots", &self.slots)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    pub fn new(clusters: usize, tuning: KeyCacheConfig, clock: Arc<dyn Clock>) -> Self {
        KeyCache {
            slots: (0..clusters).map(|_| Slot::default()).collect(),
            tuning,
            clock,
        }
    }

    /// The current time in milliseconds: the clock's, never before the request's `now`.
    fn now_ms(&self, now: u64) -> u64 {
        self.clock.now_millis().max(now.saturating_mul(1000))
    }

    fn plan(&self, st: &State, kid: Option<&str>, now: u64, now_ms: u64) -> Plan {
        let t = &self.tuning;
        let recently_failed = st
            .last_failure
            .is_some_and(|f| now_ms < f + FAILURE_BACKOFF_MS);
        match &st.snapshot {
            None if recently_failed => Plan::Fail,
            None => Plan::Fetch(Reason::Cold),
            Some(s) if now < s.fetched_at + t.ttl => {
                let missed =
                    kid.is_some_and(|k| st.recently_missed(k, now, t.min_refresh_interval));
                if s.has_kid(kid) || missed || st.kid_budget(now, t.min_refresh_interval) == 0 {
                    Plan::Use(s.clone())
                } else {
                    Plan::Fetch(Reason::UnknownKid)
                }
            }
            // Stale keys serve the kids they have while the issuer is failing; a kid they
            // lack cannot be judged until the issuer answers again (503, not "unknown key").
            Some(s) if recently_failed && s.within_grace(now, t) && s.has_kid(kid) => {
                Plan::Use(s.clone())
            }
            Some(_) if recently_failed => Plan::Fail,
            Some(_) => Plan::Fetch(Reason::Expired),
        }
    }

    /// The keys to verify a token of cluster `idx` whose header names `kid`. May fetch.
    /// The returned snapshot may still lack `kid` (the caller then rejects the token).
    pub async fn keys(
        &self,
        idx: usize,
        cluster: &(impl KeySource + ?Sized),
        kid: Option<&str>,
        now: u64,
        http: &dyn HttpClient,
    ) -> Result<Arc<KeySnapshot>, FetchError> {
        let slot = self.slots.get(idx).ok_or(FetchError::Transport)?;
        let (plan, seen_generation) = {
            let st = slot.lock();
            (self.plan(&st, kid, now, self.now_ms(now)), st.generation)
        };
        let reason = match plan {
            Plan::Use(s) => return Ok(s),
            Plan::Fail => return Err(FetchError::BackingOff),
            Plan::Fetch(reason) => reason,
        };

        // Single flight: one fetch per cluster at a time; whoever waited uses its result.
        let _guard = slot.refresh.lock().await;
        {
            let st = slot.lock();
            if st.generation != seen_generation {
                let failed = st.last_failure.is_some();
                return match &st.snapshot {
                    Some(s) if s.within_grace(now, &self.tuning) && (!failed || s.has_kid(kid)) => {
                        Ok(s.clone())
                    }
                    _ => Err(FetchError::BackingOff),
                };
            }
        }

        let result = fetch_keys(cluster, http).await;
        let mut st = slot.lock();
        st.generation += 1;
        if reason == Reason::UnknownKid {
            let interval = self.tuning.min_refresh_interval;
            st.kid_refreshes_used = KID_REFRESH_BURST - st.kid_budget(now, interval) + 1;
            st.kid_budget_at = now;
            let missed = match (kid, &result) {
                (Some(k), Ok(keys)) => !keys.iter().any(|key| key.kid.as_deref() == Some(k)),
                _ => false,
            };
            if let (true, Some(k)) = (missed, kid) {
                st.missed_kids.retain(|(_, at)| now < at + interval);
                if st.missed_kids.len() >= MAX_MISSED_KIDS {
                    st.missed_kids.remove(0);
                }
                st.missed_kids.push((k.to_owned(), now));
            }
        }
        match result {
            Ok(keys) => {
                tracing::debug!(cluster = %cluster.name(), keys = keys.len(), ?reason, "issuer keys fetched");
                let snap = Arc::new(KeySnapshot {
                    keys,
                    fetched_at: now,
                });
                st.snapshot = Some(snap.clone());
                st.last_failure = None;
                Ok(snap)
            }
            Err(err) => {
                st.last_failure = Some(self.now_ms(now));
                match &st.snapshot {
                    Some(s) if s.within_grace(now, &self.tuning) && s.has_kid(kid) => {
                        tracing::warn!(cluster = %cluster.name(), error = %err, "issuer key refresh failed; serving cached keys");
                        Ok(s.clone())
                    }
                    _ => {
                        tracing::warn!(cluster = %cluster.name(), error = %err, "issuer keys unavailable");
                        Err(err)
                    }
                }
            }
        }
    }
}

fn get(url: &Url) -> http::Request<Vec<u8>> {
    let mut req = http::Request::new(Vec::new());
    *req.method_mut() = http::Method::GET;
    // A parsed `Url` is always a valid URI.
    *req.uri_mut() = url.as_str().parse().unwrap_or_default();
    req.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    req
}

/// GET of the discovery document.
pub fn discovery_request(url: &Url) -> http::Request<Vec<u8>> {
    get(url)
}

/// GET of the JWKS.
pub fn jwks_request(url: &Url) -> http::Request<Vec<u8>> {
    get(url)
}

fn body_of(resp: &http::Response<Vec<u8>>) -> Result<&[u8], FetchError> {
    if resp.status() != http::StatusCode::OK {
        return Err(FetchError::Status);
    }
    if resp.body().len() > MAX_UPSTREAM_BODY {
        return Err(FetchError::TooLarge);
    }
    Ok(resp.body())
}

/// Checks a discovery response and returns its `jwks_uri`.
pub fn parse_discovery(
    resp: &http::Response<Vec<u8>>,
    cluster: &(impl KeySource + ?Sized),
) -> Result<Url, FetchError> {
    #[derive(Deserialize)]
    struct Doc {
        issuer: String,
        jwks_uri: String,
    }
    let doc: Doc = serde_json::from_slice(body_of(resp)?).map_err(|_| FetchError::BadDiscovery)?;
    if doc.issuer != cluster.issuer() {
        return Err(FetchError::IssuerMismatch);
    }
    let url = Url::parse(&doc.jwks_uri).map_err(|_| FetchError::BadJwksUri)?;
    if !cluster.url_allowed(&url) {
        return Err(FetchError::BadJwksUri);
    }
    Ok(url)
}

/// Parses a JWKS response into usable keys.
pub fn parse_jwks_response(resp: &http::Response<Vec<u8>>) -> Result<Vec<VerifyKey>, FetchError> {
    jose::parse_jwks(body_of(resp)?).map_err(|_| FetchError::BadJwks)
}

async fn call(
    http: &dyn HttpClient,
    req: http::Request<Vec<u8>>,
) -> Result<http::Response<Vec<u8>>, FetchError> {
    http.execute(req).await.map_err(|e| match e {
        crate::ports::HttpError::BodyTooLarge => FetchError::TooLarge,
        _ => FetchError::Transport,
    })
}

async fn fetch_keys(
    cluster: &(impl KeySource + ?Sized),
    http: &dyn HttpClient,
) -> Result<Vec<VerifyKey>, FetchError> {
    let jwks_url = match (cluster.jwks_url(), cluster.discovery_url()) {
        (Some(u), _) => u.clone(),
        (None, Some(d)) => parse_discovery(&call(http, discovery_request(d)).await?, cluster)?,
        (None, None) => return Err(FetchError::BadDiscovery),
    };
    parse_jwks_response(&call(http, jwks_request(&jwks_url)).await?)
}
