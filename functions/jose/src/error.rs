//! The one error of token verification, for subject tokens and TxTokens alike: structure,
//! header rules, key and signature, registered claims, and the TxToken profile's claims. Each
//! reason is a fixed string: nothing from a token is ever echoed. A caller with rules of its own
//! (the exchange: the cluster chosen by `iss`, the ServiceAccount identity) wraps it.

/// Why a token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    // Structure (compact JWS), checked before anything else.
    #[error("token is too large")]
    TooLarge,
    #[error("token is not a compact JWS")]
    Malformed,
    #[error("token header is invalid")]
    BadHeader,
    #[error("token uses a critical header extension")]
    CritHeader,
    // Header rules.
    #[error("token type is not txntoken+jwt")]
    WrongType,
    #[error("signing algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("token has no key id")]
    MissingKeyId,
    // Key and signature.
    #[error("signing key is unknown")]
    UnknownKey,
    #[error("signature is invalid")]
    BadSignature,
    // Registered claims (RFC 7519 §4.1), in the order they are checked.
    #[error("token claims are invalid")]
    BadClaims,
    #[error("issuer is not the expected one")]
    WrongIssuer,
    #[error("token has no audience")]
    MissingAudience,
    #[error("audience is not accepted")]
    WrongAudience,
    #[error("token has no expiry")]
    MissingExpiry,
    #[error("token has no issued-at time")]
    MissingIssuedAt,
    #[error("token is expired")]
    Expired,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token is not valid yet")]
    NotYetValid,
    // Claims every token kind here needs.
    #[error("token has no subject")]
    MissingSubject,
    #[error("token has no transaction id")]
    MissingTxn,
}
