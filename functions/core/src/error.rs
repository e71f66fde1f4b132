//! The one error type of the core, and its single mapping onto the wire.

use http::StatusCode;

use crate::subject::{Rejected, SubjectTokenError};
use crate::workload::WorkloadRefused;
use txbridge_jose::TokenError;

/// OAuth 2.0 error codes (RFC 6749 §5.2, RFC 8693 §2.2.2) used on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::ServerError => "server_error",
        }
    }
}

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("content type must be application/x-www-form-urlencoded")]
    UnsupportedContentType,
    #[error("request body is not valid form encoding")]
    MalformedBody,
    #[error("missing parameter: {0}")]
    MissingParameter(&'static str),
    #[error("parameter given more than once: {0}")]
    DuplicateParameter(&'static str),
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    #[error("unsupported grant_type")]
    UnsupportedGrantType,
    #[error("unsupported subject_token_type")]
    UnsupportedSubjectTokenType,
    #[error("unsupported requested_token_type")]
    UnsupportedRequestedTokenType,
    #[error("actor tokens are only accepted when replacing a transaction token")]
    ActorTokenNotSupported,
    #[error("replacing a transaction token requires an actor_token")]
    ActorTokenRequired,
    #[error("invalid actor token: {0}")]
    ActorToken(SubjectTokenError),
    #[error("actor not authorized")]
    ActorNotAuthorized,
    #[error("workload not authorized")]
    WorkloadNotAuthorized,
    #[error("the requested audience is not served")]
    InvalidTarget,
    #[error("requested scope is invalid or exceeds what the subject may be granted")]
    InvalidScope,
    #[error("invalid subject token: {0}")]
    SubjectToken(#[from] SubjectTokenError),
    /// The subject token of a replacement (`subject_token_type` txn_token) is not a valid
    /// TxToken of this service.
    #[error("invalid subject token: {0}")]
    TxnToken(TokenError),
    #[error("request_details may not change the transaction context of a replaced token")]
    TctxImmutable,
    #[error("the transaction token was replaced too many times")]
    ReplacementChainTooLong,
    #[error("the transaction token was not signed by the active key")]
    ReplacementKeyRetired,
    #[error("subject not authorized")]
    NotAuthorized,
    #[error("request_details conflicts with the verified subject")]
    RequestDetailsConflict,
    #[error("request_context may not set a reserved claim")]
    RequestContextReserved,
    #[error("issuer keys are temporarily unavailable")]
    UpstreamUnavailable {
        /// Seconds until a retry can succeed (`Retry-After`): until the next fetch is allowed.
        retry_after: u32,
    },
    #[error("token signing is temporarily unavailable")]
    SigningUnavailable,
    /// The TxToken would be longer than the 8 KiB any consumer (and this service, replacing it)
    /// accepts: large `request_details`, or a long replacement chain with `request_context`.
    #[error("transaction token too large")]
    TokenTooLarge,
    #[error("internal error")]
    Internal,
}

impl From<Rejected> for Error {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::Token(e) => Error::SubjectToken(e),
            Rejected::KeysUnavailable(u) => Error::UpstreamUnavailable {
                retry_after: u.retry_after,
            },
        }
    }
}

impl From<WorkloadRefused> for Error {
    fn from(WorkloadRefused: WorkloadRefused) -> Self {
        Error::WorkloadNotAuthorized
    }
}

/// What goes on the wire for an error: status, OAuth code, generic description, extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub description: String,
    pub retry_after: Option<u32>,
    pub allow: Option<&'static str>,
}

impl From<&Error> for WireError {
    fn from(err: &Error) -> Self {
        use ErrorCode::*;
        let (status, code) = match err {
            Error::NotFound => (StatusCode::NOT_FOUND, InvalidRequest),
            Error::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, InvalidRequest),
            Error::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, InvalidRequest),
            Error::UnsupportedGrantType => (StatusCode::BAD_REQUEST, UnsupportedGrantType),
            Error::InvalidTarget => (StatusCode::BAD_REQUEST, InvalidTarget),
            Error::InvalidScope => (StatusCode::BAD_REQUEST, InvalidScope),
            Error::UpstreamUnavailable { .. } | Error::SigningUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, TemporarilyUnavailable)
            }
            Error::Internal => (StatusCode::INTERNAL_SERVER_ERROR, ServerError),
            Error::UnsupportedContentType
            | Error::MalformedBody
            | Error::MissingParameter(_)
            | Error::DuplicateParameter(_)
            | Error::InvalidParameter(_)
            | Error::UnsupportedSubjectTokenType
            | Error::UnsupportedRequestedTokenType
            | Error::ActorTokenNotSupported
            | Error::ActorTokenRequired
            | Error::ActorToken(_)
            | Error::ActorNotAuthorized
            | Error::WorkloadNotAuthorized
            | Error::ReplacementKeyRetired
            | Error::SubjectToken(_)
            | Error::TxnToken(_)
            | Error::TctxImmutable
            | Error::ReplacementChainTooLong
            | Error::NotAuthorized
            | Error::RequestDetailsConflict
            | Error::RequestContextReserved
            | Error::TokenTooLarge => (StatusCode::BAD_REQUEST, InvalidRequest),
        };
        let retry_after = match err {
            Error::UpstreamUnavailable { retry_after } => Some((*retry_after).max(1)),
            Error::SigningUnavailable => Some(2),
            _ => None,
        };
        let allow = match err {
            Error::MethodNotAllowed { allow } => Some(*allow),
            _ => None,
        };
        WireError {
            status,
            code,
            description: err.client_description(),
            retry_after,
            allow,
        }
    }
}

/// What a client is told about an invalid subject or actor token (contract: `error_description`
/// is generic). Until the signature has verified, no answer may tell a trusted issuer from an
/// untrusted one, or anyone could list the trusted clusters without a token: "issuer is not
/// trusted", "signing algorithm is not allowed", "signing key is unknown" and "signature is
/// invalid" all read "token could not be verified" (the debug log says which). What the parser
/// sees without any config (too large, not a JWS, bad header, `crit`) and what a holder of a
/// validly signed token needs to fix its request (expired, wrong audience, lifetime, not a
/// service account token) is said as it is.
const UNVERIFIED: &str = "token could not be verified";

fn token_description(e: SubjectTokenError) -> String {
    use SubjectTokenError as S;
    use TokenError as T;
    match e {
        S::UntrustedIssuer | S::Token(T::AlgorithmNotAllowed | T::UnknownKey | T::BadSignature) => {
            UNVERIFIED.to_owned()
        }
        other => other.to_string(),
    }
}

impl Error {
    /// The `error_description` sent to the client: a fixed string, or one naming a fixed
    /// parameter; never token contents, policy text or key ids ([`token_description`] for what is
    /// said about a subject token).
    pub fn client_description(&self) -> String {
        match self {
            Error::SubjectToken(e) => format!("invalid subject token: {}", token_description(*e)),
            Error::ActorToken(e) => format!("invalid actor token: {}", token_description(*e)),
            other => other.to_string(),
        }
    }
}

impl WireError {
    /// The RFC 6749 §5.2 JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        }))
        .unwrap_or_default()
    }
}
