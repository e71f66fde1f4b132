//! The key cache's decisions, one rule per test, on the plain state machine (times in ms).
#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;

const TTL: u64 = 300_000;
const GRACE: u64 = 3_600_000;
const INTERVAL: u64 = 10_000;
const T0: u64 = 1_800_000_000_000;

fn tuning() -> Tuning {
    Tuning {
        ttl: TTL,
        grace: GRACE,
        interval: INTERVAL,
    }
}

fn key(kid: &str) -> VerifyKey {
    let sk = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let mut jwk: serde_json::Value =
        serde_json::from_str(&sk.public_key().to_jwk_string()).unwrap();
    jwk["kid"] = kid.into();
    let doc = serde_json::json!({ "keys": [jwk] });
    jwk::parse_verify_keys(&serde_json::to_vec(&doc).unwrap())
        .unwrap()
        .remove(0)
}

/// What a step decided, without the snapshot.
#[derive(Debug, PartialEq, Eq)]
enum D {
    Ready,
    ReadyRefresh,
    Fetch,
    Wait,
    Unavailable(KeyFetchError, u32),
}

fn step(st: &mut State, kid: Option<&str>, arrival: u64, now: u64) -> (D, Option<u64>) {
    match st.step(kid, arrival, arrival + 1, now, &tuning()) {
        Step::Ready(_) => (D::Ready, None),
        Step::ReadyRefresh(_, id) => (D::ReadyRefresh, Some(id)),
        Step::Fetch(id) => (D::Fetch, Some(id)),
        Step::Wait => (D::Wait, None),
        Step::Unavailable(u) => (D::Unavailable(u.reason, u.retry_after), None),
    }
}

/// The look a request takes after its own fetch, which it claimed at `started`.
fn after_own_fetch(st: &mut State, kid: Option<&str>, started: u64, now: u64) -> D {
    match st.step(kid, started, started, now, &tuning()) {
        Step::Ready(_) => D::Ready,
        Step::Unavailable(u) => D::Unavailable(u.reason, u.retry_after),
        _ => panic!("a request decides after its own fetch"),
    }
}

/// A state holding keys `kids` fetched at `at`.
fn warm(kids: &[&str], at: u64) -> State {
    let mut st = State::default();
    let id = st.claim(at);
    st.finish(
        id,
        at,
        at,
        Ok(kids.iter().map(|k| key(k)).collect()),
        None,
        &tuning(),
    )
    .unwrap();
    st
}

fn ok(kids: &[&str]) -> Result<Vec<VerifyKey>, KeyFetchError> {
    Ok(kids.iter().map(|k| key(k)).collect())
}

#[test]
fn cold_cluster_one_fetch_the_others_wait() {
    let mut st = State::default();
    let (d, id) = step(&mut st, Some("a"), T0, T0);
    assert_eq!(d, D::Fetch);
    // Concurrent requests wait for the one fetch, then use its keys.
    assert_eq!(step(&mut st, Some("a"), T0 + 1, T0 + 1).0, D::Wait);
    st.finish(id.unwrap(), T0, T0 + 5, ok(&["a"]), Some("a"), &tuning())
        .unwrap();
    assert_eq!(step(&mut st, Some("a"), T0 + 1, T0 + 6).0, D::Ready);
    assert_eq!(step(&mut st, Some("a"), T0, T0 + 6).0, D::Ready);
}

#[test]
fn fresh_keys_are_used_and_stale_ones_refresh_in_the_background() {
    let mut st = warm(&["a"], T0);
    assert_eq!(
        step(&mut st, Some("a"), T0 + TTL - 1, T0 + TTL - 1).0,
        D::Ready
    );
    // Past the TTL, within the grace: served at once, one background refresh.
    let now = T0 + TTL + 1;
    let (d, id) = step(&mut st, Some("a"), now, now);
    assert_eq!(d, D::ReadyRefresh);
    assert_eq!(
        step(&mut st, Some("a"), now + 1, now + 1).0,
        D::Ready,
        "one refresh at a time"
    );
    assert_eq!(step(&mut st, None, now + 1, now + 1).0, D::Ready);
    // The refresh fails: still served, backing off, then another background attempt.
    st.finish(
        id.unwrap(),
        now,
        now + 5_000,
        Err(KeyFetchError::Timeout),
        None,
        &tuning(),
    )
    .unwrap_err();
    assert_eq!(
        step(&mut st, Some("a"), now + 5_001, now + 5_001).0,
        D::Ready
    );
    assert_eq!(
        step(&mut st, Some("a"), now + 6_000, now + 6_000).0,
        D::ReadyRefresh
    );
    // Past the grace the keys are not usable: the request waits on a fetch of its own.
    let mut st = warm(&["a"], T0);
    let past = T0 + TTL + GRACE;
    assert_eq!(step(&mut st, Some("a"), past, past).0, D::Fetch);
}

#[test]
fn unknown_kid_one_refresh_per_interval_no_burst() {
    let mut st = warm(&["a"], T0);
    let t = T0 + 60_000;
    // A new kid: one refresh at once.
    let (d, id) = step(&mut st, Some("b"), t, t);
    assert_eq!(d, D::Fetch);
    st.finish(id.unwrap(), t, t + 3, ok(&["a"]), Some("b"), &tuning())
        .unwrap();
    // Still unknown after the request's own refresh: definite.
    assert_eq!(after_own_fetch(&mut st, Some("b"), t, t + 3), D::Ready);
    // Keys fetched strictly after a request arrived settle it too.
    assert_eq!(step(&mut st, Some("never-seen"), t - 1, t + 3).0, D::Ready);
    // A request that arrived in the same millisecond as that refresh started is not settled by
    // it (the key may have been published with it), and the same kid later within the interval
    // is not either: a key published a little late must get a retryable answer, not a definite
    // one. The miss is remembered only until the next refresh is allowed.
    assert_eq!(
        step(&mut st, Some("b"), t, t + 3).0,
        D::Unavailable(KeyFetchError::RefreshLimited, 10)
    );
    for dt in [10, 1_000, INTERVAL - 1] {
        assert!(
            matches!(
                step(&mut st, Some("b"), t + dt, t + dt).0,
                D::Unavailable(KeyFetchError::RefreshLimited, _)
            ),
            "+{dt}"
        );
    }
    // Another unknown kid within the interval: no refresh (no burst), 503 with the seconds left.
    assert_eq!(
        step(&mut st, Some("c"), t + 1_000, t + 1_000).0,
        D::Unavailable(KeyFetchError::RefreshLimited, 9)
    );
    assert_eq!(
        step(&mut st, Some("d"), t + 9_001, t + 9_001).0,
        D::Unavailable(KeyFetchError::RefreshLimited, 1)
    );
    assert_eq!(
        step(&mut st, Some("c"), t + INTERVAL, t + INTERVAL).0,
        D::Fetch
    );
}

/// A kid that a refresh missed is refreshed again once the interval has passed (never for the
/// whole ttl): an issuer or mirror that publishes a new key late is picked up one interval later.
#[test]
fn a_key_published_late_is_accepted_one_interval_later() {
    let mut st = warm(&["a"], T0);
    let t = T0 + 60_000;
    let (d, id) = step(&mut st, Some("late"), t, t);
    assert_eq!(d, D::Fetch);
    st.finish(id.unwrap(), t, t + 3, ok(&["a"]), Some("late"), &tuning())
        .unwrap();
    assert_eq!(after_own_fetch(&mut st, Some("late"), t, t + 3), D::Ready);
    // The mirror publishes it now; the interval has passed: one refresh, and it is there.
    let (d, id) = step(&mut st, Some("late"), t + INTERVAL, t + INTERVAL);
    assert_eq!(d, D::Fetch);
    st.finish(
        id.unwrap(),
        t + INTERVAL,
        t + INTERVAL + 3,
        ok(&["a", "late"]),
        Some("late"),
        &tuning(),
    )
    .unwrap();
    assert_eq!(
        after_own_fetch(&mut st, Some("late"), t + INTERVAL, t + INTERVAL + 3),
        D::Ready
    );
    assert!(st.snapshot.as_ref().unwrap().has_kid(Some("late")));
}

/// A cold fetch that misses the requested kid counts as the interval's unknown-kid refresh: a
/// flood of one bogus kid on a cold cluster costs one fetch per interval, not two.
#[test]
fn a_cold_fetch_that_misses_the_kid_counts_as_the_refresh() {
    let mut st = State::default();
    let (d, id) = step(&mut st, Some("bogus"), T0, T0);
    assert_eq!(d, D::Fetch);
    st.finish(
        id.unwrap(),
        T0,
        T0 + 2,
        ok(&["a"]),
        Some("bogus"),
        &tuning(),
    )
    .unwrap();
    assert_eq!(
        after_own_fetch(&mut st, Some("bogus"), T0, T0 + 2),
        D::Ready
    );
    for dt in [3, 5_000, INTERVAL - 1] {
        assert!(
            matches!(
                step(&mut st, Some("bogus"), T0 + dt, T0 + dt).0,
                D::Unavailable(KeyFetchError::RefreshLimited, _)
            ),
            "+{dt}"
        );
    }
    assert_eq!(
        step(&mut st, Some("bogus"), T0 + INTERVAL, T0 + INTERVAL).0,
        D::Fetch
    );
}

#[test]
fn real_rotation_right_after_a_bogus_kid_gets_503_then_200() {
    let mut st = warm(&["a"], T0);
    let t = T0 + 1_000;
    let (_, id) = step(&mut st, Some("bogus"), t, t);
    st.finish(id.unwrap(), t, t + 2, ok(&["a"]), Some("bogus"), &tuning())
        .unwrap();
    // The issuer rotates to "b" right after: 503 (retryable), never a definite answer ...
    for dt in [3, 500, 5_000, 9_999] {
        let (d, _) = step(&mut st, Some("b"), t + dt, t + dt);
        assert!(
            matches!(d, D::Unavailable(KeyFetchError::RefreshLimited, _)),
            "+{dt}: {d:?}"
        );
    }
    // ... and the token verifies once a refresh is allowed, within min_refresh_interval.
    let (d, id) = step(&mut st, Some("b"), t + INTERVAL, t + INTERVAL);
    assert_eq!(d, D::Fetch);
    st.finish(
        id.unwrap(),
        t + INTERVAL,
        t + INTERVAL + 2,
        ok(&["a", "b"]),
        Some("b"),
        &tuning(),
    )
    .unwrap();
    assert_eq!(
        after_own_fetch(&mut st, Some("b"), t + INTERVAL, t + INTERVAL + 2),
        D::Ready
    );
    assert!(st.snapshot.as_ref().unwrap().has_kid(Some("b")));
}

#[test]
fn waiters_for_another_kid_get_a_retryable_answer() {
    let mut st = warm(&["a"], T0);
    let t = T0 + 1_000;
    let (_, id) = step(&mut st, Some("x"), t, t);
    // "y" arrives while the refresh for "x" runs: it waits, and the refresh that started before
    // it arrived is not a definite answer for it.
    assert_eq!(step(&mut st, Some("y"), t + 1, t + 1).0, D::Wait);
    st.finish(id.unwrap(), t, t + 4, ok(&["a"]), Some("x"), &tuning())
        .unwrap();
    assert_eq!(
        step(&mut st, Some("y"), t + 1, t + 5).0,
        D::Unavailable(KeyFetchError::RefreshLimited, 10)
    );
}

#[test]
fn failures_back_off_exponentially_up_to_the_interval() {
    let mut st = State::default();
    let mut now = T0;
    let mut waits = Vec::new();
    for _ in 0..6 {
        let (d, id) = step(&mut st, None, now, now);
        assert_eq!(d, D::Fetch, "at {}", now - T0);
        st.finish(
            id.unwrap(),
            now,
            now,
            Err(KeyFetchError::Status),
            None,
            &tuning(),
        )
        .unwrap_err();
        // A request that arrived before the failure gives up with the back-off as Retry-After.
        let (d, _) = step(&mut st, None, now, now);
        let D::Unavailable(KeyFetchError::Status, retry) = d else {
            panic!("{d:?}")
        };
        waits.push(retry);
        // A new request within the back-off: 503 without a fetch.
        assert!(matches!(
            step(&mut st, None, now + 1, now + 1).0,
            D::Unavailable(KeyFetchError::BackingOff, _)
        ));
        now = st.backoff_until_ms;
    }
    assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
    // Success resets it.
    let (_, id) = step(&mut st, None, now, now);
    st.finish(id.unwrap(), now, now, ok(&["a"]), None, &tuning())
        .unwrap();
    assert_eq!((st.failures, st.backoff_until_ms), (0, 0));
}

#[test]
fn an_unknown_kid_while_backing_off_is_retryable() {
    let mut st = warm(&["a"], T0);
    let t = T0 + 1_000;
    let (_, id) = step(&mut st, Some("b"), t, t);
    st.finish(
        id.unwrap(),
        t,
        t + 10,
        Err(KeyFetchError::Transport),
        Some("b"),
        &tuning(),
    )
    .unwrap_err();
    // The fetch failed: "b" may exist, so not a definite "unknown key".
    assert_eq!(
        after_own_fetch(&mut st, Some("b"), t, t + 10),
        D::Unavailable(KeyFetchError::Transport, 1)
    );
    // Known kids keep being served.
    assert_eq!(step(&mut st, Some("a"), t + 11, t + 11).0, D::Ready);
}

#[test]
fn an_abandoned_claim_expires() {
    let mut st = State::default();
    let (_, id) = step(&mut st, None, T0, T0);
    let deadline = FETCH_DEADLINE.as_millis() as u64;
    assert_eq!(step(&mut st, None, T0 + 1, T0 + deadline - 1).0, D::Wait);
    // A claim frozen with its environment (or never finished) no longer blocks the others.
    let (d, id2) = step(&mut st, None, T0 + deadline, T0 + deadline);
    assert_eq!(d, D::Fetch);
    // The old claim's late result is dropped; the new one's is kept.
    assert_eq!(
        st.finish(
            id.unwrap(),
            T0,
            T0 + deadline + 1,
            ok(&["old"]),
            None,
            &tuning()
        ),
        Err(KeyFetchError::Timeout)
    );
    st.finish(
        id2.unwrap(),
        T0 + deadline,
        T0 + deadline + 2,
        ok(&["new"]),
        None,
        &tuning(),
    )
    .unwrap();
    assert!(st.snapshot.as_ref().unwrap().has_kid(Some("new")));
}

#[test]
fn retry_after_rounds_up_and_is_at_least_one() {
    assert_eq!(secs_until(T0, T0), 1);
    assert_eq!(secs_until(T0 + 1, T0), 1);
    assert_eq!(secs_until(T0 + 1_000, T0), 1);
    assert_eq!(secs_until(T0 + 1_001, T0), 2);
}
