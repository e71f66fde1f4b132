//! The HTTP endpoints (hyper, HTTP/1.1):
//! - `/auth`, any method: forward-auth (nginx `auth_request`, Traefik ForwardAuth, Caddy
//!   `forward_auth`). The original method from `X-Original-Method` or `X-Forwarded-Method`, the
//!   original URI from `X-Original-URI` or `X-Forwarded-Uri`; without them: 403.
//! - `/ext_authz/<original path>`: Envoy's HTTP ext_authz (`path_prefix: /ext_authz`); the
//!   method and path are the request's own.
//! - `GET /healthz`, `GET /metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::gate::{Answer, Gate, Presented, Query};

/// The path prefix of Envoy's HTTP ext_authz requests.
pub const EXT_AUTHZ_PREFIX: &str = "/ext_authz";

/// Serves the HTTP endpoints on `listener` until the process ends.
pub async fn serve(listener: TcpListener, gate: Arc<Gate>) {
    loop {
        let (stream, _peer): (_, SocketAddr) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let gate = gate.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let gate = gate.clone();
                async move { Ok::<_, Infallible>(handle(&gate, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One request to any endpoint.
pub async fn handle<B>(gate: &Gate, req: Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/auth" {
        let q = forward_auth_query(gate, req.headers());
        return to_response(gate.check(q).await);
    }
    if path == EXT_AUTHZ_PREFIX || path.starts_with("/ext_authz/") {
        let q = ext_authz_query(gate, &req);
        return to_response(gate.check(q).await);
    }
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    match path {
        "/healthz" if is_get => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/metrics" if is_get => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            gate.metrics().render(),
        ),
        "/healthz" | "/metrics" => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Exactly one value of the first of `names` the request has, as text.
fn one_of(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    let name = names.iter().find(|n| headers.contains_key(**n))?;
    let mut values = headers.get_all(*name).iter();
    let v = values.next()?.to_str().ok()?;
    if values.next().is_some() || v.trim().is_empty() {
        return None;
    }
    Some(v.trim().to_owned())
}

/// The token of a request's headers (case-insensitive name; duplicates refused).
pub fn token_of(gate: &Gate, headers: &HeaderMap) -> Presented {
    Presented::from_values(
        headers
            .get_all(&gate.config().token_header)
            .iter()
            .map(|v| v.as_bytes()),
    )
}

fn forward_auth_query(gate: &Gate, headers: &HeaderMap) -> Query {
    Query {
        method: one_of(headers, &["x-original-method", "x-forwarded-method"]),
        uri: one_of(headers, &["x-original-uri", "x-forwarded-uri"]),
        token: token_of(gate, headers),
        trace_id: txbridge_jose::trace_id(headers),
    }
}

fn ext_authz_query<B>(gate: &Gate, req: &Request<B>) -> Query {
    let uri = req
        .uri()
        .path_and_query()
        .map_or("", |pq| pq.as_str())
        .strip_prefix(EXT_AUTHZ_PREFIX)
        .unwrap_or_default();
    let uri = if uri.is_empty() || uri.starts_with('?') {
        format!("/{uri}")
    } else {
        uri.to_owned()
    };
    Query {
        method: Some(req.method().as_str().to_owned()),
        uri: Some(uri),
        token: token_of(gate, req.headers()),
        trace_id: txbridge_jose::trace_id(req.headers()),
    }
}

fn to_response(a: Answer) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(a.body)));
    *resp.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::FORBIDDEN);
    for (name, value) in a.headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}
