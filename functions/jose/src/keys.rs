//! Per-cluster cache of issuer keys: discovery document + JWKS, with a TTL, stale-while-revalidate,
//! single-flight fetches, one rate-limited refresh for an unknown `kid`, and exponential back-off
//! after failures.
//!
//! Where the keys of a slot come from is a [`KeySource`]: a trusted cluster on the exchange
//! path, the TxToken service itself in the consumer-side verifier (`txbridge-verifier`).
//!
//! The fetch is sans-IO: [`discovery_request`]/[`parse_discovery`] and [`jwks_request`]/
//! [`parse_jwks_response`] are pure; the I/O is one call through the [`HttpClient`].
//!
//! # Rules (ARCHITECTURE.md, "Key cache")
//! - Fresh keys (younger than `ttl`) are used as they are.
//! - Keys past `ttl` but within `ttl + stale_grace` are used at once, and one background task
//!   refreshes them (the shell's [`AsyncRuntime::spawn`]). No request waits on that refresh.
//! - A request waits on the upstream only when its cluster has no usable keys (cold, or past the
//!   grace), or when its `kid` is unknown.
//! - An unknown `kid` triggers at most one refresh per `min_refresh_interval` per cluster (no
//!   burst). Still unknown after a refresh that started after the request arrived: a definite
//!   "unknown key" (the caller's `invalid_request`). Unknown while no refresh is allowed yet:
//!   unavailable, with a `Retry-After` of the seconds until one is (a key that has just rotated,
//!   or that a lagging mirror publishes a little late, must get a retryable answer).
//! - Any fetch that misses a requested kid (a cold fetch too) counts as that interval's refresh:
//!   the miss is remembered only until the next refresh is allowed, never longer, so a key
//!   published late is accepted at most one interval later, and a flood of one bogus kid costs
//!   at most one fetch per interval.
//! - A failed fetch backs off exponentially: 1 s, doubling up to `min_refresh_interval`. While it
//!   backs off, requests that need the upstream get 503 with the seconds left as `Retry-After`.
//!
//! # Single flight without sharing futures
//! One fetch per cluster at a time. The request (or background task) that finds a fetch needed
//! *claims* it in the slot's plain state and performs it with its own I/O; the others poll the
//! state on their *own* timers ([`AsyncRuntime::sleep`]) until the claim is gone, then decide
//! again. Nobody awaits a future, waker or I/O object that another request created: the Workers
//! runtime cancels a request that does (it belongs to another request's context), and a Lambda
//! environment frozen between invocations would leave such a waiter stranded. A claim ends with
//! its fetch, when its owner is dropped (a cancelled request), or at the latest after
//! [`FETCH_DEADLINE`] (a task frozen with its environment).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::crypto::{NativeBackend, VerifyBackend};
use crate::jwk::{self, Jwk, VerifyKey};
use crate::ports::{AsyncRuntime, Clock, HttpClient, HttpError, MAX_UPSTREAM_BODY, with_deadline};
use crate::urls::{check_url, parse_url_ascii};

/// Key cache tuning, in seconds (the config's `[key_cache]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCacheConfig {
    pub ttl: u64,
    pub min_refresh_interval: u64,
    pub stale_grace: u64,
}

impl Default for KeyCacheConfig {
    fn default() -> Self {
        KeyCacheConfig {
            ttl: 300,
            min_refresh_interval: 10,
            stale_grace: 3600,
        }
    }
}

/// Why fresh keys could not be had (logged at warn; the client sees a generic 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFetchError {
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
    #[error("the issuer took too long to answer")]
    Timeout,
    #[error("unknown key id; no refresh allowed yet")]
    RefreshLimited,
}

impl KeyFetchError {
    /// The metrics label (`txbridge_key_fetches_total{result}`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyFetchError::Transport => "transport",
            KeyFetchError::Status => "status",
            KeyFetchError::TooLarge => "too_large",
            KeyFetchError::BadDiscovery => "bad_discovery",
            KeyFetchError::IssuerMismatch => "issuer_mismatch",
            KeyFetchError::BadJwksUri => "bad_jwks_uri",
            KeyFetchError::BadJwks => "bad_jwks",
            KeyFetchError::BackingOff => "backing_off",
            KeyFetchError::Timeout => "timeout",
            KeyFetchError::RefreshLimited => "refresh_limited",
        }
    }
}

/// The target of the one log line per issuer-key fetch (its metrics ride on it).
pub const KEY_FETCH_TARGET: &str = "txbridge::key_fetch";

/// Keys could not be had now; `retry_after` seconds from now they may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (retry after {retry_after} s)")]
pub struct KeysUnavailable {
    pub reason: KeyFetchError,
    /// Seconds until a request can succeed (at least 1): the `Retry-After` of the 503.
    pub retry_after: u32,
}

/// Where one slot's keys come from: an issuer, its discovery document and/or a JWKS URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// The name the cache looks the source up by, and logs (the cluster name).
    pub name: String,
    /// The issuer the discovery document must name.
    pub issuer: String,
    /// The discovery document; unused when `jwks_url` is set.
    pub discovery_url: Option<Url>,
    /// A JWKS URL that overrides discovery.
    pub jwks_url: Option<Url>,
    /// May a discovery document's `jwks_uri` be `http://` on a loopback host (development)?
    pub allow_http_loopback: bool,
}

impl KeySource {
    /// Is this URL (a discovery document's `jwks_uri`) acceptable to fetch?
    fn url_allowed(&self, url: &Url) -> bool {
        check_url(url, self.allow_http_loopback).is_ok()
    }
}

/// Keys of one cluster as of one fetch.
#[derive(Debug)]
pub struct KeySnapshot {
    pub keys: Vec<VerifyKey>,
    /// When the fetch that produced these keys started, Unix milliseconds. The TTL runs from it.
    pub fetched_at_ms: u64,
}

impl KeySnapshot {
    fn has_kid(&self, kid: Option<&str>) -> bool {
        match kid {
            None => true,
            Some(k) => self.keys.iter().any(|key| key.kid.as_deref() == Some(k)),
        }
    }
}

/// Longest a fetch (discovery + JWKS) may take before it counts as failed, whatever the shell's
/// HTTP client does (each of its requests gives up after 4 s); also the longest a request waits
/// for another's fetch. Within the exchange's whole upstream budget (8 s, txbridge-core), which
/// stays below the Lambda's timeout (Terraform default 15 s) with a margin.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(6);
/// The first and the longest pause between two looks at the state while another fetch runs.
const POLL_FIRST: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Copy)]
struct Flight {
    id: u64,
    started_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Option<Arc<KeySnapshot>>,
    /// The fetch in progress, if any (single flight).
    flight: Option<Flight>,
    next_flight: u64,
    /// When the last fetch that looked for an unknown kid started (the rate limit of unknown-kid
    /// refreshes), Unix ms: a refresh for one, or any fetch that missed the kid it was asked for.
    last_kid_refresh_ms: Option<u64>,
    /// Consecutive failed fetches, and until when to back off, Unix ms.
    failures: u32,
    backoff_until_ms: u64,
    /// When the last failed fetch ended, and why it failed.
    last_failure: Option<(u64, KeyFetchError)>,
}

/// Bounds on the time one slot spends per decision, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    ttl: u64,
    grace: u64,
    interval: u64,
}

impl From<KeyCacheConfig> for Tuning {
    fn from(c: KeyCacheConfig) -> Self {
        Tuning {
            ttl: c.ttl.saturating_mul(1000),
            grace: c.stale_grace.saturating_mul(1000),
            interval: c.min_refresh_interval.max(1).saturating_mul(1000),
        }
    }
}

/// What one look at the state decided.
enum Step {
    /// Use these keys (they have the kid, or its absence is definite).
    Ready(Arc<KeySnapshot>),
    /// Use these keys, and refresh them in the background under this claim.
    ReadyRefresh(Arc<KeySnapshot>, u64),
    /// Fetch now under this claim, then look again.
    Fetch(u64),
    /// Another fetch runs: sleep, then look again.
    Wait,
    Unavailable(KeysUnavailable),
}

fn secs_until(until_ms: u64, now_ms: u64) -> u32 {
    u32::try_from(until_ms.saturating_sub(now_ms).div_ceil(1000))
        .unwrap_or(u32::MAX)
        .max(1)
}

impl State {
    fn flight_active(&self, now: u64) -> bool {
        self.flight
            .is_some_and(|f| now < f.started_ms + FETCH_DEADLINE.as_millis() as u64)
    }

    fn claim(&mut self, now: u64) -> u64 {
        self.next_flight += 1;
        self.flight = Some(Flight {
            id: self.next_flight,
            started_ms: now,
        });
        self.next_flight
    }

    /// A fetch failed after the request arrived (its own, or the one it waited for): give up
    /// rather than fetch again at once.
    fn failed_since(&self, arrival: u64) -> Option<KeysUnavailable> {
        let (ended, reason) = self.last_failure?;
        (ended >= arrival).then(|| KeysUnavailable {
            reason,
            retry_after: secs_until(self.backoff_until_ms, ended),
        })
    }

    /// For a request that needs the upstream: give up when a fetch failed since it arrived or
    /// the cache backs off, wait when a fetch runs; `None` when it may fetch itself.
    fn upstream_busy(
        &self,
        arrival: u64,
        now: u64,
        in_flight: bool,
        backing_off: bool,
    ) -> Option<Step> {
        if let Some(u) = self.failed_since(arrival) {
            return Some(Step::Unavailable(u));
        }
        if in_flight {
            return Some(Step::Wait);
        }
        backing_off.then(|| {
            Step::Unavailable(KeysUnavailable {
                reason: KeyFetchError::BackingOff,
                retry_after: secs_until(self.backoff_until_ms, now),
            })
        })
    }

    /// One decision for a request that arrived at `arrival` and needs `kid`. Keys fetched at or
    /// after `definite_after` settle whether the kid exists: it is later than the arrival (a
    /// fetch that started in the same millisecond may have missed a key published with it), or
    /// the start of the request's own fetch.
    fn step(
        &mut self,
        kid: Option<&str>,
        arrival: u64,
        definite_after: u64,
        now: u64,
        t: &Tuning,
    ) -> Step {
        let backing_off = now < self.backoff_until_ms;
        let in_flight = self.flight_active(now);
        let usable = self.snapshot.clone().filter(|s| {
            now < s
                .fetched_at_ms
                .saturating_add(t.ttl)
                .saturating_add(t.grace)
        });
        let Some(snap) = usable else {
            // Cold, or past the grace: the request has to wait on the upstream.
            if let Some(step) = self.upstream_busy(arrival, now, in_flight, backing_off) {
                return step;
            }
            return Step::Fetch(self.claim(now));
        };
        if snap.has_kid(kid) {
            let stale = now >= snap.fetched_at_ms.saturating_add(t.ttl);
            if stale && !in_flight && !backing_off {
                let id = self.claim(now);
                return Step::ReadyRefresh(snap, id);
            }
            return Step::Ready(snap);
        }
        // Unknown kid. Definite when keys fetched after the request arrived lack it.
        if snap.fetched_at_ms >= definite_after {
            return Step::Ready(snap);
        }
        if let Some(step) = self.upstream_busy(arrival, now, in_flight, backing_off) {
            return step;
        }
        match self.last_kid_refresh_ms {
            Some(last) if now < last.saturating_add(t.interval) => {
                Step::Unavailable(KeysUnavailable {
                    reason: KeyFetchError::RefreshLimited,
                    retry_after: secs_until(last.saturating_add(t.interval), now),
                })
            }
            _ => {
                self.last_kid_refresh_ms = Some(now);
                Step::Fetch(self.claim(now))
            }
        }
    }

    /// Stores the outcome of the fetch claimed as `id` (a superseded claim's result is dropped).
    fn finish(
        &mut self,
        id: u64,
        started: u64,
        ended: u64,
        result: Result<Vec<VerifyKey>, KeyFetchError>,
        kid: Option<&str>,
        t: &Tuning,
    ) -> Result<usize, KeyFetchError> {
        if self.flight.is_none_or(|f| f.id != id) {
            return Err(KeyFetchError::Timeout);
        }
        self.flight = None;
        match result {
            Ok(keys) => {
                let found = keys.len();
                // A miss counts as this interval's unknown-kid refresh (module docs).
                if kid.is_some_and(|k| !keys.iter().any(|key| key.kid.as_deref() == Some(k))) {
                    self.last_kid_refresh_ms =
                        Some(self.last_kid_refresh_ms.map_or(started, |l| l.max(started)));
                }
                self.snapshot = Some(Arc::new(KeySnapshot {
                    keys,
                    fetched_at_ms: started,
                }));
                self.failures = 0;
                self.backoff_until_ms = 0;
                self.last_failure = None;
                Ok(found)
            }
            Err(err) => {
                self.failures = self.failures.saturating_add(1);
                let backoff = 1000u64
                    .saturating_mul(1 << (self.failures - 1).min(20))
                    .min(t.interval);
                self.backoff_until_ms = ended.saturating_add(backoff);
                self.last_failure = Some((ended, err));
                Err(err)
            }
        }
    }
}

/// One cluster's slot: its source and state.
struct Slot {
    source: KeySource,
    state: Mutex<State>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another request panicked mid-update; every update leaves
        // the state consistent, so it stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Releases a claim whose owner went away without a result (a cancelled request).
struct ClaimGuard<'a> {
    slot: &'a Slot,
    id: u64,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.slot.lock();
        if st.flight.is_some_and(|f| f.id == self.id) {
            st.flight = None;
        }
    }
}

/// What a fetch needs, shared by the requests and the background refreshes.
#[derive(Clone)]
struct Shared {
    tuning: Tuning,
    http: Arc<dyn HttpClient>,
    clock: Arc<dyn Clock>,
    runtime: Arc<dyn AsyncRuntime>,
    /// Imports each fetched key once: the build's own backend, or the shell's (the Worker's
    /// WebCrypto).
    backend: Arc<dyn VerifyBackend>,
}

/// The key cache of a fixed list of sources, looked up by name.
pub struct KeyCache {
    slots: Vec<Arc<Slot>>,
    shared: Shared,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("slots", &self.slots.len())
            .field("tuning", &self.shared.tuning)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// A cache over `sources` (looked up by name), fetching through `http`, timed by `clock`,
    /// waiting and refreshing in the background through `runtime`.
    pub fn new(
        sources: Vec<KeySource>,
        tuning: KeyCacheConfig,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
        runtime: Arc<dyn AsyncRuntime>,
    ) -> Self {
        KeyCache {
            slots: sources
                .into_iter()
                .map(|source| {
                    Arc::new(Slot {
                        source,
                        state: Mutex::new(State::default()),
                    })
                })
                .collect(),
            shared: Shared {
                tuning: tuning.into(),
                http,
                clock,
                runtime,
                backend: Arc::new(NativeBackend),
            },
        }
    }

    /// Verifies with `backend` the keys it can import (imported once per fetch; the rest with
    /// the build's own).
    pub fn with_verify_backend(mut self, backend: Arc<dyn VerifyBackend>) -> Self {
        self.shared.backend = backend;
        self
    }

    /// The keys to verify a token of the source named `source` whose header names `kid` (rules:
    /// module docs). The snapshot returned lacks `kid` only when that is definite.
    pub async fn keys(
        &self,
        source: &str,
        kid: Option<&str>,
    ) -> Result<Arc<KeySnapshot>, KeysUnavailable> {
        let Some(slot) = self.slots.iter().find(|slot| slot.source.name == source) else {
            return Err(KeysUnavailable {
                reason: KeyFetchError::Transport,
                retry_after: 1,
            });
        };
        let s = &self.shared;
        let arrival = s.clock.now_millis();
        let mut definite_after = arrival.saturating_add(1);
        let mut poll = POLL_FIRST;
        loop {
            let now = s.clock.now_millis();
            let step = slot
                .lock()
                .step(kid, arrival, definite_after, now, &s.tuning);
            match step {
                Step::Ready(snap) => return Ok(snap),
                Step::ReadyRefresh(snap, id) => {
                    let (slot, shared) = (slot.clone(), s.clone());
                    tracing::debug!(cluster = %slot.source.name, "issuer keys past their ttl; refreshing in the background");
                    s.runtime.spawn(Box::pin(async move {
                        let _ = refresh(&slot, &shared, id, now, None).await;
                    }));
                    return Ok(snap);
                }
                Step::Fetch(id) => {
                    definite_after = now;
                    if let Err(reason) = refresh(slot, s, id, now, kid).await {
                        let st = slot.lock();
                        return Err(KeysUnavailable {
                            reason,
                            retry_after: secs_until(st.backoff_until_ms, s.clock.now_millis()),
                        });
                    }
                    // Look again: the new keys settle whether the kid exists.
                }
                Step::Wait => {
                    if now >= arrival.saturating_add(FETCH_DEADLINE.as_millis() as u64) {
                        return Err(KeysUnavailable {
                            reason: KeyFetchError::Timeout,
                            retry_after: 1,
                        });
                    }
                    s.runtime.sleep(poll).await;
                    poll = (poll * 2).min(POLL_MAX);
                }
                Step::Unavailable(u) => return Err(u),
            }
        }
    }
}

/// Performs the fetch claimed as `id` (started at `started`) and stores its outcome; a miss of
/// `kid` counts as the interval's unknown-kid refresh.
async fn refresh(
    slot: &Slot,
    s: &Shared,
    id: u64,
    started: u64,
    kid: Option<&str>,
) -> Result<usize, KeyFetchError> {
    // Dropped after `finish` (a no-op then), or with this future when its owner goes away.
    let _guard = ClaimGuard { slot, id };
    let fetch = async {
        let jwks = fetch_keys(&slot.source, s.http.as_ref()).await?;
        let mut keys = Vec::with_capacity(jwks.len());
        for jwk in jwks {
            keys.extend(VerifyKey::import(jwk, s.backend.as_ref()).await);
        }
        Ok(keys)
    };
    let fetched = with_deadline(s.runtime.sleep(FETCH_DEADLINE), fetch)
        .await
        .unwrap_or(Err(KeyFetchError::Timeout));
    let ended = s.clock.now_millis();
    let backend = s.backend.name();
    let imported = fetched.as_ref().map_or(0, |keys| {
        keys.iter().filter(|k| k.backend() == backend).count()
    });
    let outcome = slot
        .lock()
        .finish(id, started, ended, fetched, kid, &s.tuning);
    let cluster = slot.source.name.as_str();
    let latency_ms = ended.saturating_sub(started);
    match outcome {
        Ok(keys) => tracing::info!(
            target: KEY_FETCH_TARGET,
            cluster, result = "ok", keys, imported, backend, latency_ms,
            "issuer keys fetched"
        ),
        Err(error) => tracing::warn!(
            target: KEY_FETCH_TARGET,
            cluster, result = error.as_str(), keys = 0u64, imported = 0u64, backend, latency_ms,
            reason = %error,
            "issuer key fetch failed"
        ),
    }
    outcome
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

fn body_of(resp: &http::Response<Vec<u8>>) -> Result<&[u8], KeyFetchError> {
    if resp.status() != http::StatusCode::OK {
        return Err(KeyFetchError::Status);
    }
    if resp.body().len() > MAX_UPSTREAM_BODY {
        return Err(KeyFetchError::TooLarge);
    }
    Ok(resp.body())
}

/// Checks a discovery response and returns its `jwks_uri`.
pub fn parse_discovery(
    resp: &http::Response<Vec<u8>>,
    cluster: &KeySource,
) -> Result<Url, KeyFetchError> {
    #[derive(Deserialize)]
    struct Doc {
        issuer: String,
        jwks_uri: String,
    }
    let doc: Doc =
        serde_json::from_slice(body_of(resp)?).map_err(|_| KeyFetchError::BadDiscovery)?;
    if doc.issuer != cluster.issuer {
        return Err(KeyFetchError::IssuerMismatch);
    }
    let url = parse_url_ascii(&doc.jwks_uri).map_err(|_| KeyFetchError::BadJwksUri)?;
    if !cluster.url_allowed(&url) {
        return Err(KeyFetchError::BadJwksUri);
    }
    Ok(url)
}

/// Parses a JWKS response into usable keys (not yet imported).
pub fn parse_jwks_response(resp: &http::Response<Vec<u8>>) -> Result<Vec<Jwk>, KeyFetchError> {
    jwk::parse_jwks(body_of(resp)?).map_err(|_| KeyFetchError::BadJwks)
}

async fn call(
    http: &dyn HttpClient,
    req: http::Request<Vec<u8>>,
) -> Result<http::Response<Vec<u8>>, KeyFetchError> {
    http.execute(req).await.map_err(|e| match e {
        HttpError::BodyTooLarge => KeyFetchError::TooLarge,
        HttpError::Timeout => KeyFetchError::Timeout,
        _ => KeyFetchError::Transport,
    })
}

async fn fetch_keys(cluster: &KeySource, http: &dyn HttpClient) -> Result<Vec<Jwk>, KeyFetchError> {
    let jwks_url = match (&cluster.jwks_url, &cluster.discovery_url) {
        (Some(u), _) => u.clone(),
        (None, Some(d)) => parse_discovery(&call(http, discovery_request(d)).await?, cluster)?,
        (None, None) => return Err(KeyFetchError::BadDiscovery),
    };
    parse_jwks_response(&call(http, jwks_request(&jwks_url)).await?)
}

#[cfg(test)]
mod tests;
