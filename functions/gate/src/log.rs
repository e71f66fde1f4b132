//! The gate's logs: one flat JSON object per line (tracing-subscriber's JSON format with the
//! event's fields at the top level), level per target from `RUST_LOG` (default `info`).
//! Dependencies (hyper, h2, tonic, reqwest, rustls, ...) are kept at `info` and above whatever
//! `RUST_LOG` says: their debug and trace events can carry request headers, and a request header
//! is where the token travels. The gate's own events never carry a token, at any level.

use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::filter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{Layer as _, fmt};

use crate::metrics::{KeyFetchCounter, Metrics};

/// txbridge's own events at any level; everything else at info and above.
pub fn log_allowed(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("txbridge") || *metadata.level() <= Level::INFO
}

/// The subscriber: `filter` is `RUST_LOG`'s level-per-target form (`info`,
/// `debug,txbridge_gate=trace`); one that does not parse means `info`. The key cache's fetch
/// events are also counted into `metrics`, whatever the level.
pub fn subscriber<W>(
    filter: &str,
    writer: W,
    metrics: Arc<Metrics>,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let env = filter
        .parse::<filter::Targets>()
        .unwrap_or_else(|_| filter::Targets::new().with_default(Level::INFO));
    tracing_subscriber::registry()
        .with(
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(writer)
                .with_filter(env)
                .with_filter(filter::filter_fn(log_allowed)),
        )
        .with(KeyFetchCounter(metrics).with_filter(filter::filter_fn(|m| {
            m.target() == txbridge_jose::KEY_FETCH_TARGET
        })))
}
