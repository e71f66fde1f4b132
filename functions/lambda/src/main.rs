//! `txbridge-lambda`: the AWS Lambda entry point.

use std::io::Write as _;

use lambda_http::{Request, service_fn};
use txbridge_core::{LineSubscriber, LogFilter};
use txbridge_jose::SystemClock;
use txbridge_lambda::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // One JSON line per event on stdout (the token endpoint's is also a CloudWatch EMF record).
    let filter = LogFilter::parse(&std::env::var("RUST_LOG").unwrap_or_default());
    tracing::subscriber::set_global_default(LineSubscriber::new(
        filter,
        &SystemClock,
        |_, line| {
            let _ = writeln!(std::io::stdout().lock(), "{}", line.as_str());
        },
    ))?;

    // A function that cannot start yet (KMS unreachable, a bad config) keeps serving 503s and
    // tries again on later requests, rather than failing every invocation with a crash.
    let function = Function::start().await;
    let function = &function;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(function.handle(req).await)
    }))
    .await
    .inspect_err(|e| tracing::error!(error = %e, "lambda runtime stopped"))
}
