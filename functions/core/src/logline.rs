//! One log shape for both shells: every `tracing` event becomes one flat JSON object
//! (`level`, `target`, `message`, then its fields as members), the Lambda's and the Worker's
//! alike. The metrics ride on the same lines (ARCHITECTURE.md "Metrics"): the token endpoint's
//! line (target [`EXCHANGE_TARGET`]) and each issuer-key fetch (target [`KEY_FETCH_TARGET`])
//! carry their metric values and a CloudWatch Embedded Metric Format record (`_aws`), which
//! CloudWatch extracts from the Lambda's log with no agent and no API call; the Worker writes the
//! same line (Workers Logs parse it) and, with an Analytics Engine dataset bound, one data point
//! per exchange ([`analytics_point`]). Dimensions come only from the label set outcome, error,
//! cluster, kind, policy (and result for key fetches): never a subject, namespace or service
//! account.

use serde_json::{Map, Number, Value, json};
use tracing::field::{Field, Visit};

/// The target of the one line per token request.
pub const EXCHANGE_TARGET: &str = "txbridge::exchange";
/// The target of the one line per issuer-key fetch (txbridge-jose's key cache).
pub use txbridge_jose::KEY_FETCH_TARGET;
/// The CloudWatch namespace of txbridge's metrics.
pub const METRICS_NAMESPACE: &str = "txbridge";

/// The flat JSON object of one event, with the metrics of the lines that carry them; `now_ms`
/// (Unix milliseconds) timestamps their EMF record.
pub fn log_line(event: &tracing::Event<'_>, now_ms: u64) -> Map<String, Value> {
    let metadata = event.metadata();
    let mut line = Map::new();
    line.insert("level".into(), metadata.level().as_str().into());
    line.insert("target".into(), metadata.target().into());
    event.record(&mut Fields(&mut line));
    match metadata.target() {
        EXCHANGE_TARGET => add_exchange_metrics(&mut line, now_ms),
        KEY_FETCH_TARGET => add_key_fetch_metrics(&mut line, now_ms),
        _ => {}
    }
    line
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(
            field.name().into(),
            Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

fn text<'a>(line: &'a Map<String, Value>, key: &str) -> &'a str {
    line.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The EMF record of a line: `dimensions` are member names whose values are non-empty strings
/// at the top level of the line (CloudWatch refuses an empty dimension value).
fn emf(line: &Map<String, Value>, now_ms: u64, dimensions: &[&[&str]], metrics: Value) -> Value {
    let sets: Vec<Value> = dimensions
        .iter()
        .filter(|set| set.iter().all(|d| !text(line, d).is_empty()))
        .map(|set| json!(set))
        .collect();
    json!({
        "Timestamp": now_ms,
        "CloudWatchMetrics": [{
            "Namespace": METRICS_NAMESPACE,
            "Dimensions": sets,
            "Metrics": metrics,
        }],
    })
}

fn add_exchange_metrics(line: &mut Map<String, Value>, now_ms: u64) {
    let latency_ms = line.get("latency_ms").and_then(Value::as_u64).unwrap_or(0);
    line.insert("txbridge_exchanges_total".into(), 1.into());
    line.insert(
        "txbridge_exchange_duration_seconds".into(),
        Number::from_f64(latency_ms as f64 / 1000.0).map_or(Value::Null, Value::Number),
    );
    let record = emf(
        line,
        now_ms,
        &[
            &["outcome"],
            &["outcome", "error"],
            &["outcome", "cluster"],
            &["outcome", "kind"],
            &["outcome", "policy"],
        ],
        json!([
            {"Name": "txbridge_exchanges_total", "Unit": "Count"},
            {"Name": "txbridge_exchange_duration_seconds", "Unit": "Seconds"},
        ]),
    );
    line.insert("_aws".into(), record);
}

fn add_key_fetch_metrics(line: &mut Map<String, Value>, now_ms: u64) {
    line.insert("txbridge_key_fetches_total".into(), 1.into());
    let record = emf(
        line,
        now_ms,
        &[&["cluster", "result"]],
        json!([{"Name": "txbridge_key_fetches_total", "Unit": "Count"}]),
    );
    line.insert("_aws".into(), record);
}

/// A Workers Analytics Engine data point of an exchange line: blobs (outcome, error, cluster,
/// kind, policy), doubles (count, latency in seconds), the cluster as index.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsPoint {
    pub blobs: [String; 5],
    pub doubles: [f64; 2],
    pub index: String,
}

/// The data point of a line, when it is an exchange line.
pub fn analytics_point(line: &Map<String, Value>) -> Option<AnalyticsPoint> {
    if text(line, "target") != EXCHANGE_TARGET {
        return None;
    }
    let blob = |k| text(line, k).to_owned();
    let latency_ms = line.get("latency_ms").and_then(Value::as_u64).unwrap_or(0);
    Some(AnalyticsPoint {
        blobs: [
            blob("outcome"),
            blob("error"),
            blob("cluster"),
            blob("kind"),
            blob("policy"),
        ],
        doubles: [1.0, latency_ms as f64 / 1000.0],
        index: blob("cluster"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects `log_line` of every event.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<Map<String, Value>>>>);

    impl tracing::Subscriber for Collect {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            self.0
                .lock()
                .unwrap()
                .push(log_line(event, 1_800_000_000_123));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    fn lines(f: impl FnOnce()) -> Vec<Map<String, Value>> {
        let c = Collect::default();
        tracing::subscriber::with_default(c.clone(), f);
        c.0.lock().unwrap().clone()
    }

    /// The EMF specification's rules: `_aws` with a millisecond Timestamp and CloudWatchMetrics
    /// (Namespace; Dimensions: arrays of names of top-level string members; Metrics with Name
    /// and Unit, each a top-level number).
    fn assert_valid_emf(line: &Map<String, Value>) {
        let aws = line["_aws"].as_object().unwrap();
        assert!(
            aws["Timestamp"].as_u64().unwrap() > 1_000_000_000_000,
            "milliseconds"
        );
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let d = directives[0].as_object().unwrap();
        assert_eq!(d["Namespace"], METRICS_NAMESPACE);
        for set in d["Dimensions"].as_array().unwrap() {
            let set = set.as_array().unwrap();
            assert!(!set.is_empty() && set.len() <= 30);
            for name in set {
                let value = &line[name.as_str().unwrap()];
                assert!(
                    value.as_str().is_some_and(|v| !v.is_empty()),
                    "{name}: {value}"
                );
            }
        }
        for metric in d["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(metric["Unit"].is_string());
            assert!(line[name].is_number(), "{name}");
        }
    }

    #[test]
    fn exchange_lines_carry_emf_and_never_identity_dimensions() {
        let out = lines(|| {
            tracing::info!(
                target: EXCHANGE_TARGET,
                outcome = "issued", status = 200u64, error = "", kind = "exchange",
                cluster = "prod", policy = "checkout", txn = "t1", trace_id = "",
                namespace = "payments", service_account = "checkout",
                latency_ms = 12u64, "token exchange"
            );
            tracing::info!(
                target: EXCHANGE_TARGET,
                outcome = "rejected", status = 400u64, error = "invalid_request",
                kind = "exchange", cluster = "", policy = "", txn = "", trace_id = "",
                namespace = "", service_account = "", latency_ms = 3u64, "token exchange"
            );
            tracing::info!(target: "txbridge_core::other", answer = 42u64, "plain line");
        });
        assert_eq!(out.len(), 3);
        let issued = &out[0];
        assert_eq!(issued["message"], "token exchange");
        assert_eq!(issued["level"], "INFO");
        assert_eq!(issued["txbridge_exchanges_total"], 1);
        assert_eq!(issued["txbridge_exchange_duration_seconds"], 0.012);
        assert_valid_emf(issued);
        let sets = issued["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
        for never in ["namespace", "service_account", "txn", "trace_id", "sub"] {
            assert!(!sets.contains(never), "{never} in {sets}");
        }
        assert!(
            sets.contains("\"policy\"") && sets.contains("\"cluster\""),
            "{sets}"
        );
        // A rejection names the error; empty labels are left out of the dimension sets.
        let rejected = &out[1];
        assert_valid_emf(rejected);
        let sets = rejected["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
        assert!(sets.contains("\"error\""), "{sets}");
        assert!(
            !sets.contains("\"cluster\"") && !sets.contains("\"policy\""),
            "{sets}"
        );
        // Other lines are plain flat objects.
        assert!(out[2].get("_aws").is_none());
        assert_eq!(out[2]["answer"], 42);
    }

    #[test]
    fn key_fetch_lines_and_analytics_points() {
        let out = lines(|| {
            tracing::info!(target: KEY_FETCH_TARGET, cluster = "prod", result = "ok", keys = 2u64, "issuer keys fetched");
            tracing::info!(
                target: EXCHANGE_TARGET,
                outcome = "error", status = 503u64, error = "temporarily_unavailable",
                kind = "replacement", cluster = "prod", policy = "", latency_ms = 1500u64,
                "token exchange"
            );
        });
        assert_valid_emf(&out[0]);
        assert_eq!(out[0]["txbridge_key_fetches_total"], 1);
        assert_eq!(
            out[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["cluster", "result"]])
        );
        assert_eq!(analytics_point(&out[0]), None);
        let point = analytics_point(&out[1]).unwrap();
        assert_eq!(
            point.blobs,
            [
                "error",
                "temporarily_unavailable",
                "prod",
                "replacement",
                ""
            ]
            .map(String::from)
        );
        assert_eq!(point.doubles, [1.0, 1.5]);
        assert_eq!(point.index, "prod");
    }
}
