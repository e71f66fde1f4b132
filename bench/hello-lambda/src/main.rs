//! A Rust hello world on Lambda (lambda_http): the baseline txbridge's cold start is compared
//! with in BENCHMARKS.md (`bash bench/run.sh`).

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::Text("hello".into())))
    }))
    .await
}
