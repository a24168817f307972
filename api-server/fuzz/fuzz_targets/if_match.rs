//! If-Match, as any header value a client can send.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(bytes) {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, value);
        let _ = dfr_api::routes::common::expected_version(&headers);
    }
});
