//! JSON log lines on the Workers console, one per `tracing` event, in txbridge's one log shape
//! (`txbridge_core::log_line`: the Lambda's lines have the same members), and, when a
//! `TXBRIDGE_METRICS` Analytics Engine dataset is bound, one data point per exchange.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber, span};
use worker::{AnalyticsEngineDataPointBuilder, AnalyticsEngineDataset};

/// Optional var with the most verbose level logged (`error` .. `trace`); default `info`.
pub const LEVEL_VAR: &str = "TXBRIDGE_LOG";
/// The Analytics Engine binding of the exchange metrics (optional).
pub const METRICS_BINDING: &str = "TXBRIDGE_METRICS";

thread_local! {
    static DATASET: RefCell<Option<AnalyticsEngineDataset>> = const { RefCell::new(None) };
}

/// Installs the console subscriber for this isolate (later calls are no-ops), and the metrics
/// dataset when one is bound.
pub fn init(level: Option<&str>, dataset: Option<AnalyticsEngineDataset>) {
    let max = level
        .and_then(|l| l.trim().parse::<Level>().ok())
        .unwrap_or(Level::INFO);
    let _ = tracing::subscriber::set_global_default(ConsoleSubscriber {
        max,
        next_span: AtomicU64::new(1),
    });
    DATASET.with(|d| *d.borrow_mut() = dataset);
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
        let line = txbridge_core::log_line(event, js_sys::Date::now().max(0.0) as u64);
        if let Some(point) = line.analytics_point() {
            DATASET.with(|d| {
                if let Some(dataset) = d.borrow().as_ref() {
                    let written = AnalyticsEngineDataPointBuilder::new()
                        .indexes([point.index.as_str()])
                        .blobs(point.blobs)
                        .doubles(point.doubles)
                        .write_to(dataset);
                    if written.is_err() {
                        worker::console_warn!("{{\"level\":\"WARN\",\"target\":\"txbridge_worker::log\",\"message\":\"metrics data point not written\"}}");
                    }
                }
            });
        }
        let line = line.as_str();
        match *event.metadata().level() {
            Level::ERROR => worker::console_error!("{line}"),
            Level::WARN => worker::console_warn!("{line}"),
            _ => worker::console_log!("{line}"),
        }
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}
