//! `txbridge-lambda`: the AWS Lambda entry point.

use lambda_http::{Request, service_fn};
use txbridge_lambda::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    tracing::subscriber::set_global_default(txbridge_lambda::subscriber(&filter, std::io::stdout))?;

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
