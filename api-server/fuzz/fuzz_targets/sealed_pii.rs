//! A stored PII value read back: a row altered in the database must not crash the server.
#![no_main]

use libfuzzer_sys::fuzz_target;

const RING: &str = r#"{"active": "k1", "keys": {"k1": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, "blind_index_key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}"#;

fuzz_target!(|stored: &str| {
    let Ok(ring) = dfr_api::crypto::KeyRing::from_json(RING) else {
        return;
    };
    let _ = ring.decrypt(stored);
    let _ = ring.needs_rotation(stored);
});
