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
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::gate::{Answer, Gate, Presented, Query};

/// How long a connection may take to send a request's headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
            // A client that does not finish its headers within the timeout is dropped.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One request to any endpoint.
pub async fn handle<B>(gate: &Gate, req: Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/auth" {
        let q = forward_auth_query(&gate.config().token_header, req.headers());
        return to_response(gate.check(q).await);
    }
    if path == EXT_AUTHZ_PREFIX || path.starts_with("/ext_authz/") {
        let q = ext_authz_query(&gate.config().token_header, &req);
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
pub fn token_of(name: &HeaderName, headers: &HeaderMap) -> Presented {
    Presented::from_values(headers.get_all(name).iter().map(|v| v.as_bytes()))
}

/// A forward-auth request's question: the original method and URI from `X-Original-*` or
/// `X-Forwarded-*` (one value each; two are none).
pub fn forward_auth_query(token_header: &HeaderName, headers: &HeaderMap) -> Query {
    Query {
        method: one_of(headers, &["x-original-method", "x-forwarded-method"]),
        uri: one_of(headers, &["x-original-uri", "x-forwarded-uri"]),
        token: token_of(token_header, headers),
        trace_id: txbridge_jose::trace_id(headers),
    }
}

/// An Envoy HTTP ext_authz request's question: its own method, its path less `/ext_authz`.
pub fn ext_authz_query<B>(token_header: &HeaderName, req: &Request<B>) -> Query {
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
        token: token_of(token_header, req.headers()),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const TXN: HeaderName = HeaderName::from_static("txn-token");

    #[test]
    fn forward_auth_reads_original_or_forwarded_headers() {
        let q = forward_auth_query(
            &TXN,
            &headers(&[
                ("X-Original-Method", "POST"),
                ("X-Original-URI", "/a?b=c"),
                ("TXN-TOKEN", "t.o.k"),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            ]),
        );
        assert_eq!(q.method.as_deref(), Some("POST"));
        assert_eq!(q.uri.as_deref(), Some("/a?b=c"));
        assert_eq!(
            q.token,
            Presented::One("t.o.k".into()),
            "any case of the name"
        );
        assert_eq!(
            q.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );

        let q = forward_auth_query(
            &TXN,
            &headers(&[("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "/x")]),
        );
        assert_eq!(
            (q.method.as_deref(), q.uri.as_deref()),
            (Some("GET"), Some("/x"))
        );
        assert_eq!(q.token, Presented::Missing);

        // X-Original-* wins over X-Forwarded-*.
        let q = forward_auth_query(
            &TXN,
            &headers(&[
                ("X-Forwarded-Uri", "/forwarded"),
                ("X-Original-URI", "/original"),
                ("X-Original-Method", "GET"),
            ]),
        );
        assert_eq!(q.uri.as_deref(), Some("/original"));

        // Missing, empty or repeated: none.
        for h in [
            headers(&[("X-Original-URI", "/a")]),
            headers(&[("X-Original-Method", "GET"), ("X-Original-URI", "")]),
            headers(&[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/a"),
                ("X-Original-URI", "/b"),
            ]),
        ] {
            let q = forward_auth_query(&TXN, &h);
            assert!(q.method.is_none() || q.uri.is_none(), "{h:?}");
        }
    }

    #[test]
    fn token_header_rules() {
        let t = |pairs: &[(&str, &str)]| token_of(&TXN, &headers(pairs));
        assert_eq!(t(&[]), Presented::Missing);
        assert_eq!(
            t(&[("txn-token", " a.b.c ")]),
            Presented::One("a.b.c".into())
        );
        assert_eq!(
            t(&[("Txn-Token", "a.b.c"), ("txn-token", "a.b.c")]),
            Presented::Unusable
        );
        assert_eq!(t(&[("Txn-Token", "")]), Presented::Unusable);
        let mut h = HeaderMap::new();
        h.insert(TXN, http::HeaderValue::from_bytes(b"a.b\xffc").unwrap());
        assert_eq!(token_of(&TXN, &h), Presented::Unusable);
        let other = HeaderName::from_static("x-my-token");
        assert_eq!(
            token_of(
                &other,
                &headers(&[("X-My-Token", "a.b.c"), ("Txn-Token", "x.y.z")])
            ),
            Presented::One("a.b.c".into()),
            "the configured header only"
        );
        assert!(!format!("{:?}", Presented::One("secret.token.value".into())).contains("secret"));
    }

    #[test]
    fn ext_authz_path_is_the_rest_of_the_request_path() {
        let q = |uri: &str| {
            let req = Request::post(uri).body(()).unwrap();
            let q = ext_authz_query(&TXN, &req);
            (q.method.unwrap(), q.uri.unwrap())
        };
        assert_eq!(
            q("/ext_authz/orders/1?x=y"),
            ("POST".into(), "/orders/1?x=y".into())
        );
        assert_eq!(q("/ext_authz/"), ("POST".into(), "/".into()));
        assert_eq!(q("/ext_authz"), ("POST".into(), "/".into()));
        assert_eq!(q("/ext_authz?a=b"), ("POST".into(), "/?a=b".into()));
    }
}
