//! The gate's metrics in Prometheus' text format (ARCHITECTURE.md "Metrics"):
//! `txbridge_gate_decisions_total{decision, route}`, the decision-latency histogram
//! `txbridge_gate_decision_duration_seconds{decision}` and the issuer-key fetches
//! `txbridge_key_fetches_total{cluster, result}` (counted from the key cache's one log event per
//! fetch, [`KeyFetchCounter`]). Never labelled by subject, workload or transaction.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency buckets, seconds: a cached-key decision takes tens of
/// microseconds, a cold one waits on the issuer.
const BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// What the gate answered: the `decision` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Decision {
    /// 200.
    Allow,
    /// 403: a valid token that fails its route, no route under `default = "deny"`, or a
    /// request without its original method and URI.
    Deny,
    /// 401: no token, or not a valid TxToken.
    Invalid,
    /// 503: no keys could be had (an extension of the contract's three values).
    Unavailable,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Invalid => "invalid",
            Decision::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    decisions: BTreeMap<(Decision, String), u64>,
    key_fetches: BTreeMap<(String, String), u64>,
    latency: BTreeMap<Decision, Histogram>,
}

/// The gate's counters; one per process, shared by the HTTP and gRPC endpoints.
#[derive(Debug, Default)]
pub struct Metrics(Mutex<Inner>);

impl Metrics {
    /// Counts one decision for `route` ("" when no route matched) that took `took`.
    pub fn record(&self, decision: Decision, route: &str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.decisions.entry((decision, route.to_owned())).or_default() += 1;
        let h = m.latency.entry(decision).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Counts one issuer-key fetch of `cluster` (the verifier's one key source) with `result`
    /// (`ok` or the failure's label).
    pub fn record_key_fetch(&self, cluster: &str, result: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.key_fetches
            .entry((cluster.to_owned(), result.to_owned()))
            .or_default() += 1;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str(
            "# HELP txbridge_gate_decisions_total Requests the gate decided, by decision and route.\n\
             # TYPE txbridge_gate_decisions_total counter\n",
        );
        for ((decision, route), n) in &m.decisions {
            let _ = writeln!(
                out,
                "txbridge_gate_decisions_total{{decision=\"{}\",route=\"{}\"}} {n}",
                decision.as_str(),
                escape(route)
            );
        }
        out.push_str(
            "# HELP txbridge_gate_decision_duration_seconds Time from the request to the gate's answer.\n\
             # TYPE txbridge_gate_decision_duration_seconds histogram\n",
        );
        for (decision, h) in &m.latency {
            let d = decision.as_str();
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "txbridge_gate_decision_duration_seconds_bucket{{decision=\"{d}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "txbridge_gate_decision_duration_seconds_bucket{{decision=\"{d}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "txbridge_gate_decision_duration_seconds_sum{{decision=\"{d}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "txbridge_gate_decision_duration_seconds_count{{decision=\"{d}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP txbridge_key_fetches_total Fetches of the issuer's keys (discovery and JWKS), by result.\n\
             # TYPE txbridge_key_fetches_total counter\n",
        );
        for ((cluster, result), n) in &m.key_fetches {
            let _ = writeln!(
                out,
                "txbridge_key_fetches_total{{cluster=\"{}\",result=\"{}\"}} {n}",
                escape(cluster),
                escape(result)
            );
        }
        out
    }
}

/// A tracing layer counting the key cache's fetch events (target
/// [`txbridge_jose::KEY_FETCH_TARGET`], fields `cluster` and `result`) into [`Metrics`]. Give it
/// a filter for that target so other events are not built for it.
#[derive(Debug, Clone)]
pub struct KeyFetchCounter(pub Arc<Metrics>);

#[derive(Default)]
struct FetchFields {
    cluster: String,
    result: String,
}

impl tracing::field::Visit for FetchFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "cluster" => self.cluster = value.to_owned(),
            "result" => self.result = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "cluster" | "result") {
            self.record_str(field, format!("{value:?}").trim_matches('"'));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for KeyFetchCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != txbridge_jose::KEY_FETCH_TARGET {
            return;
        }
        let mut f = FetchFields::default();
        event.record(&mut f);
        if !f.result.is_empty() {
            self.0.record_key_fetch(&f.cluster, &f.result);
        }
    }
}

/// A label value: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::default();
        m.record(Decision::Allow, "orders", Duration::from_micros(80));
        m.record(Decision::Allow, "orders", Duration::from_millis(2));
        m.record(Decision::Invalid, "", Duration::from_micros(10));
        let text = m.render();
        assert!(
            text.contains("txbridge_gate_decisions_total{decision=\"allow\",route=\"orders\"} 2\n")
        );
        assert!(
            text.contains("txbridge_gate_decisions_total{decision=\"invalid\",route=\"\"} 1\n")
        );
        assert!(text.contains(
            "txbridge_gate_decision_duration_seconds_bucket{decision=\"allow\",le=\"0.0001\"} 1\n"
        ));
        assert!(text.contains(
            "txbridge_gate_decision_duration_seconds_bucket{decision=\"allow\",le=\"+Inf\"} 2\n"
        ));
        assert!(
            text.contains(
                "txbridge_gate_decision_duration_seconds_count{decision=\"invalid\"} 1\n"
            )
        );
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
        m.record_key_fetch("txtoken-service", "ok");
        assert!(
            m.render().contains(
                "txbridge_key_fetches_total{cluster=\"txtoken-service\",result=\"ok\"} 1\n"
            )
        );
    }
}
