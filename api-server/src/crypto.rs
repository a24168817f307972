//! PII encryption at rest: AES-256-GCM under a key ring with key ids, and an HMAC-SHA256 blind
//! index for exact national-ID lookup without decrypting.
//!
//! A ring read from a file follows the file: the operator adds a key and makes it active on a
//! schedule, and the kubelet updates the mounted Secret in each pod within about a minute, at
//! different moments. The file is looked at again at most once a second when the ring is used
//! (see [`crate::reload`]), and at once when a stored value names a key the ring in memory does
//! not hold: another pod may already write under a key this one has not seen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as HmacKeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::reload::Reloading;

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("cannot read the key ring {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("key ring: {0}")]
    Invalid(String),
    #[error("ciphertext names key {0:?}, which the key ring does not hold")]
    UnknownKey(String),
    #[error("ciphertext is malformed or was tampered with")]
    Corrupt,
}

#[derive(Deserialize)]
struct KeyRingFile {
    active: String,
    keys: BTreeMap<String, String>,
    blind_index_key: String,
}

/// One version of the key ring, parsed.
struct Keys {
    active: String,
    keys: BTreeMap<String, Aes256Gcm>,
    blind_index_key: Vec<u8>,
}

pub struct KeyRing(Source);

enum Source {
    Fixed(Arc<Keys>),
    File(Reloading<Keys, KeyRingError>),
}

fn decode_key(name: &str, text: &str) -> Result<Vec<u8>, KeyRingError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| KeyRingError::Invalid(format!("{name} is not base64: {e}")))?;
    if bytes.len() != 32 {
        return Err(KeyRingError::Invalid(format!(
            "{name} must be 32 bytes, not {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

impl KeyRing {
    /// The ring in `path`, read again when the file changes.
    pub fn from_file(path: &Path) -> Result<Self, KeyRingError> {
        let file = path.to_path_buf();
        let reloading = Reloading::new("PII key ring", vec![file.clone()], move || {
            Keys::from_file(&file)
        })?;
        Ok(Self(Source::File(reloading)))
    }

    /// A ring that never changes.
    pub fn from_json(text: &str) -> Result<Self, KeyRingError> {
        Ok(Self(Source::Fixed(Arc::new(Keys::from_json(text)?))))
    }

    fn keys(&self) -> Arc<Keys> {
        match &self.0 {
            Source::Fixed(keys) => keys.clone(),
            Source::File(reloading) => reloading.current(),
        }
    }

    pub fn active_key_id(&self) -> String {
        self.keys().active.clone()
    }

    /// `<key id>:<base64(nonce || ciphertext)>`, a fresh random nonce each time.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, KeyRingError> {
        self.keys().encrypt(plaintext)
    }

    /// Opens `stored` with the key it names. A key the ring in memory does not hold sends the
    /// ring file to be read once more before the value is given up as unreadable.
    pub fn decrypt(&self, stored: &str) -> Result<String, KeyRingError> {
        match (self.keys().decrypt(stored), &self.0) {
            (Err(KeyRingError::UnknownKey(id)), Source::File(reloading)) => {
                tracing::info!(key = %id, "a stored value names a key this ring lacks; reading the ring file again");
                reloading.reload_now().decrypt(stored)
            }
            (result, _) => result,
        }
    }

    /// Whether `stored` is encrypted under a key other than the active one.
    pub fn needs_rotation(&self, stored: &str) -> bool {
        self.keys().needs_rotation(stored)
    }

    /// Deterministic keyed digest of a normalized national ID: equal IDs, equal index.
    pub fn blind_index(&self, system: &str, value: &str) -> String {
        self.keys().blind_index(system, value)
    }
}

impl Keys {
    fn from_file(path: &Path) -> Result<Self, KeyRingError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyRingError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_json(&text)
    }

    fn from_json(text: &str) -> Result<Self, KeyRingError> {
        let file: KeyRingFile =
            serde_json::from_str(text).map_err(|e| KeyRingError::Invalid(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for (id, key) in &file.keys {
            if id.contains(':') || id.is_empty() {
                return Err(KeyRingError::Invalid(format!(
                    "key id {id:?} must be non-empty without ':'"
                )));
            }
            let bytes = decode_key(&format!("keys.{id}"), key)?;
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|e| KeyRingError::Invalid(e.to_string()))?;
            keys.insert(id.clone(), cipher);
        }
        if !keys.contains_key(&file.active) {
            return Err(KeyRingError::Invalid(format!(
                "active key {:?} is not in keys",
                file.active
            )));
        }
        Ok(Self {
            active: file.active,
            keys,
            blind_index_key: decode_key("blind_index_key", &file.blind_index_key)?,
        })
    }

    fn encrypt(&self, plaintext: &str) -> Result<String, KeyRingError> {
        let cipher = self
            .keys
            .get(&self.active)
            .ok_or_else(|| KeyRingError::UnknownKey(self.active.clone()))?;
        let nonce_bytes: [u8; 12] = rand::random();
        let sealed = cipher
            .encrypt(&Nonce::from(nonce_bytes), plaintext.as_bytes())
            .map_err(|_| KeyRingError::Corrupt)?;
        let mut blob = nonce_bytes.to_vec();
        blob.extend(sealed);
        Ok(format!("{}:{}", self.active, STANDARD.encode(blob)))
    }

    fn decrypt(&self, stored: &str) -> Result<String, KeyRingError> {
        let (id, body) = stored.split_once(':').ok_or(KeyRingError::Corrupt)?;
        let cipher = self
            .keys
            .get(id)
            .ok_or_else(|| KeyRingError::UnknownKey(id.to_string()))?;
        let blob = STANDARD.decode(body).map_err(|_| KeyRingError::Corrupt)?;
        if blob.len() < 12 {
            return Err(KeyRingError::Corrupt);
        }
        let (nonce, sealed) = blob.split_at(12);
        let nonce = Nonce::try_from(nonce).map_err(|_| KeyRingError::Corrupt)?;
        let plain = cipher
            .decrypt(&nonce, sealed)
            .map_err(|_| KeyRingError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| KeyRingError::Corrupt)
    }

    fn needs_rotation(&self, stored: &str) -> bool {
        stored
            .split_once(':')
            .is_some_and(|(id, _)| id != self.active)
    }

    fn blind_index(&self, system: &str, value: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as HmacKeyInit>::new_from_slice(&self.blind_index_key)
        else {
            unreachable!("HMAC-SHA256 accepts keys of any length")
        };
        mac.update(system.trim().to_lowercase().as_bytes());
        mac.update(b"|");
        mac.update(
            value
                .trim()
                .to_uppercase()
                .replace([' ', '-'], "")
                .as_bytes(),
        );
        hex::encode(mac.finalize().into_bytes())
    }
}

/// What a role without the PII permission sees: all but the last four characters masked.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let keep = chars.len().min(4);
    let masked = chars.len() - keep;
    format!(
        "{}{}",
        "X".repeat(masked.max(4)),
        chars[masked..].iter().collect::<String>()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ring(active: &str) -> KeyRing {
        let k1 = STANDARD.encode([1u8; 32]);
        let k2 = STANDARD.encode([2u8; 32]);
        let bi = STANDARD.encode([3u8; 32]);
        KeyRing::from_json(&format!(
            r#"{{"active":"{active}","keys":{{"k1":"{k1}","k2":"{k2}"}},"blind_index_key":"{bi}"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn round_trips_and_never_repeats_a_ciphertext() {
        let ring = ring("k1");
        let a = ring.encrypt("TON-1234-5678").unwrap();
        let b = ring.encrypt("TON-1234-5678").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("k1:"));
        assert!(!a.contains("1234"));
        assert_eq!(ring.decrypt(&a).unwrap(), "TON-1234-5678");
    }

    #[test]
    fn old_keys_still_decrypt_after_rotation() {
        let old = ring("k1").encrypt("secret").unwrap();
        let rotated = ring("k2");
        assert!(rotated.needs_rotation(&old));
        assert_eq!(rotated.decrypt(&old).unwrap(), "secret");
        assert!(!rotated.needs_rotation(&rotated.encrypt("x").unwrap()));
    }

    fn ring_json(active: &str, keys: &[(&str, u8)]) -> String {
        let keys: BTreeMap<&str, String> = keys
            .iter()
            .map(|(id, byte)| (*id, STANDARD.encode([*byte; 32])))
            .collect();
        serde_json::json!({
            "active": active,
            "keys": keys,
            "blind_index_key": STANDARD.encode([3u8; 32]),
        })
        .to_string()
    }

    /// Replaces the file the way the kubelet updates a Secret volume: a new file, renamed over.
    fn publish(path: &Path, text: &str) {
        let staged = path.with_extension("new");
        std::fs::write(&staged, text).unwrap();
        std::fs::rename(&staged, path).unwrap();
    }

    fn temp_file() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dfr-ring-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("keyring.json")
    }

    #[test]
    fn a_ring_from_a_file_follows_the_file() {
        let path = temp_file();
        publish(&path, &ring_json("k1", &[("k1", 1)]));
        let ring = KeyRing::from_file(&path).unwrap();
        let old = ring.encrypt("secret").unwrap();
        let index = ring.blind_index("TON-NID", "AB1234");
        publish(&path, &ring_json("k2", &[("k1", 1), ("k2", 2)]));
        std::thread::sleep(crate::reload::CHECK_EVERY + std::time::Duration::from_millis(100));
        assert_eq!(ring.active_key_id(), "k2");
        assert!(ring.encrypt("x").unwrap().starts_with("k2:"));
        assert_eq!(ring.decrypt(&old).unwrap(), "secret");
        assert_eq!(ring.blind_index("TON-NID", "AB1234"), index);
        // A rewrite that is not a ring keeps the one in use.
        publish(&path, "{");
        std::thread::sleep(crate::reload::CHECK_EVERY + std::time::Duration::from_millis(100));
        assert_eq!(ring.active_key_id(), "k2");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_key_the_ring_lacks_sends_it_to_read_the_file_at_once() {
        let path = temp_file();
        publish(&path, &ring_json("k1", &[("k1", 1)]));
        let behind = KeyRing::from_file(&path).unwrap();
        publish(&path, &ring_json("k2", &[("k1", 1), ("k2", 2)]));
        let written = KeyRing::from_file(&path)
            .unwrap()
            .encrypt("secret")
            .unwrap();
        assert!(written.starts_with("k2:"));
        // Within the second in which `behind` would not look at the file by itself.
        assert_eq!(behind.decrypt(&written).unwrap(), "secret");
        assert_eq!(behind.active_key_id(), "k2");
        // A key no version of the file holds is still refused.
        let unknown = written.replacen("k2:", "k9:", 1);
        assert!(matches!(
            behind.decrypt(&unknown),
            Err(KeyRingError::UnknownKey(id)) if id == "k9"
        ));
        // A fixed ring has no file to read again.
        let fixed = KeyRing::from_json(&ring_json("k1", &[("k1", 1)])).unwrap();
        assert!(matches!(
            fixed.decrypt(&written),
            Err(KeyRingError::UnknownKey(_))
        ));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn tampering_is_detected() {
        let ring = ring("k1");
        let mut stored = ring.encrypt("secret").unwrap();
        stored.pop();
        stored.push('A');
        assert!(ring.decrypt(&stored).is_err());
    }

    #[test]
    fn the_blind_index_ignores_formatting_but_not_content() {
        let ring = ring("k1");
        assert_eq!(
            ring.blind_index("TON-NID", "ab-12 34"),
            ring.blind_index("ton-nid", "AB1234")
        );
        assert_ne!(
            ring.blind_index("TON-NID", "AB1234"),
            ring.blind_index("TON-NID", "AB1235")
        );
    }

    #[test]
    fn masking_keeps_the_last_four() {
        assert_eq!(mask("TON12345678"), "XXXXXXX5678");
        assert_eq!(mask("12"), "XXXX12");
    }

    #[test]
    fn bad_rings_are_refused_with_a_reason() {
        let error = KeyRing::from_json(r#"{"active":"k9","keys":{},"blind_index_key":""}"#)
            .err()
            .unwrap();
        assert!(error.to_string().contains("blind_index_key") || error.to_string().contains("k9"));
    }
}
