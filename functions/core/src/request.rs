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
