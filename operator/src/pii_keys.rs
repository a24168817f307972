//! Rotation of the PII key ring (Secret dfr-api-pii-keys, key keyring.json) on
//! spec.piiKeys.rotationPeriod. Pure: the reconcile step in [`crate::lifecycle`] reads the
//! Secret, asks these functions what to write and writes it.
//!
//! A rotation adds a key and makes it active. Every older key stays in the ring, because the
//! API server decrypts each stored value with the key its `<key id>:` prefix names and rows are
//! not re-encrypted. The blind index key never changes: national-ID lookups compare the stored
//! index with one computed now, so a new blind index key would find none of the existing rows.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// The key in the Secret that holds the ring.
pub const KEYRING_FILE: &str = "keyring.json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    #[error("keyring.json is not JSON: {0}")]
    NotJson(String),
    #[error("keyring.json has no {0}")]
    Missing(&'static str),
}

/// The ring after a rotation, and the id of the key it made active.
#[derive(Debug, PartialEq, Eq)]
pub struct Rotated {
    pub json: String,
    pub active: String,
}

/// The id of the key new values are encrypted under.
pub fn active_key_id(ring_json: &str) -> Result<String, KeyRingError> {
    let ring: Value =
        serde_json::from_str(ring_json).map_err(|e| KeyRingError::NotJson(e.to_string()))?;
    ring.get("active")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(KeyRingError::Missing("active key id"))
}

/// `k<n+1>` for the highest `k<n>` in the ring: ids are never reused, since a reused id would
/// send old ciphertexts to a key that cannot open them.
fn next_key_id<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let highest = ids
        .filter_map(|id| id.strip_prefix('k'))
        .filter_map(|number| number.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("k{}", highest.saturating_add(1))
}

/// `ring_json` with `new_key` (32 random bytes, base64) added under the next id and made
/// active. Old keys, the blind index key and any other field are kept as they are.
pub fn rotate(ring_json: &str, new_key: &str) -> Result<Rotated, KeyRingError> {
    let mut ring: Value =
        serde_json::from_str(ring_json).map_err(|e| KeyRingError::NotJson(e.to_string()))?;
    if ring
        .get("blind_index_key")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(KeyRingError::Missing("blind_index_key"));
    }
    let keys = ring
        .get_mut("keys")
        .and_then(Value::as_object_mut)
        .ok_or(KeyRingError::Missing("keys"))?;
    let id = next_key_id(keys.keys());
    keys.insert(id.clone(), Value::String(new_key.to_string()));
    ring["active"] = Value::String(id.clone());
    Ok(Rotated {
        json: ring.to_string(),
        active: id,
    })
}

/// When the key activated at `activated` is due to be replaced.
pub fn rotation_due_at(activated: Timestamp, period: Duration) -> Timestamp {
    let seconds = i64::try_from(period.as_secs()).unwrap_or(i64::MAX);
    Timestamp::from_second(activated.as_second().saturating_add(seconds)).unwrap_or(Timestamp::MAX)
}

/// How long from `now` until the next rotation; zero when it is due.
pub fn until_rotation(activated: Timestamp, period: Duration, now: Timestamp) -> Duration {
    let left = rotation_due_at(activated, period).as_second() - now.as_second();
    Duration::from_secs(u64::try_from(left).unwrap_or(0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::children::secrets::pii_keyring;

    fn ring() -> String {
        pii_keyring("k1", "a2V5LW9uZQ==", "YmxpbmQ=")
    }

    #[test]
    fn a_rotation_adds_the_next_key_and_keeps_the_rest() {
        let first = rotate(&ring(), "a2V5LXR3bw==").unwrap();
        assert_eq!(first.active, "k2");
        let value: Value = serde_json::from_str(&first.json).unwrap();
        assert_eq!(value["active"], "k2");
        assert_eq!(value["keys"]["k1"], "a2V5LW9uZQ==");
        assert_eq!(value["keys"]["k2"], "a2V5LXR3bw==");
        assert_eq!(value["blind_index_key"], "YmxpbmQ=");
        assert_eq!(active_key_id(&first.json).unwrap(), "k2");

        let second = rotate(&first.json, "a2V5LXRocmVl").unwrap();
        assert_eq!(second.active, "k3");
        let value: Value = serde_json::from_str(&second.json).unwrap();
        assert_eq!(value["keys"].as_object().unwrap().len(), 3);
        assert_eq!(value["blind_index_key"], "YmxpbmQ=");
    }

    #[test]
    fn ids_follow_the_highest_number_and_are_never_reused() {
        // k10 sorts before k9 as text; the number decides. A hand-made id is skipped over.
        let ring =
            r#"{"active":"k9","keys":{"k9":"a","k10":"b","spare":"c"},"blind_index_key":"d"}"#;
        assert_eq!(rotate(ring, "e").unwrap().active, "k11");
        let ring = r#"{"active":"main","keys":{"main":"a"},"blind_index_key":"d"}"#;
        assert_eq!(rotate(ring, "e").unwrap().active, "k1");
    }

    #[test]
    fn fields_the_operator_does_not_know_survive_a_rotation() {
        let ring = r#"{"active":"k1","keys":{"k1":"a"},"blind_index_key":"d","note":"x"}"#;
        let value: Value = serde_json::from_str(&rotate(ring, "e").unwrap().json).unwrap();
        assert_eq!(value["note"], "x");
    }

    #[test]
    fn a_ring_that_cannot_be_rotated_says_why() {
        assert!(matches!(rotate("{", "e"), Err(KeyRingError::NotJson(_))));
        assert_eq!(
            rotate(r#"{"active":"k1","blind_index_key":"d"}"#, "e"),
            Err(KeyRingError::Missing("keys"))
        );
        assert_eq!(
            rotate(r#"{"active":"k1","keys":{"k1":"a"}}"#, "e"),
            Err(KeyRingError::Missing("blind_index_key"))
        );
        assert_eq!(
            active_key_id(r#"{"keys":{}}"#),
            Err(KeyRingError::Missing("active key id"))
        );
    }

    #[test]
    fn the_next_rotation_is_one_period_after_activation() {
        let activated: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let period = Duration::from_secs(1440 * 3600);
        assert_eq!(
            rotation_due_at(activated, period),
            "2026-03-02T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        let now: Timestamp = "2026-03-01T23:59:00Z".parse().unwrap();
        assert_eq!(
            until_rotation(activated, period, now),
            Duration::from_secs(60)
        );
        let late: Timestamp = "2026-04-01T00:00:00Z".parse().unwrap();
        assert_eq!(until_rotation(activated, period, late), Duration::ZERO);
    }
}
