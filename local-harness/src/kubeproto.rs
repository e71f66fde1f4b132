//! Just enough of the Kubernetes protobuf wire format to read a `TokenRequest`, which
//! `kubectl create token` sends as `application/vnd.kubernetes.protobuf`. Replies stay JSON
//! (kubectl also accepts `application/json`).
//!
//! Envelope: the magic `k8s\0`, then a `runtime.Unknown` message {1: TypeMeta {1: apiVersion,
//! 2: kind}, 2: raw object bytes}. `TokenRequest` {1: metadata, 2: spec, 3: status};
//! `TokenRequestSpec` {1: repeated audiences, 3: boundObjectRef, 4: expirationSeconds};
//! `BoundObjectReference` {1: kind, 2: apiVersion, 3: name, 4: uid}
//! (k8s.io/api/authentication/v1/generated.proto).

use crate::token::{BoundObjectRef, TokenRequest, TokenRequestSpec};

const MAGIC: &[u8] = b"k8s\0";

enum FieldValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Fields<'a> {
    buf: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err("truncated field".into());
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, FieldValue<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let mut step = || -> Result<(u64, FieldValue<'a>), String> {
            let key = varint(&mut self.buf)?;
            let value = match key & 7 {
                0 => FieldValue::Varint(varint(&mut self.buf)?),
                1 => {
                    take(&mut self.buf, 8)?;
                    FieldValue::Fixed
                }
                2 => {
                    let len = usize::try_from(varint(&mut self.buf)?)
                        .map_err(|_| "length out of range".to_owned())?;
                    FieldValue::Bytes(take(&mut self.buf, len)?)
                }
                5 => {
                    take(&mut self.buf, 4)?;
                    FieldValue::Fixed
                }
                t => return Err(format!("unsupported wire type {t}")),
            };
            Ok((key >> 3, value))
        };
        let item = step();
        if item.is_err() {
            self.buf = &[];
        }
        Some(item)
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

fn string(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_owned())
}

/// Decodes a protobuf-encoded `TokenRequest` (with the `k8s\0` envelope).
pub fn decode_token_request(body: &[u8]) -> Result<TokenRequest, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf magic")?;
    let mut request = TokenRequest::default();
    let mut raw = None;
    for field in fields(envelope) {
        match field? {
            (1, FieldValue::Bytes(type_meta)) => {
                for f in fields(type_meta) {
                    match f? {
                        (1, FieldValue::Bytes(v)) => request.api_version = Some(string(v)?),
                        (2, FieldValue::Bytes(v)) => request.kind = Some(string(v)?),
                        _ => {}
                    }
                }
            }
            (2, FieldValue::Bytes(object)) => raw = Some(object),
            _ => {}
        }
    }
    let raw = raw.ok_or("protobuf envelope carries no object")?;
    for field in fields(raw) {
        if let (2, FieldValue::Bytes(spec)) = field? {
            request.spec = decode_spec(spec)?;
        }
    }
    Ok(request)
}

fn decode_spec(buf: &[u8]) -> Result<TokenRequestSpec, String> {
    let mut spec = TokenRequestSpec::default();
    for field in fields(buf) {
        match field? {
            (1, FieldValue::Bytes(v)) => spec.audiences.push(string(v)?),
            // int64 on the wire: two's complement in a varint.
            (4, FieldValue::Varint(v)) => {
                spec.expiration_seconds = Some(i64::from_ne_bytes(v.to_ne_bytes()));
            }
            (3, FieldValue::Bytes(v)) => {
                let mut r = BoundObjectRef::default();
                for f in fields(v) {
                    match f? {
                        (1, FieldValue::Bytes(v)) => r.kind = string(v)?,
                        (2, FieldValue::Bytes(v)) => r.api_version = Some(string(v)?),
                        (3, FieldValue::Bytes(v)) => r.name = string(v)?,
                        (4, FieldValue::Bytes(v)) => r.uid = Some(string(v)?),
                        _ => {}
                    }
                }
                r.api_version = r.api_version.filter(|v| !v.is_empty());
                r.uid = r.uid.filter(|v| !v.is_empty());
                spec.bound_object_ref = Some(r);
            }
            _ => {}
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Body of `kubectl create token checkout -n payments --audience txbridge` (kubectl 1.32,
    /// captured with -v=9).
    const KUBECTL_BODY: &[u8] = &[
        0x6b, 0x38, 0x73, 0x00, 0x0a, 0x28, 0x0a, 0x18, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74,
        0x69, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2e, 0x6b, 0x38, 0x73, 0x2e, 0x69, 0x6f, 0x2f,
        0x76, 0x31, 0x12, 0x0c, 0x54, 0x6f, 0x6b, 0x65, 0x6e, 0x52, 0x65, 0x71, 0x75, 0x65, 0x73,
        0x74, 0x12, 0x24, 0x0a, 0x10, 0x0a, 0x00, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00,
        0x32, 0x00, 0x38, 0x00, 0x42, 0x00, 0x12, 0x0a, 0x0a, 0x08, 0x74, 0x78, 0x62, 0x72, 0x69,
        0x64, 0x67, 0x65, 0x1a, 0x04, 0x0a, 0x00, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00,
    ];

    #[test]
    fn decodes_kubectl_token_request() {
        let r = decode_token_request(KUBECTL_BODY).unwrap();
        assert_eq!(r.api_version.as_deref(), Some("authentication.k8s.io/v1"));
        assert_eq!(r.kind.as_deref(), Some("TokenRequest"));
        assert_eq!(r.spec.audiences, ["txbridge"]);
        assert_eq!(r.spec.expiration_seconds, None);
        assert!(r.spec.bound_object_ref.is_none());
    }

    #[test]
    fn decodes_duration_and_binding() {
        // spec {audiences: "a", boundObjectRef {kind: "Pod", name: "p"}, expirationSeconds: 700}
        let spec = [
            0x0a, 0x01, b'a', 0x1a, 0x08, 0x0a, 0x03, b'P', b'o', b'd', 0x1a, 0x01, b'p', 0x20,
            0xbc, 0x05,
        ];
        let mut object = vec![0x12, u8::try_from(spec.len()).unwrap()];
        object.extend_from_slice(&spec);
        let mut body = b"k8s\0".to_vec();
        body.extend_from_slice(&[0x12, u8::try_from(object.len()).unwrap()]);
        body.extend_from_slice(&object);
        let r = decode_token_request(&body).unwrap();
        assert_eq!(r.spec.expiration_seconds, Some(700));
        let b = r.spec.bound_object_ref.unwrap();
        assert_eq!((b.kind.as_str(), b.name.as_str()), ("Pod", "p"));
    }

    #[test]
    fn rejects_garbage() {
        for body in [&b""[..], b"{}", b"k8s\0\x12\x05ab", b"k8s\0\x0a"] {
            assert!(decode_token_request(body).is_err());
        }
    }
}
