//! Limits the Worker applies while converting requests and responses, and the client address.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;

/// Largest token request body the core accepts. The Worker reads at most one byte more, so that
/// an oversized body reaches the core as such and is answered with 413.
pub const MAX_REQUEST_BODY: usize = txbridge_core::MAX_REQUEST_BODY;

/// Total time allowed for one upstream (discovery, JWKS) request, body included (the Lambda's
/// reqwest client gives up after the same time).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);

/// The header in which Cloudflare gives the client's address (`rctx.req_ip`).
pub const CONNECTING_IP_HEADER: &str = "cf-connecting-ip";

/// The client address from `CF-Connecting-IP`, when present and well-formed.
pub fn client_ip(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get(CONNECTING_IP_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// True when a `Content-Length` header announces more than `limit` bytes (checked before reading
/// an upstream body). A missing or malformed header is left to the read limit.
pub fn declared_length_exceeds(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
}

/// A body read in chunks that keeps at most `limit + 1` bytes.
#[derive(Debug)]
pub struct BodyBuffer {
    bytes: Vec<u8>,
    limit: usize,
}

impl BodyBuffer {
    pub fn new(limit: usize) -> Self {
        BodyBuffer {
            bytes: Vec::new(),
            limit,
        }
    }

    /// Appends a chunk. Returns `false` once the body is over the limit: stop reading then (the
    /// buffer holds `limit + 1` bytes, enough for the receiver to see it is too large).
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        let room = (self.limit + 1).saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        !self.is_over()
    }

    /// True when more than `limit` bytes were pushed.
    pub fn is_over(&self) -> bool {
        self.bytes.len() > self.limit
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn client_ip_from_cf_connecting_ip() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("v4", "203.0.113.7", Some("203.0.113.7")),
            ("v6", "2001:db8::1", Some("2001:db8::1")),
            ("spaces", " 198.51.100.2 ", Some("198.51.100.2")),
            ("not an address", "example.com", None),
            ("a list is not one address", "203.0.113.7, 10.0.0.1", None),
            ("empty", "", None),
        ];
        for (name, value, want) in cases {
            let got = client_ip(&headers("cf-connecting-ip", value));
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "{name}");
        }
        assert_eq!(client_ip(&HeaderMap::new()), None);
        assert_eq!(client_ip(&headers("x-forwarded-for", "203.0.113.7")), None);
    }

    #[test]
    fn declared_length() {
        assert!(declared_length_exceeds(
            &headers("content-length", "11"),
            10
        ));
        assert!(!declared_length_exceeds(
            &headers("content-length", "10"),
            10
        ));
        assert!(!declared_length_exceeds(
            &headers("content-length", "nope"),
            10
        ));
        assert!(!declared_length_exceeds(&HeaderMap::new(), 10));
    }

    #[test]
    fn body_buffer_keeps_limit_plus_one() {
        let mut b = BodyBuffer::new(4);
        assert!(b.push(b"ab"));
        assert!(b.push(b"cd"));
        assert!(!b.is_over());
        assert!(!b.push(b"efgh"));
        assert!(b.is_over());
        assert!(!b.push(b"ij"));
        assert_eq!(b.into_bytes(), b"abcde");
    }

    #[test]
    fn body_buffer_exact_limit_is_fine() {
        let mut b = BodyBuffer::new(3);
        assert!(b.push(b"abc"));
        assert!(b.push(b""));
        assert_eq!(b.into_bytes(), b"abc");
    }
}
