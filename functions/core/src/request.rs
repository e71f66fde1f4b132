//! A token request, parsed once: everything the pipeline reads of the HTTP request (the form,
//! the workload header, the caller's address), typed. Nothing downstream sees raw strings.

use std::net::IpAddr;

use http::{Request, header};

use crate::error::Error;
use crate::form::{self, ExchangeRequest, SubjectToken, TOKEN_TYPE_TXN_TOKEN};
use crate::workload;

/// Request extension a shell sets to the caller's address as its platform reports it
/// (Lambda: the event's source IP; Worker: `CF-Connecting-IP`). Becomes `rctx.req_ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The address a header of the platform gives (`CF-Connecting-IP`): one well-formed
    /// address, spaces around it allowed; anything else (a list, a name) is none.
    pub fn from_header(headers: &http::HeaderMap, name: &str) -> Option<IpAddr> {
        headers.get(name)?.to_str().ok()?.trim().parse().ok()
    }

    /// A shell's request as the core takes it: the platform's own extensions dropped (the core
    /// reads none of them), the caller's address, when known, as a `ClientIp`.
    pub fn request(
        mut parts: http::request::Parts,
        body: Vec<u8>,
        client_ip: Option<IpAddr>,
    ) -> Request<Vec<u8>> {
        parts.extensions = http::Extensions::new();
        if let Some(ip) = client_ip {
            parts.extensions.insert(ClientIp(ip));
        }
        Request::from_parts(parts, body)
    }
}

/// Which grant a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A ServiceAccount token for a TxToken (`subject_token_type` jwt or id_token).
    Exchange,
    /// A TxToken of this service for a replacement (`subject_token_type` txn_token).
    Replacement,
}

impl Kind {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exchange => "exchange",
            Kind::Replacement => "replacement",
        }
    }
}

/// A parsed token request.
#[derive(Debug)]
pub struct TokenRequest {
    pub kind: Kind,
    pub form: ExchangeRequest,
    /// The workload named in `X-Txbridge-Workload` / `X-Kontxt-Workload`, if any (checked
    /// against the policies later).
    pub workload: Option<String>,
    pub client_ip: Option<IpAddr>,
}

impl TokenRequest {
    /// Parses a `POST /token`: body size, content type, the workload header, the form.
    pub fn parse(req: &Request<Vec<u8>>) -> Result<TokenRequest, Error> {
        if req.body().len() > form::MAX_BODY {
            return Err(Error::PayloadTooLarge);
        }
        if !form::is_form_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(Error::UnsupportedContentType);
        }
        let workload = workload::claimed(req.headers())?;
        let form = form::parse(req.body())?;
        let kind = if form.subject_token_type == TOKEN_TYPE_TXN_TOKEN {
            Kind::Replacement
        } else {
            Kind::Exchange
        };
        Ok(TokenRequest {
            kind,
            form,
            workload,
            client_ip: req.extensions().get::<ClientIp>().map(|c| c.0),
        })
    }

    /// The subject token.
    pub fn subject_token(&self) -> &SubjectToken {
        &self.form.subject_token
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_ip_from_a_platform_header() {
        let headers = |name: &'static str, value: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(name, http::HeaderValue::from_str(value).unwrap());
            h
        };
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("v4", "203.0.113.7", Some("203.0.113.7")),
            ("v6", "2001:db8::1", Some("2001:db8::1")),
            ("spaces", " 198.51.100.2 ", Some("198.51.100.2")),
            ("not an address", "example.com", None),
            ("a list is not one address", "203.0.113.7, 10.0.0.1", None),
            ("empty", "", None),
        ];
        let from = |h: &http::HeaderMap| ClientIp::from_header(h, "cf-connecting-ip");
        for (name, value, want) in cases {
            let got = from(&headers("cf-connecting-ip", value));
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "{name}");
        }
        assert_eq!(from(&http::HeaderMap::new()), None);
        assert_eq!(from(&headers("x-forwarded-for", "203.0.113.7")), None);
    }

    #[test]
    fn a_shell_request_carries_only_the_client_ip() {
        let (mut parts, _) = Request::post("/token").body(()).unwrap().into_parts();
        parts.extensions.insert("the platform's context");
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let req = ClientIp::request(parts.clone(), b"a=b".to_vec(), Some(ip));
        assert_eq!(req.extensions().get::<ClientIp>(), Some(&ClientIp(ip)));
        assert_eq!(req.extensions().get::<&str>(), None);
        assert_eq!(
            (req.uri().path(), req.body().as_slice()),
            ("/token", &b"a=b"[..])
        );
        let req = ClientIp::request(parts, Vec::new(), None);
        assert!(req.extensions().is_empty());
    }
}
