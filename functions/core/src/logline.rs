//! One log shape for both shells: every `tracing` event becomes one flat JSON object
//! (`level`, `target`, `message`, then its fields as members), the Lambda's and the Worker's
//! alike. The metrics ride on the same lines (ARCHITECTURE.md "Metrics"): the token endpoint's
//! line (target [`EXCHANGE_TARGET`]) and each issuer-key fetch (target [`KEY_FETCH_TARGET`])
//! carry their metric values and a CloudWatch Embedded Metric Format record (`_aws`), which
//! CloudWatch extracts from the Lambda's log with no agent and no API call; the Worker writes the
//! same line (Workers Logs parse it) and, with an Analytics Engine dataset bound, one data point
//! per exchange ([`LogLine::analytics_point`]). Dimensions come only from the label set outcome, error,
//! cluster, kind, policy (and result for key fetches): never a subject, namespace or service
//! account.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};

/// The target of the one line per token request.
pub const EXCHANGE_TARGET: &str = "txbridge::exchange";
/// The target of the one line per issuer-key fetch (txbridge-jose's key cache).
pub use txbridge_jose::KEY_FETCH_TARGET;
/// The CloudWatch namespace of txbridge's metrics.
pub const METRICS_NAMESPACE: &str = "txbridge";

/// One event as its JSON line: a flat object (`level`, `target`, then the event's fields in
/// their order, `message` among them), with the metric members and the EMF record (`_aws`) on
/// the lines that carry metrics. Written straight into one `String`, no intermediate map: the
/// line is on every token request's path.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    json: String,
    labels: Option<Labels>,
}

impl LogLine {
    /// The JSON object, without a newline.
    pub fn as_str(&self) -> &str {
        &self.json
    }

    /// The JSON object, without a newline.
    pub fn into_string(self) -> String {
        self.json
    }

    /// The Workers Analytics Engine data point of an exchange line (`None` for other lines):
    /// blobs (outcome, error, cluster, kind, policy), doubles (count, latency in seconds), the
    /// cluster as index.
    pub fn analytics_point(&self) -> Option<AnalyticsPoint> {
        let l = self
            .labels
            .as_ref()
            .filter(|l| l.kind == LineKind::Exchange)?;
        Some(AnalyticsPoint {
            blobs: [
                l.outcome.clone(),
                l.error.clone(),
                l.cluster.clone(),
                l.exchange_kind.clone(),
                l.policy.clone(),
            ],
            doubles: [1.0, l.latency_ms as f64 / 1000.0],
            index: l.cluster.clone(),
        })
    }
}

/// The flat JSON line of one event, with the metrics of the lines that carry them; `now_ms`
/// (Unix milliseconds) timestamps their EMF record.
pub fn log_line(event: &tracing::Event<'_>, now_ms: u64) -> LogLine {
    let metadata = event.metadata();
    let kind = match metadata.target() {
        EXCHANGE_TARGET => Some(LineKind::Exchange),
        KEY_FETCH_TARGET => Some(LineKind::KeyFetch),
        _ => None,
    };
    let mut json = String::with_capacity(if kind.is_some() { 1024 } else { 256 });
    json.push_str("{\"level\":");
    escape_into(&mut json, metadata.level().as_str());
    json.push_str(",\"target\":");
    escape_into(&mut json, metadata.target());
    let mut fields = Fields {
        json: &mut json,
        labels: kind.map(Labels::new),
    };
    event.record(&mut fields);
    let labels = fields.labels;
    if let Some(labels) = &labels {
        labels.write_metrics(&mut json, now_ms);
    }
    json.push('}');
    LogLine { json, labels }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Exchange,
    KeyFetch,
}

/// The members of a metrics line that its metrics are labelled with.
#[derive(Debug, Clone, PartialEq)]
struct Labels {
    kind: LineKind,
    outcome: String,
    error: String,
    cluster: String,
    exchange_kind: String,
    policy: String,
    result: String,
    latency_ms: u64,
}

impl Labels {
    fn new(kind: LineKind) -> Labels {
        Labels {
            kind,
            outcome: String::new(),
            error: String::new(),
            cluster: String::new(),
            exchange_kind: String::new(),
            policy: String::new(),
            result: String::new(),
            latency_ms: 0,
        }
    }

    fn slot(&mut self, name: &str) -> Option<&mut String> {
        match name {
            "outcome" => Some(&mut self.outcome),
            "error" => Some(&mut self.error),
            "cluster" => Some(&mut self.cluster),
            "kind" => Some(&mut self.exchange_kind),
            "policy" => Some(&mut self.policy),
            "result" => Some(&mut self.result),
            _ => None,
        }
    }

    fn value(&self, name: &str) -> &str {
        match name {
            "outcome" => &self.outcome,
            "error" => &self.error,
            "cluster" => &self.cluster,
            "kind" => &self.exchange_kind,
            "policy" => &self.policy,
            "result" => &self.result,
            _ => "",
        }
    }

    /// The metric members and the EMF record. Dimension sets list member names whose values
    /// are non-empty strings at the top level of the line (CloudWatch refuses an empty
    /// dimension value); never a subject, namespace or service account.
    fn write_metrics(&self, json: &mut String, now_ms: u64) {
        let (sets, metrics): (&[&[&str]], &str) = match self.kind {
            LineKind::Exchange => {
                json.push_str(",\"txbridge_exchanges_total\":1");
                json.push_str(",\"txbridge_exchange_duration_seconds\":");
                write_f64(json, self.latency_ms as f64 / 1000.0);
                (
                    &[
                        &["outcome"],
                        &["outcome", "error"],
                        &["outcome", "cluster"],
                        &["outcome", "kind"],
                        &["outcome", "policy"],
                    ],
                    "[{\"Name\":\"txbridge_exchanges_total\",\"Unit\":\"Count\"},\
                     {\"Name\":\"txbridge_exchange_duration_seconds\",\"Unit\":\"Seconds\"}]",
                )
            }
            LineKind::KeyFetch => {
                json.push_str(",\"txbridge_key_fetches_total\":1");
                (
                    &[&["cluster", "result"]],
                    "[{\"Name\":\"txbridge_key_fetches_total\",\"Unit\":\"Count\"}]",
                )
            }
        };
        let _ = write!(
            json,
            ",\"_aws\":{{\"Timestamp\":{now_ms},\"CloudWatchMetrics\":[{{\"Namespace\":\"{METRICS_NAMESPACE}\",\"Dimensions\":["
        );
        let mut first = true;
        for set in sets
            .iter()
            .filter(|set| set.iter().all(|d| !self.value(d).is_empty()))
        {
            if !first {
                json.push(',');
            }
            first = false;
            json.push('[');
            for (i, name) in set.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                escape_into(json, name);
            }
            json.push(']');
        }
        json.push_str("],\"Metrics\":");
        json.push_str(metrics);
        json.push_str("}]}");
    }
}

struct Fields<'a> {
    json: &'a mut String,
    labels: Option<Labels>,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.json.push(',');
        escape_into(self.json, field.name());
        self.json.push(':');
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        escape_into(self.json, value);
        if let Some(slot) = self.labels.as_mut().and_then(|l| l.slot(field.name())) {
            value.clone_into(slot);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.json.push_str(if value { "true" } else { "false" });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.json, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.json, "{value}");
        if field.name() == "latency_ms"
            && let Some(labels) = self.labels.as_mut()
        {
            labels.latency_ms = value;
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        write_f64(self.json, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        let start = self.json.len();
        self.json.push('"');
        let _ = write!(Escaped(self.json), "{value:?}");
        self.json.push('"');
        if let Some(slot) = self.labels.as_mut().and_then(|l| l.slot(field.name())) {
            // Labels are plain ids; a value that needed escaping is kept as written.
            self.json[start + 1..self.json.len() - 1].clone_into(slot);
        }
    }
}

/// A finite number as JSON (Rust's shortest round-trip form, never an exponent), else `null`.
fn write_f64(json: &mut String, value: f64) {
    if value.is_finite() {
        let _ = write!(json, "{value}");
    } else {
        json.push_str("null");
    }
}

/// `s` as a JSON string literal.
fn escape_into(json: &mut String, s: &str) {
    json.push('"');
    let _ = Escaped(json).write_str(s);
    json.push('"');
}

/// Writes what it is given as the inside of a JSON string literal.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let mut run = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.push_str(&s[run..i]);
            if escape.is_empty() {
                let _ = write!(self.0, "\\u{b:04x}");
            } else {
                self.0.push_str(escape);
            }
            run = i + 1;
        }
        self.0.push_str(&s[run..]);
        Ok(())
    }
}

/// A Workers Analytics Engine data point of an exchange line: blobs (outcome, error, cluster,
/// kind, policy), doubles (count, latency in seconds), the cluster as index.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsPoint {
    pub blobs: [String; 5],
    pub doubles: [f64; 2],
    pub index: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Map, Value, json};
    use std::sync::{Arc, Mutex};

    /// Collects `log_line` of every event.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<LogLine>>>);

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

    fn raw_lines(f: impl FnOnce()) -> Vec<LogLine> {
        let c = Collect::default();
        tracing::subscriber::with_default(c.clone(), f);
        c.0.lock().unwrap().clone()
    }

    fn lines(f: impl FnOnce()) -> Vec<Map<String, Value>> {
        raw_lines(f)
            .iter()
            .map(|l| serde_json::from_str(l.as_str()).unwrap())
            .collect()
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
        let raw = raw_lines(|| {
            tracing::info!(target: KEY_FETCH_TARGET, cluster = "prod", result = "ok", keys = 2u64, "issuer keys fetched");
            tracing::info!(
                target: EXCHANGE_TARGET,
                outcome = "error", status = 503u64, error = "temporarily_unavailable",
                kind = "replacement", cluster = "prod", policy = "", latency_ms = 1500u64,
                "token exchange"
            );
        });
        let out: Vec<Map<String, Value>> = raw
            .iter()
            .map(|l| serde_json::from_str(l.as_str()).unwrap())
            .collect();
        assert_valid_emf(&out[0]);
        assert_eq!(out[0]["txbridge_key_fetches_total"], 1);
        assert_eq!(
            out[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["cluster", "result"]])
        );
        assert_eq!(raw[0].analytics_point(), None);
        let point = raw[1].analytics_point().unwrap();
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

    /// Whatever a field holds, the line is one valid JSON object that gives it back unchanged:
    /// quotes, backslashes, control characters, non-ASCII, Display and Debug values, numbers.
    #[test]
    fn lines_are_valid_json_for_any_value() {
        let nasty = "a\"b\\c\nd\re\tf\u{1}g\u{1f}h\u{7f}é✓𝄞</script>";
        let err = std::io::Error::other("broken \"pipe\"\n");
        let out = lines(|| {
            tracing::info!(
                target: "txbridge_core::x",
                s = nasty, d = %err, g = ?nasty, b = true, i = -5i64, u = 7u64,
                f = 0.25f64, nan = f64::NAN, inf = f64::INFINITY,
                "msg {}", nasty
            );
        });
        let line = &out[0];
        assert_eq!(line["s"], nasty);
        assert_eq!(line["d"], err.to_string());
        assert_eq!(line["g"], format!("{nasty:?}"));
        assert_eq!(line["message"], format!("msg {nasty}"));
        assert_eq!(line["b"], true);
        assert_eq!(line["i"], -5);
        assert_eq!(line["u"], 7);
        assert_eq!(line["f"], 0.25);
        assert!(line["nan"].is_null() && line["inf"].is_null());
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "txbridge_core::x");
    }

    /// The metrics' labels may come as Display values (`%`), as the handler's `reason` does.
    #[test]
    fn labels_from_display_values() {
        let raw = raw_lines(|| {
            let cluster = String::from("prod");
            tracing::info!(
                target: EXCHANGE_TARGET,
                outcome = "issued", error = "", kind = "exchange", cluster = %cluster,
                policy = "p1", latency_ms = 250u64, "token exchange"
            );
        });
        let point = raw[0].analytics_point().unwrap();
        assert_eq!(point.blobs[2], "prod");
        assert_eq!(point.index, "prod");
        assert_eq!(point.doubles, [1.0, 0.25]);
        let line: Value = serde_json::from_str(raw[0].as_str()).unwrap();
        assert_eq!(line["txbridge_exchange_duration_seconds"], 0.25);
        let sets = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
        assert!(sets.contains("[\"outcome\",\"cluster\"]"), "{sets}");
        assert!(!sets.contains("\"error\""), "{sets}");
    }
}
