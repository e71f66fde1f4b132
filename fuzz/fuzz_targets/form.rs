//! `form::parse` (the RFC 8693 form parser) and the content-type check on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use txbridge_core::__internal::{WireError, is_form_content_type, parse_form};

fuzz_target!(|data: &[u8]| {
    let _ = is_form_content_type(http::HeaderValue::from_bytes(data).ok().as_ref());
    match parse_form(data) {
        Ok(req) => {
            let token = req.subject_token.expose();
            assert!(!token.is_empty(), "empty subject_token accepted");
            assert_eq!(
                format!("{:?}", req.subject_token),
                "SubjectToken([redacted])"
            );
            if let Some(scopes) = &req.scope {
                assert!(scopes.len() <= 64);
                assert!(scopes.iter().all(|s| !s.is_empty() && !s.contains(' ')));
            }
        }
        Err(err) => {
            let wire = WireError::from(&err);
            let status = wire.status.as_u16();
            assert!(
                status == 400 || status == 413,
                "form error mapped to {status}"
            );
            let body: serde_json::Value =
                serde_json::from_slice(&wire.body()).expect("error body is JSON");
            assert!(body["error"].is_string());
        }
    }
});
