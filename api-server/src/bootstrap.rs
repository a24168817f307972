//! The first national admin of a new registry, made at start from values the operator puts in
//! a Secret: DFR_BOOTSTRAP_ADMIN_USERNAME, and the files DFR_BOOTSTRAP_ADMIN_PASSWORD_FILE and
//! DFR_BOOTSTRAP_ADMIN_TOTP_SECRET_FILE (base32, as authenticator apps take it; national
//! admins sign in with a second factor). Only when the registry has no national admin at all,
//! so a restart, a second replica or an admin made since changes nothing.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit;
use crate::auth::hash_password;
use crate::error::{ApiError, ApiResult};
use crate::routes::users::record::{check_password, check_username};

/// Serializes bootstraps of replicas starting together.
const BOOTSTRAP_LOCK: i64 = 0x0df0_a0d3;

#[derive(Args, Clone, Debug, Default)]
pub struct BootstrapArgs {
    /// Username of the first national admin, made at start if the registry has none.
    #[arg(long, env = "DFR_BOOTSTRAP_ADMIN_USERNAME")]
    pub bootstrap_admin_username: Option<String>,
    /// File holding that admin's password (at least 12 characters; a final newline is ignored).
    #[arg(long, env = "DFR_BOOTSTRAP_ADMIN_PASSWORD_FILE")]
    pub bootstrap_admin_password_file: Option<PathBuf>,
    /// File holding that admin's TOTP secret, base32.
    #[arg(long, env = "DFR_BOOTSTRAP_ADMIN_TOTP_SECRET_FILE")]
    pub bootstrap_admin_totp_secret_file: Option<PathBuf>,
}

/// The admin to make, read and checked.
#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    pub username: String,
    pub password: String,
    pub totp_secret: String,
}

/// What a start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrapped {
    Created(Uuid),
    /// The registry already had a national admin: nothing written.
    HadAdmin,
}

fn read(path: &Path, variable: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| format!("{variable} {}: {e}", path.display()))
}

impl BootstrapArgs {
    /// None when no username is set (no bootstrap wanted); an error names the variable.
    pub fn admin(&self) -> Result<Option<BootstrapAdmin>, String> {
        let Some(username) = &self.bootstrap_admin_username else {
            return Ok(None);
        };
        let password_file = self.bootstrap_admin_password_file.as_ref().ok_or(
            "DFR_BOOTSTRAP_ADMIN_USERNAME is set: set DFR_BOOTSTRAP_ADMIN_PASSWORD_FILE too",
        )?;
        let totp_file = self.bootstrap_admin_totp_secret_file.as_ref().ok_or(
            "DFR_BOOTSTRAP_ADMIN_USERNAME is set: set DFR_BOOTSTRAP_ADMIN_TOTP_SECRET_FILE too",
        )?;
        let admin = BootstrapAdmin {
            username: username.clone(),
            password: read(password_file, "DFR_BOOTSTRAP_ADMIN_PASSWORD_FILE")?,
            totp_secret: read(totp_file, "DFR_BOOTSTRAP_ADMIN_TOTP_SECRET_FILE")?
                .trim()
                .to_string(),
        };
        admin.check()?;
        Ok(Some(admin))
    }
}

impl BootstrapAdmin {
    /// What is wrong with the values, naming the variable that holds it.
    pub fn check(&self) -> Result<(), String> {
        check_username(&self.username).map_err(|e| format!("DFR_BOOTSTRAP_ADMIN_USERNAME: {e}"))?;
        check_password(&self.password)
            .map_err(|e| format!("DFR_BOOTSTRAP_ADMIN_PASSWORD_FILE: {e}"))?;
        if crate::sessions::current_code(&self.totp_secret).is_none() {
            return Err(
                "DFR_BOOTSTRAP_ADMIN_TOTP_SECRET_FILE: not a base32 TOTP secret of 128 bits or more"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Makes the admin unless the registry has a national admin; runs as the application role.
pub async fn ensure_admin(
    pool: &PgPool,
    ring: &crate::crypto::KeyRing,
    admin: &BootstrapAdmin,
) -> ApiResult<Bootstrapped> {
    let sealed = crate::credentials::seal_totp(ring, &admin.totp_secret)
        .map_err(|e| ApiError::Internal(format!("sealing the TOTP secret: {e}")))?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut *tx)
        .await?;
    let has_admin: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'national_admin')")
            .fetch_one(&mut *tx)
            .await?;
    if has_admin {
        tx.rollback().await?;
        return Ok(Bootstrapped::HadAdmin);
    }
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, totp_secret) \
         VALUES ($1, $2, $3, 'national_admin', $4)",
    )
    .bind(id)
    .bind(&admin.username)
    .bind(hash_password(&admin.password)?)
    .bind(&sealed)
    .execute(&mut *tx)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Taken(_) => ApiError::Internal(format!(
            "DFR_BOOTSTRAP_ADMIN_USERNAME {} is taken by a user who is not a national admin",
            admin.username
        )),
        other => other,
    })?;
    audit::record(
        &mut tx,
        None,
        "bootstrap",
        "user",
        id.to_string(),
        None,
        Some(
            &json!({"id": id, "username": admin.username, "role": "national_admin", "areas": [],
                     "personId": null, "scopes": [], "disabled": false}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(Bootstrapped::Created(id))
}
