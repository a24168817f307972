//! Re-encrypts PII under the key ring's active key, in batches, while the service runs. A row
//! edited meanwhile is skipped (its ciphertext changed) and picked up by the next pass.

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::crypto::KeyRing;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    pub rewritten: u64,
    pub batches: u64,
}

/// Runs as the owner role, which row-level security does not restrict.
pub async fn rotate_keys(
    pool: &PgPool,
    ring: &KeyRing,
    batch_size: i64,
) -> ApiResult<RotationReport> {
    let active_prefix = format!("{}:%", ring.active_key_id());
    let mut report = RotationReport::default();
    let mut after = Uuid::nil();
    loop {
        let rows = sqlx::query(
            "SELECT id, national_id_cipher, phone_cipher, email_cipher FROM persons \
             WHERE id > $1 AND (national_id_cipher NOT LIKE $2 OR phone_cipher NOT LIKE $2 OR email_cipher NOT LIKE $2) \
             ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(&active_prefix)
        .bind(batch_size)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(report);
        };
        after = last.try_get("id")?;
        let mut tx = pool.begin().await?;
        for row in &rows {
            let reencrypt = |stored: Option<String>| -> ApiResult<Option<String>> {
                stored
                    .map(|cipher| {
                        if ring.needs_rotation(&cipher) {
                            ring.decrypt(&cipher).and_then(|plain| ring.encrypt(&plain))
                        } else {
                            Ok(cipher)
                        }
                    })
                    .transpose()
                    .map_err(|e| ApiError::Internal(e.to_string()))
            };
            let national: String = row.try_get("national_id_cipher")?;
            let phone: Option<String> = row.try_get("phone_cipher")?;
            let email: Option<String> = row.try_get("email_cipher")?;
            let updated = sqlx::query(
                "UPDATE persons SET national_id_cipher = $2, phone_cipher = $3, email_cipher = $4 \
                 WHERE id = $1 AND national_id_cipher = $5 \
                 AND phone_cipher IS NOT DISTINCT FROM $6 AND email_cipher IS NOT DISTINCT FROM $7",
            )
            .bind(row.try_get::<Uuid, _>("id")?)
            .bind(reencrypt(Some(national.clone()))?)
            .bind(reencrypt(phone.clone())?)
            .bind(reencrypt(email.clone())?)
            .bind(&national)
            .bind(&phone)
            .bind(&email)
            .execute(&mut *tx)
            .await?;
            report.rewritten += updated.rows_affected();
        }
        tx.commit().await?;
        report.batches += 1;
    }
}
