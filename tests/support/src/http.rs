use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use txbridge_jose::{HttpClient, HttpError};

type Handler =
    dyn Fn(http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, HttpError> + Send + Sync;

/// The [`HttpClient`] of the tests: a closure answers each request; requests are counted per
/// URL. [`FnHttp::yielding`] makes each request yield once before it is answered, so that
/// concurrent requests really overlap.
pub struct FnHttp {
    handler: Box<Handler>,
    yielding: bool,
    hits: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
}

impl std::fmt::Debug for FnHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnHttp")
            .field("yielding", &self.yielding)
            .field("total", &self.total())
            .finish_non_exhaustive()
    }
}

impl FnHttp {
    /// Answers every request with `handler`, at once.
    pub fn new(
        handler: impl Fn(http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, HttpError>
        + Send
        + Sync
        + 'static,
    ) -> FnHttp {
        FnHttp {
            handler: Box::new(handler),
            yielding: false,
            hits: Mutex::default(),
            total: AtomicUsize::new(0),
        }
    }

    /// Answers from `routes` (404 for a URL without a route).
    pub fn routes(routes: Arc<Routes>) -> FnHttp {
        FnHttp::new(move |req| routes.answer(&req))
    }

    /// Each request yields once before it is answered.
    pub fn yielding(mut self) -> FnHttp {
        self.yielding = true;
        self
    }

    /// Requests made so far to `url`.
    pub fn hits(&self, url: &str) -> usize {
        self.hits.lock().unwrap().get(url).copied().unwrap_or(0)
    }

    /// Requests made so far, to any URL.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl HttpClient for FnHttp {
    async fn execute(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        self.total.fetch_add(1, Ordering::SeqCst);
        *self
            .hits
            .lock()
            .unwrap()
            .entry(req.uri().to_string())
            .or_default() += 1;
        if self.yielding {
            YieldOnce(false).await;
        }
        (self.handler)(req)
    }
}

/// A future that is pending once (waking itself), then ready.
pub(crate) struct YieldOnce(pub(crate) bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// What an upstream URL answers.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// 200 with this JSON.
    Json(Value),
    /// This status, with the body `oops`.
    Status(u16),
    /// 200 with these bytes.
    Body(Vec<u8>),
    /// The connection fails ([`HttpError::Connect`]).
    Fail,
    /// The request times out ([`HttpError::Timeout`]).
    Timeout,
    /// The client refuses the body as too large ([`HttpError::BodyTooLarge`]).
    TooLarge,
}

/// Canned answers by URL, for [`FnHttp::routes`]; a URL without one answers 404.
#[derive(Debug, Default)]
pub struct Routes(Mutex<HashMap<String, Upstream>>);

impl Routes {
    /// `url` answers `answer` from now on.
    pub fn set(&self, url: &str, answer: Upstream) {
        self.0.lock().unwrap().insert(url.to_owned(), answer);
    }

    /// The answer to `req`.
    pub fn answer(
        &self,
        req: &http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let answer = self.0.lock().unwrap().get(&req.uri().to_string()).cloned();
        let (status, body) = match answer {
            Some(Upstream::Json(v)) => (200, serde_json::to_vec(&v).unwrap()),
            Some(Upstream::Status(s)) => (s, b"oops".to_vec()),
            Some(Upstream::Body(b)) => (200, b),
            Some(Upstream::Fail) => return Err(HttpError::Connect),
            Some(Upstream::Timeout) => return Err(HttpError::Timeout),
            Some(Upstream::TooLarge) => return Err(HttpError::BodyTooLarge),
            None => (404, Vec::new()),
        };
        let mut resp = http::Response::new(body);
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(resp)
    }
}
