//! TOTP secrets at rest: sealed under the PII key ring like any PII (`<key id>:<base64>`), so a
//! copy of the users table or a backup does not hand out second factors. A secret stored
//! before this was written in base32, which has no ':'; it is still opened as it is, until
//! `dfr-api migrate` (given the key ring) or `dfr-api rotate-keys` seals it.

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::crypto::{KeyRing, KeyRingError};

pub fn seal_totp(ring: &KeyRing, secret: &str) -> Result<String, KeyRingError> {
    ring.encrypt(secret)
}

/// The base32 secret from what is stored.
pub fn open_totp(ring: &KeyRing, stored: &str) -> Result<String, KeyRingError> {
    if is_sealed(stored) {
        ring.decrypt(stored)
    } else {
        Ok(stored.to_string())
    }
}

fn is_sealed(stored: &str) -> bool {
    stored.contains(':')
}

/// Seals every TOTP secret stored in the clear, and re-seals those under a key other than the
/// active one; as the owner role. Returns how many were rewritten.
pub async fn seal_stored_totp_secrets(owner: &PgPool, ring: &KeyRing) -> Result<u64, String> {
    let rows = sqlx::query("SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL")
        .fetch_all(owner)
        .await
        .map_err(|e| format!("cannot read the TOTP secrets: {e}"))?;
    let mut rewritten = 0;
    for row in rows {
        let (id, stored): (Uuid, String) = (
            row.try_get("id").map_err(|e| e.to_string())?,
            row.try_get("totp_secret").map_err(|e| e.to_string())?,
        );
        if is_sealed(&stored) && !ring.needs_rotation(&stored) {
            continue;
        }
        let secret = open_totp(ring, &stored).map_err(|e| format!("user {id}: {e}"))?;
        let sealed = seal_totp(ring, &secret).map_err(|e| format!("user {id}: {e}"))?;
        // Only if unchanged meanwhile (a reset between the read and this write wins).
        let done =
            sqlx::query("UPDATE users SET totp_secret = $2 WHERE id = $1 AND totp_secret = $3")
                .bind(id)
                .bind(&sealed)
                .bind(&stored)
                .execute(owner)
                .await
                .map_err(|e| format!("user {id}: {e}"))?;
        rewritten += done.rows_affected();
    }
    Ok(rewritten)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::from_json(
            r#"{"active": "k1", "keys": {"k1": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, "blind_index_key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_and_a_clear_one_is_read_as_it_is() {
        let ring = ring();
        let secret = crate::sessions::new_totp_secret();
        let sealed = seal_totp(&ring, &secret).unwrap();
        assert!(!sealed.contains(&secret));
        assert_eq!(open_totp(&ring, &sealed).unwrap(), secret);
        assert_eq!(open_totp(&ring, &secret).unwrap(), secret);
        assert!(open_totp(&ring, "k1:garbage").is_err());
    }
}
