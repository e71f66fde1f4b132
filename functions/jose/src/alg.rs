//! The signing algorithms txbridge verifies (subject tokens: RS256, ES256; TxTokens: ES256).

/// A JWS `alg` txbridge verifies. Never `none`, never HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    ES256,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Algorithm::RS256),
            "ES256" => Some(Algorithm::ES256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
        }
    }
}
