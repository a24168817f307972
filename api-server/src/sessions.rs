//! TOTP second factors (RFC 6238) and rotating refresh tokens with reuse detection.

use base64::Engine;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use totp_rs::{Secret, Totp};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

pub const REFRESH_DAYS: i32 = 14;

/// A fresh 160-bit TOTP secret, base32 as authenticator apps expect.
pub fn new_totp_secret() -> String {
    Secret::from(rand::random::<[u8; 20]>()).to_base32()
}

fn totp(secret_base32: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_base32).ok()?;
    totp_rs::Builder::new().with_secret(secret).build().ok()
}

/// The code an authenticator shows now (for enrolment checks and tests).
pub fn current_code(secret_base32: &str) -> Option<String> {
    totp(secret_base32).map(|t| t.generate_current().to_string())
}

/// Accepts the current code or the one of the step before or after (clock drift).
pub fn verify_code(secret_base32: &str, code: &str) -> bool {
    totp(secret_base32).is_some_and(|t| t.check_current(code.trim()).is_some())
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Issues a refresh token in `family` (a new login when None); only its hash is stored.
pub async fn issue_refresh(pool: &PgPool, user: Uuid, family: Option<Uuid>) -> ApiResult<String> {
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family, user_id, token_hash, expires_at) \
         VALUES ($1, $2, $3, $4, now() + make_interval(days => $5))",
    )
    .bind(Uuid::new_v4())
    .bind(family.unwrap_or_else(Uuid::new_v4))
    .bind(user)
    .bind(digest(&token))
    .bind(REFRESH_DAYS)
    .execute(pool)
    .await?;
    Ok(token)
}

/// Spends a refresh token: returns its user and family, or refuses. A second use of the same
/// token revokes every token of its family. The lookup runs in the owner's function
/// `dfr_redeem_refresh`: the application role cannot read the refresh_tokens table.
pub async fn redeem_refresh(pool: &PgPool, token: &str) -> ApiResult<(Uuid, Uuid)> {
    let row = sqlx::query("SELECT outcome, user_id, family FROM dfr_redeem_refresh($1)")
        .bind(digest(token))
        .fetch_one(pool)
        .await?;
    match row.try_get::<String, _>("outcome")?.as_str() {
        "ok" => Ok((row.try_get("user_id")?, row.try_get("family")?)),
        "reused" => Err(ApiError::InvalidGrant(
            "this refresh token was already used; every session of this login is revoked, sign in again".into(),
        )),
        "expired" => Err(ApiError::InvalidGrant(
            "the refresh token has expired or was revoked; sign in again".into(),
        )),
        _ => Err(ApiError::InvalidGrant("the refresh token is not valid".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_code_verifies_and_others_do_not() {
        let secret = new_totp_secret();
        let code = current_code(&secret).unwrap_or_default();
        assert_eq!(code.len(), 6);
        assert!(verify_code(&secret, &code));
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert!(!verify_code(&secret, wrong));
        assert!(!verify_code("not base32!", &code));
    }
}
