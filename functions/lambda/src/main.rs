//! `txbridge-lambda`: the AWS Lambda entry point.

use std::process::ExitCode;

use lambda_http::{Request, service_fn};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();

    let bridge = match txbridge_lambda::build().await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "txbridge failed to start");
            return ExitCode::FAILURE;
        }
    };
    let base_path = std::env::var("TXBRIDGE_BASE_PATH").ok();
    tracing::info!(
        issuer = %bridge.config().issuer(),
        clusters = bridge.config().clusters().len(),
        "txbridge started"
    );
    let bridge = &bridge;
    let base_path = base_path.as_deref();
    let result = lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(txbridge_lambda::handle(bridge, req, base_path).await)
    }))
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}
