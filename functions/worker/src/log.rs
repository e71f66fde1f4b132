//! JSON log lines on the Workers console, one per `tracing` event, through the core's one
//! subscriber (the Lambda's lines have the same members), and, when a `TXBRIDGE_METRICS`
//! Analytics Engine dataset is bound, one data point per exchange.

use std::cell::RefCell;

use tracing::Level;
use txbridge_core::{LineSubscriber, LogFilter, LogLine};
use txbridge_jose::DateClock;
use worker::{AnalyticsEngineDataPointBuilder, AnalyticsEngineDataset, Env};

/// Optional var with the most verbose level logged (`error` .. `trace`, or `RUST_LOG`'s
/// level-per-target form); default `info`. Dependencies' events stay at `info` and above.
pub const LEVEL_VAR: &str = "TXBRIDGE_LOG";
/// The Analytics Engine binding of the exchange metrics (optional).
pub const METRICS_BINDING: &str = "TXBRIDGE_METRICS";

thread_local! {
    static DATASET: RefCell<Option<AnalyticsEngineDataset>> = const { RefCell::new(None) };
}

/// Installs the console subscriber for this isolate (later calls are no-ops), and the metrics
/// dataset when one is bound.
pub fn init(env: &Env) {
    let level = env.var(LEVEL_VAR).ok().map(|v| v.to_string());
    let filter = LogFilter::parse(level.as_deref().unwrap_or_default());
    let _ = tracing::subscriber::set_global_default(LineSubscriber::new(filter, &DateClock, write));
    DATASET.with(|d| *d.borrow_mut() = env.analytics_engine(METRICS_BINDING).ok());
}

fn write(level: Level, line: LogLine) {
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
    match level {
        Level::ERROR => worker::console_error!("{line}"),
        Level::WARN => worker::console_warn!("{line}"),
        _ => worker::console_log!("{line}"),
    }
}
