//! The one log subscriber of both shells: which events are logged ([`LogFilter`]) and each as
//! its [`LogLine`] to a sink the shell gives (the Lambda: stdout; the Worker: the console and
//! Analytics Engine). Nothing else: no span data, no formatting layer, no dependency.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber, span};
use txbridge_jose::Clock;

use crate::logline::{LogLine, log_line};

/// Which events are logged: the most verbose level per target prefix, written in `RUST_LOG`'s
/// level-per-target form (`info`, `debug,txbridge_core=trace`, `txbridge_core::cache=trace`);
/// the longest matching prefix decides, a bare level applies to the rest (which is off without
/// one). A blank or malformed spec means `info`.
///
/// Whatever the spec says, dependencies' events are logged at `info` and above only: their
/// debug and trace events carry request and response bodies (lambda_runtime's "raw JSON event
/// received from Lambda" holds the subject token; the AWS SDK's hold KMS responses).
/// txbridge's own events never carry a token or key, at any level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    rest: LevelFilter,
    /// Longest prefix first.
    targets: Vec<(String, LevelFilter)>,
}

impl LogFilter {
    /// Every target up to `level`.
    pub fn up_to(level: LevelFilter) -> LogFilter {
        LogFilter {
            rest: level,
            targets: Vec::new(),
        }
    }

    /// Parses a spec; a blank or malformed one is `info` for every target.
    pub fn parse(spec: &str) -> LogFilter {
        Self::try_parse(spec).unwrap_or(Self::up_to(LevelFilter::INFO))
    }

    fn try_parse(spec: &str) -> Option<LogFilter> {
        let is_target = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_:-.".contains(&b))
        };
        let mut filter = LogFilter::up_to(LevelFilter::OFF);
        let mut any = false;
        for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            any = true;
            match directive.split_once('=') {
                Some((target, level)) => {
                    let target = target.trim();
                    let level = level.trim().parse().ok()?;
                    is_target(target).then(|| filter.targets.push((target.to_owned(), level)))?;
                }
                None => match directive.parse() {
                    Ok(level) => filter.rest = level,
                    Err(_) if is_target(directive) => filter
                        .targets
                        .push((directive.to_owned(), LevelFilter::TRACE)),
                    Err(_) => return None,
                },
            }
        }
        filter
            .targets
            .sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        any.then_some(filter)
    }

    /// Whether an event or span with this metadata is logged.
    pub fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.allows(metadata.target(), *metadata.level())
    }

    /// Whether an event of `target` at `level` is logged.
    pub fn allows(&self, target: &str, level: Level) -> bool {
        let max = self
            .targets
            .iter()
            .find(|(prefix, _)| target.starts_with(prefix.as_str()))
            .map_or(self.rest, |(_, max)| *max);
        level <= max && (target.starts_with("txbridge") || level <= Level::INFO)
    }

    /// The most verbose level any target is logged at.
    pub fn max_level(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, level)| *level)
            .fold(self.rest, Ord::max)
    }
}

/// The subscriber: every event [`LogFilter`] lets through, as its [`LogLine`] (stamped by
/// `clock`, the shell's clock port), to `sink` with its level. Spans get ids, so instrumented code
/// runs, but nothing of them is recorded.
pub struct LineSubscriber<F> {
    filter: LogFilter,
    clock: &'static dyn Clock,
    sink: F,
    next_span: AtomicU64,
}

impl<F> std::fmt::Debug for LineSubscriber<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineSubscriber")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(Level, LogLine) + 'static> LineSubscriber<F> {
    pub fn new(filter: LogFilter, clock: &'static dyn Clock, sink: F) -> Self {
        LineSubscriber {
            filter,
            clock,
            sink,
            next_span: AtomicU64::new(1),
        }
    }
}

impl<F: Fn(Level, LogLine) + 'static> Subscriber for LineSubscriber<F> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.filter.max_level())
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        (self.sink)(
            *event.metadata().level(),
            log_line(event, self.clock.now_millis()),
        );
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    fn logged(spec: &str, f: impl FnOnce()) -> String {
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        let subscriber = LineSubscriber::new(
            LogFilter::parse(spec),
            &txbridge_jose::SystemClock,
            move |_, line: LogLine| {
                let mut out = sink.lock().unwrap();
                out.push_str(line.as_str());
                out.push('\n');
            },
        );
        tracing::subscriber::with_default(subscriber, f);
        out.lock().unwrap().clone()
    }

    /// Whatever the spec says, dependencies' debug and trace events (lambda_runtime logs every
    /// raw event at trace, subject token included) never reach the log; txbridge's own do.
    #[test]
    fn trace_never_logs_a_dependency_body() {
        let out = logged("trace", || {
            tracing::trace!(
                target: "lambda_runtime::layers::api_response",
                body = "subject_token=eyJSECRET-EVENT-BODY",
                "raw JSON event received from Lambda"
            );
            tracing::debug!(target: "aws_smithy_runtime::client", body = "PLAINTEXT-KEY", "response");
            tracing::trace!(target: "hyper_util::client", "SECRET-HYPER");
            tracing::info!(target: "lambda_runtime", "runtime info line");
            tracing::trace!(target: "txbridge_core::cache", "txbridge trace line");
            tracing::debug!(target: "txbridge_core::handler", "txbridge debug line");
            let span = tracing::info_span!("invoke", request_id = "r1");
            let _entered = span.enter();
            tracing::info!(target: "txbridge_lambda", "inside a span");
        });
        for secret in ["SECRET-EVENT-BODY", "PLAINTEXT-KEY", "SECRET-HYPER"] {
            assert!(!out.contains(secret), "{secret} logged: {out}");
        }
        for kept in [
            "runtime info line",
            "txbridge trace line",
            "txbridge debug line",
            "inside a span",
        ] {
            assert!(out.contains(kept), "{kept} missing: {out}");
        }
        for line in out.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }

    #[test]
    fn specs_are_read_like_rust_log() {
        use LevelFilter as L;
        let cases: &[(&str, &str, Level, bool)] = &[
            ("info", "txbridge_core::handler", Level::INFO, true),
            ("info", "txbridge_core::handler", Level::DEBUG, false),
            ("warn", "txbridge_core", Level::INFO, false),
            (
                "debug,txbridge_core=trace",
                "txbridge_core::x",
                Level::TRACE,
                true,
            ),
            (
                "debug,txbridge_core=trace",
                "txbridge_jose::x",
                Level::TRACE,
                false,
            ),
            (
                "debug,txbridge_core=trace",
                "txbridge_jose::x",
                Level::DEBUG,
                true,
            ),
            ("txbridge_core=debug", "txbridge_core", Level::DEBUG, true),
            ("txbridge_core=debug", "txbridge_jose", Level::ERROR, false),
            ("txbridge_core", "txbridge_core::cache", Level::TRACE, true),
            (
                "txbridge_core=warn,txbridge_core::cache=trace",
                "txbridge_core::cache",
                Level::TRACE,
                true,
            ),
            (
                "txbridge_core::cache=trace,txbridge_core=warn",
                "txbridge_core::handler",
                Level::INFO,
                false,
            ),
            ("off", "txbridge_core", Level::ERROR, false),
            ("DEBUG", "txbridge_core", Level::DEBUG, true),
            // Dependencies stay at info whatever the spec says.
            ("hyper=trace", "hyper::proto", Level::DEBUG, false),
            ("hyper=trace", "hyper::proto", Level::INFO, true),
            // Blank or malformed: info.
            ("", "txbridge_core", Level::INFO, true),
            ("", "txbridge_core", Level::DEBUG, false),
            ("txbridge_core=loud", "txbridge_core", Level::DEBUG, false),
            ("txbridge_core=loud", "lambda_runtime", Level::INFO, true),
            ("[span]=debug", "txbridge_core", Level::INFO, true),
        ];
        for (spec, target, level, want) in cases {
            let filter = LogFilter::parse(spec);
            let got = filter.allows(target, *level);
            assert_eq!(got, *want, "{spec:?} {target} {level}: {filter:?}");
        }
        assert_eq!(
            LogFilter::parse("warn,txbridge_core=trace").max_level(),
            L::TRACE
        );
        assert_eq!(LogFilter::parse("off").max_level(), L::OFF);
        assert_eq!(LogFilter::parse("nonsense!").max_level(), L::INFO);
    }
}
