//! JSON log lines on the Workers console, one per `tracing` event: `{"level", "target",
//! "message", ...fields}`. The core and the shell never put a token or a key in a field.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber, span};

/// Optional var with the most verbose level logged (`error` .. `trace`); default `info`.
pub const LEVEL_VAR: &str = "TXBRIDGE_LOG";

/// Installs the console subscriber for this isolate (later calls are no-ops).
pub fn init(level: Option<&str>) {
    let max = level
        .and_then(|l| l.trim().parse::<Level>().ok())
        .unwrap_or(Level::INFO);
    let _ = tracing::subscriber::set_global_default(ConsoleSubscriber {
        max,
        next_span: AtomicU64::new(1),
    });
}

/// Events only: spans get ids so `#[instrument]` works, their fields are not recorded.
struct ConsoleSubscriber {
    max: Level,
    next_span: AtomicU64,
}

impl Subscriber for ConsoleSubscriber {
    /// Up to the configured level for txbridge's own events, which never carry a token or a key;
    /// dependencies' at `info` and above only, whatever the level (their debug and trace events
    /// may carry request and response bodies).
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
            && (metadata.target().starts_with("txbridge") || *metadata.level() <= Level::INFO)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut fields = Map::new();
        fields.insert("level".into(), metadata.level().as_str().into());
        fields.insert("target".into(), metadata.target().into());
        event.record(&mut JsonFields(&mut fields));
        let line = Value::Object(fields);
        match *metadata.level() {
            Level::ERROR => worker::console_error!("{line}"),
            Level::WARN => worker::console_warn!("{line}"),
            _ => worker::console_log!("{line}"),
        }
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

struct JsonFields<'a>(&'a mut Map<String, Value>);

impl Visit for JsonFields<'_> {
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
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
