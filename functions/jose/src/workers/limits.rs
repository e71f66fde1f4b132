//! Limits the Workers adapters apply while reading bodies; target-independent, so they are
//! unit-tested natively.

use http::HeaderMap;

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

    /// Reads `body` into a buffer of `limit`, stopping once it is over (the rest is not read).
    /// A chunk that fails ends the read with its error.
    pub async fn read<S, B, E>(body: S, limit: usize) -> Result<BodyBuffer, E>
    where
        S: futures_util::Stream<Item = Result<B, E>>,
        B: AsRef<[u8]>,
    {
        use futures_util::StreamExt as _;
        let mut body = std::pin::pin!(body);
        let mut buffer = BodyBuffer::new(limit);
        while let Some(chunk) = body.next().await {
            if !buffer.push(chunk?.as_ref()) {
                break;
            }
        }
        Ok(buffer)
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

    /// The whole body under the limit; over it, `limit + 1` bytes and no chunk read after
    /// them; a failed chunk is the read's error.
    #[test]
    fn read_stops_once_over_the_limit() {
        use futures::executor::block_on;
        use futures::stream::{self, StreamExt as _};
        let chunks = |c: &[&'static str]| stream::iter(c.to_vec()).map(Ok::<_, &str>);
        let read = block_on(BodyBuffer::read(chunks(&["ab", "cd"]), 4)).unwrap();
        assert_eq!(
            (read.is_over(), read.into_bytes()),
            (false, b"abcd".to_vec())
        );
        let pulled = std::cell::Cell::new(0);
        let counted = chunks(&["abc", "def", "ghi"]).inspect(|_| pulled.set(pulled.get() + 1));
        let read = block_on(BodyBuffer::read(counted, 4)).unwrap();
        assert_eq!(
            (read.is_over(), read.into_bytes()),
            (true, b"abcde".to_vec())
        );
        assert_eq!(pulled.get(), 2);
        let failing = stream::iter([Ok("ab"), Err("reset"), Ok("cd")]);
        assert_eq!(block_on(BodyBuffer::read(failing, 4)).unwrap_err(), "reset");
    }
}
