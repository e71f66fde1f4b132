//! Envoy's gRPC ext_authz: `envoy.service.auth.v3.Authorization/Check` (tonic, the protos of
//! envoy-types). The same decision as the HTTP endpoints: an allow is an OK status with the
//! `X-Txbridge-*` headers (overwriting any of those names the client sent); a denial is a
//! `DeniedHttpResponse` with the status (401, 403, 503), headers and JSON body.

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt as _, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::net::TcpListener;

use crate::gate::{Answer, Gate, Presented, Query};

/// The Authorization service.
#[derive(Debug, Clone)]
pub struct GrpcGate {
    gate: Arc<Gate>,
}

impl GrpcGate {
    pub fn new(gate: Arc<Gate>) -> Self {
        GrpcGate { gate }
    }
}

/// Serves the Authorization service on `listener` until the process ends.
pub async fn serve(listener: TcpListener, gate: Arc<Gate>) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(GrpcGate::new(gate)))
        .serve_with_incoming(incoming)
        .await
}

/// The request's headers: Envoy's `headers` map (lower-case names; repeated headers joined with
/// `,`, which no compact JWS contains) or, with `encode_raw_headers`, `header_map`.
fn headers_of(req: &CheckRequest) -> HeaderMap {
    let mut out = HeaderMap::new();
    let Some(http) = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return out;
    };
    let mut add = |k: &str, v: &[u8]| {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            out.append(name, value);
        }
    };
    for (k, v) in &http.headers {
        add(k, v.as_bytes());
    }
    if http.headers.is_empty()
        && let Some(map) = &http.header_map
    {
        for h in &map.headers {
            if h.raw_value.is_empty() {
                add(&h.key, h.value.as_bytes());
            } else {
                add(&h.key, &h.raw_value);
            }
        }
    }
    out
}

/// The gate's question for a CheckRequest.
pub fn query_of(token_header: &HeaderName, req: &CheckRequest) -> Query {
    let http = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let headers = headers_of(req);
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Query {
        method: http.and_then(|h| nonempty(&h.method)),
        uri: http.and_then(|h| nonempty(&h.path)),
        token: Presented::from_values(headers.get_all(token_header).iter().map(|v| v.as_bytes())),
        trace_id: txbridge_jose::trace_id(&headers),
    }
}

/// The gate's answer as a CheckResponse.
pub fn response_of(a: Answer) -> CheckResponse {
    let mut resp = CheckResponse::new();
    if a.status == 200 {
        let mut ok = OkHttpResponseBuilder::new();
        for (name, value) in a.headers {
            ok.add_header(
                name,
                value,
                Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                true,
            );
        }
        resp.set_status(tonic::Status::ok(""));
        resp.set_http_response(ok);
        return resp;
    }
    let (grpc, http) = match a.status {
        401 => (tonic::Code::Unauthenticated, HttpStatusCode::Unauthorized),
        503 => (tonic::Code::Unavailable, HttpStatusCode::ServiceUnavailable),
        _ => (tonic::Code::PermissionDenied, HttpStatusCode::Forbidden),
    };
    let mut denied = DeniedHttpResponseBuilder::new();
    denied.set_http_status(http);
    for (name, value) in a.headers {
        denied.add_header(
            name,
            value,
            Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
            false,
        );
    }
    denied.set_body(a.body);
    resp.set_status(tonic::Status::new(grpc, ""));
    resp.set_http_response(denied);
    resp
}

#[tonic::async_trait]
impl Authorization for GrpcGate {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let q = query_of(&self.gate.config().token_header, request.get_ref());
        let answer = self.gate.check(q).await;
        Ok(tonic::Response::new(response_of(answer)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::metrics::Decision;
    use envoy_types::ext_authz::v3::pb::HttpResponse;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};

    fn check(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: method.into(),
                        path: path.into(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    const TXN: HeaderName = HeaderName::from_static("txn-token");

    #[test]
    fn query_from_the_check_request() {
        let q = query_of(&TXN, &check("PUT", "/a/b?c=d", &[("txn-token", "a.b.c")]));
        assert_eq!(
            (q.method.as_deref(), q.uri.as_deref()),
            (Some("PUT"), Some("/a/b?c=d"))
        );
        assert_eq!(q.token, Presented::One("a.b.c".into()));
        // Envoy joins repeated headers with a comma: not a compact JWS, refused later.
        let q = query_of(&TXN, &check("GET", "/", &[("txn-token", "a.b.c,a.b.c")]));
        assert_eq!(q.token, Presented::One("a.b.c,a.b.c".into()));
        let q = query_of(&TXN, &CheckRequest::default());
        assert!(q.method.is_none() && q.uri.is_none() && q.token == Presented::Missing);
    }

    #[test]
    fn answers_as_check_responses() {
        let ok = response_of(Answer {
            decision: Decision::Allow,
            status: 200,
            headers: vec![
                ("x-txbridge-txn", "t1".into()),
                ("x-txbridge-req-wl", String::new()),
            ],
            body: String::new(),
        });
        assert_eq!(ok.status.as_ref().unwrap().code, 0);
        let Some(HttpResponse::OkResponse(r)) = ok.http_response else {
            panic!("not an OkHttpResponse");
        };
        let h = r.headers[0].header.as_ref().unwrap();
        assert_eq!((h.key.as_str(), h.value.as_str()), ("x-txbridge-txn", "t1"));
        assert_eq!(
            r.headers[0].append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
        assert!(
            r.headers[1].keep_empty_value,
            "empty values still overwrite the client's"
        );

        for (status, code) in [(401u16, 16), (403, 7), (503, 14)] {
            let denied = response_of(Answer {
                decision: Decision::Deny,
                status,
                headers: vec![("content-type", "application/json".into())],
                body: "{}".into(),
            });
            assert_eq!(denied.status.as_ref().unwrap().code, code);
            let Some(HttpResponse::DeniedResponse(d)) = denied.http_response else {
                panic!("not a DeniedHttpResponse");
            };
            assert_eq!(d.status.unwrap().code, i32::from(status));
            assert_eq!(d.body, "{}");
        }
    }
}
