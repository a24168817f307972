//! The sync pull's cursor: what a client passes back may be anything.
#![no_main]

use dfr_api::routes::sync::pull::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(cursor) = Cursor::decode(text) {
        // Whatever decodes encodes to a cursor that decodes the same.
        assert_eq!(Cursor::decode(&cursor.encode()).ok(), Some(cursor));
    }
});
